#pragma once
// What every fuzz target shares: the loaders under test read files, so each input is written to
// one private file (in /dev/shm when it exists: the loaders' own reads dominate, not the disk).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace kvc::fuzz {

inline const std::filesystem::path& input_path() {
  static const std::filesystem::path path = [] {
    const std::filesystem::path dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    return dir / ("kvc-fuzz-" + std::to_string(::getpid()));
  }();
  return path;
}

inline const std::filesystem::path& write_input(const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(input_path().c_str(), "wb");
  if (f == nullptr) __builtin_trap();  // the harness itself is broken, not the loader
  if (size != 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  return input_path();
}

}  // namespace kvc::fuzz
