#pragma once
// Where the bundled model, tokenizer and text live: $KVC_MODELS_DIR if set, else the folder
// configured at build time (CMake option KVC_MODELS_DIR, default ../shared/models beside the
// source tree). Nothing is copied into the repository.
//
// SmolLM2-135M-Instruct (GGUF, 98 MB) is looked for in that folder, then in the download cache
// scripts/fetch_models.sh fills: ${XDG_CACHE_HOME:-$HOME/.cache}/kvcompress/models.
#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef KVC_ENGINE_MODELS_DIR_DEFAULT
#define KVC_ENGINE_MODELS_DIR_DEFAULT "../shared/models"
#endif

namespace kvc::engine {

inline constexpr const char* model_file = "stories260K.bin";
inline constexpr const char* tokenizer_file = "tok512.bin";
inline constexpr const char* text_file = "tinystories_val.txt";
inline constexpr const char* smollm2_file = "SmolLM2-135M-Instruct.Q4_1.gguf";

[[nodiscard]] inline std::filesystem::path models_dir() {
  if (const char* env = std::getenv("KVC_MODELS_DIR"); env && *env) return env;
  return KVC_ENGINE_MODELS_DIR_DEFAULT;
}

[[nodiscard]] inline std::filesystem::path download_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::filesystem::path(xdg) / "kvcompress" / "models";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : ".") / ".cache" / "kvcompress" / "models";
}

// The SmolLM2 GGUF in `dir` or the download cache; empty when neither has it.
[[nodiscard]] inline std::filesystem::path find_smollm2(const std::filesystem::path& dir = models_dir()) {
  for (const auto& d : {dir, download_cache_dir()})
    if (std::filesystem::exists(d / smollm2_file)) return d / smollm2_file;
  return {};
}

// Empty when all three files are present; otherwise says which is missing and how to fix it.
[[nodiscard]] inline std::string missing_models_message(const std::filesystem::path& dir = models_dir()) {
  std::string missing;
  for (const char* f : {model_file, tokenizer_file, text_file})
    if (!std::filesystem::exists(dir / f)) missing += std::string(missing.empty() ? "" : ", ") + f;
  if (missing.empty()) return {};
  return "model files not found in '" + dir.string() + "' (missing: " + missing +
         "). Set the environment variable KVC_MODELS_DIR to the folder holding stories260K.bin, tok512.bin and "
         "tinystories_val.txt (or configure with -DKVC_MODELS_DIR=...); scripts/fetch_models.sh downloads them.";
}

}  // namespace kvc::engine
