// kvc-eval: see engine/include/kvc_engine/eval_cli.hpp and docs/evaluation.md.
#include "kvc_engine/eval_cli.hpp"

#include <iostream>

int main(int argc, char** argv) {
  // run_eval_cli reports its own failures; this also catches what escapes it (a failing stream).
  return kvc::engine::report_failures(std::cerr, [&] { return kvc::engine::run_eval_cli(argc, argv, std::cout, std::cerr); });
}
