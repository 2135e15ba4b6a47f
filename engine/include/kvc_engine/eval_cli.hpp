#pragma once
// kvc-eval's command line, as a library function so tests can run it in-process.
#include <ostream>

namespace kvc::engine {

// Parses argv (CLI11), runs the evaluation, prints the table to `out` and progress and errors to
// `err`, writes the reports. Returns the process exit code.
int run_eval_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace kvc::engine
