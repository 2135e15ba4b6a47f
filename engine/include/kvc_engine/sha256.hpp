#pragma once
// SHA-256 (FIPS 180-4), for the model checksum that every results file records: a run names the
// exact weights it measured. Plain C++: SmolLM2's 98 MB GGUF takes 0.34 s of CPU at -O3 (coreutils'
// sha256sum 0.20 s; measured with `time` on 2026-12-02), once per run, which does not justify a
// crypto library dependency.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace kvc::engine {

class Sha256 {
 public:
  Sha256() noexcept;
  void update(std::span<const std::byte> data) noexcept;
  // Lowercase hex of the 32-byte digest; the object is spent after it.
  [[nodiscard]] std::string hex_digest() noexcept;

 private:
  void block(const std::uint8_t* p) noexcept;
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t bytes_ = 0;
};

[[nodiscard]] std::string sha256_hex(std::span<const std::byte> data);
// Reads the file in 1 MiB chunks. Throws kvc::Error when it cannot be read.
[[nodiscard]] std::string file_sha256(const std::filesystem::path& path);

}  // namespace kvc::engine
