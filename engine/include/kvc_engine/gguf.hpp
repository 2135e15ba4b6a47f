#pragma once
// A reader of GGUF files (versions 2 and 3), the container llama.cpp writes models in.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; the
// metadata as (string key, u32 type, value); the tensor infos as (string name, u32 n_dims,
// u64 dims[n_dims], u32 ggml type, u64 offset); padding to `general.alignment` (default 32);
// the tensor data, each tensor at its offset from the start of that section. A string is a u64
// length and that many bytes (no terminator); an array is a u32 element type, a u64 count and
// the elements. docs/model.md has the diagram.
//
// The file is memory-mapped (read-only) and every length, count and offset is checked before it
// is used, so a truncated or hostile file gives a kvc::Error naming the file and the field, never
// a read out of bounds. Limits (each larger value is an error): see the constants below.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::engine {

inline constexpr std::size_t gguf_max_tensors = std::size_t{1} << 16;
inline constexpr std::size_t gguf_max_metadata = std::size_t{1} << 16;
inline constexpr std::size_t gguf_max_string_bytes = std::size_t{1} << 24;  // 16 MiB
inline constexpr std::size_t gguf_max_array_length = std::size_t{1} << 24;  // elements
inline constexpr std::size_t gguf_max_dims = 4;
inline constexpr std::size_t gguf_max_alignment = std::size_t{1} << 16;

// The metadata value types, numbered as in the file.
enum class GgufType : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
[[nodiscard]] std::string_view gguf_type_name(GgufType type) noexcept;

// The tensor element types, numbered as ggml numbers them (ggml.h `enum ggml_type`).
enum class GgmlType : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
  i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30,
};

// The storage of a type: `block_bytes` bytes hold `block_elements` consecutive elements of a row.
struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  std::size_t block_elements;
  std::size_t block_bytes;
};
// nullptr for a number that is not a type listed above.
[[nodiscard]] const GgmlTypeTraits* ggml_type_traits(GgmlType type) noexcept;
[[nodiscard]] std::string ggml_type_name(GgmlType type);  // "Q4_1", or "type 42" if unknown

// One metadata value. Scalars are arrays of one element with is_array false. Integers of every
// width and booleans are held in `ints` (a u64 above INT64_MAX as its bit pattern), f32 and f64
// in `floats`, strings in `strings`; `type` is the type of the elements.
struct GgufValue {
  GgufType type = GgufType::u8;
  bool is_array = false;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  [[nodiscard]] std::size_t size() const noexcept { return ints.size() + floats.size() + strings.size(); }
  [[nodiscard]] bool is_integer() const noexcept;  // u8..i64 or bool
  [[nodiscard]] bool is_float() const noexcept { return type == GgufType::f32 || type == GgufType::f64; }
};

struct GgufTensorInfo {
  std::string name;
  std::size_t n_dims = 0;
  // ne[0] is the row length (contiguous), as in ggml; unused dims are 1.
  std::array<std::uint64_t, gguf_max_dims> dims{1, 1, 1, 1};
  GgmlType type = GgmlType::f32;
  std::uint64_t offset = 0;  // from the start of the data section
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
};

// Unmaps the file when the GgufFile goes.
struct GgufUnmap {
  std::size_t bytes = 0;
  void operator()(const std::byte* p) const noexcept;
};

class GgufFile {
 public:
  // Maps and parses the file. Throws kvc::Error naming the file and what is wrong.
  [[nodiscard]] static GgufFile open(const std::filesystem::path& path);


  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] std::size_t alignment() const noexcept { return alignment_; }

  // Metadata, in file order.
  [[nodiscard]] std::span<const std::string> keys() const noexcept { return keys_; }
  [[nodiscard]] const GgufValue* find(std::string_view key) const noexcept;

  // Typed getters: throw kvc::Error naming the file and the key when the key is missing, has
  // another type, or (integers) does not fit. Any integer type converts to any other when the
  // value fits; f32 and f64 convert to float.
  [[nodiscard]] std::uint32_t get_u32(std::string_view key) const;
  [[nodiscard]] std::uint64_t get_u64(std::string_view key) const;
  [[nodiscard]] std::int32_t get_i32(std::string_view key) const;
  [[nodiscard]] float get_f32(std::string_view key) const;
  [[nodiscard]] bool get_bool(std::string_view key) const;
  [[nodiscard]] const std::string& get_string(std::string_view key) const;
  [[nodiscard]] const std::vector<std::string>& get_string_array(std::string_view key) const;
  [[nodiscard]] std::vector<std::int32_t> get_i32_array(std::string_view key) const;
  [[nodiscard]] std::vector<float> get_f32_array(std::string_view key) const;

  [[nodiscard]] std::span<const GgufTensorInfo> tensors() const noexcept { return tensors_; }
  [[nodiscard]] const GgufTensorInfo* tensor(std::string_view name) const noexcept;
  // The bytes of a tensor of this file (bounds checked at open).
  [[nodiscard]] std::span<const std::byte> data(const GgufTensorInfo& info) const noexcept;

 private:
  GgufFile() = default;
  [[nodiscard]] const GgufValue& require(std::string_view key, std::string_view wanted) const;
  [[nodiscard]] std::int64_t require_int(std::string_view key, std::int64_t lo, std::uint64_t hi,
                                         std::string_view wanted) const;

  std::filesystem::path path_;
  std::unique_ptr<const std::byte, GgufUnmap> map_;
  std::uint32_t version_ = 0;
  std::size_t alignment_ = 32;
  std::size_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace kvc::engine
