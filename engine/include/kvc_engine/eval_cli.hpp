#pragma once
// kvc-eval's command line, as a library function so tests can run it in-process.
#include <functional>
#include <ostream>

namespace kvc::engine {

// Parses argv (CLI11), runs the evaluation, prints the table to `out` and progress and errors to
// `err`, writes the reports. Returns the process exit code.
int run_eval_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// Runs `body` and turns any exception into a one-line message on `err` and exit code 1:
// kvc::Error as is, std::bad_alloc as "out of memory", any other std::exception with its what().
int report_failures(std::ostream& err, const std::function<int()>& body);

}  // namespace kvc::engine
