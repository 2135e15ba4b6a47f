// kvc-eval: see engine/include/kvc_engine/eval_cli.hpp and docs/evaluation.md.
#include "kvc_engine/eval_cli.hpp"

#include <iostream>

int main(int argc, char** argv) { return kvc::engine::run_eval_cli(argc, argv, std::cout, std::cerr); }
