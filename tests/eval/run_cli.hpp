#pragma once
// Runs kvc-eval in process. Without --model it runs stories260K (the bundled llama2.c model, fast);
// kvc-eval's own default is SmolLM2, which the tests that mean it name with --model.
#include "engine/models.hpp"

#include "kvc_engine/eval_cli.hpp"

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace kvc::test {

inline int run(std::vector<std::string> args, std::string& out, std::string& err) {
  if (std::find(args.begin(), args.end(), "--model") == args.end()) {
    const auto dir = models_dir();
    args.insert(args.begin(),
                {"--model", (dir / engine::model_file).string(), "--tokenizer", (dir / engine::tokenizer_file).string()});
  }
  args.insert(args.begin(), "kvc-eval");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream o, e;
  const int code = engine::run_eval_cli(int(argv.size()), argv.data(), o, e);
  out = o.str();
  err = e.str();
  return code;
}

}  // namespace kvc::test
