#pragma once
// What every fuzz target shares: the loaders under test read files, so each input is written to
// one private file (in /dev/shm when it exists: the loaders' own reads dominate, not the disk);
// the API fuzzers read their program from the input byte by byte (Input).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
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

// The fuzz input as a program: bytes, choices and values; past its end every byte is 0.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  [[nodiscard]] bool empty() const { return at_ >= size_; }
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::size_t pick(std::size_t n) { return byte() % n; }
  // A finite value in [-4, 4), with exact zeros and repeated values common enough to matter.
  float value() { return finite(byte()); }
  // Mostly such values; byte 255 gives a NaN and 254 an infinity (for callers that must reject them).
  float value_or_nonfinite() {
    const std::uint8_t b = byte();
    if (b == 255) return std::numeric_limits<float>::quiet_NaN();
    if (b == 254) return std::numeric_limits<float>::infinity();
    return finite(b);
  }

 private:
  static float finite(std::uint8_t b) { return float(int(b) - 128) / 32.0f; }
  const std::uint8_t* data_;
  std::size_t size_, at_ = 0;
};

}  // namespace kvc::fuzz
