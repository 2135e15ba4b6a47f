#include "kvc_engine/gguf.hpp"

#include "kvc/core/error.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

namespace kvc::engine {
namespace {

constexpr GgmlTypeTraits type_table[] = {
    {GgmlType::f32, "F32", 1, 4},        {GgmlType::f16, "F16", 1, 2},
    {GgmlType::q4_0, "Q4_0", 32, 18},    {GgmlType::q4_1, "Q4_1", 32, 20},
    {GgmlType::q5_0, "Q5_0", 32, 22},    {GgmlType::q5_1, "Q5_1", 32, 24},
    {GgmlType::q8_0, "Q8_0", 32, 34},    {GgmlType::q8_1, "Q8_1", 32, 36},
    {GgmlType::q2_k, "Q2_K", 256, 84},   {GgmlType::q3_k, "Q3_K", 256, 110},
    {GgmlType::q4_k, "Q4_K", 256, 144},  {GgmlType::q5_k, "Q5_K", 256, 176},
    {GgmlType::q6_k, "Q6_K", 256, 210},  {GgmlType::q8_k, "Q8_K", 256, 292},
    {GgmlType::i8, "I8", 1, 1},          {GgmlType::i16, "I16", 1, 2},
    {GgmlType::i32, "I32", 1, 4},        {GgmlType::i64, "I64", 1, 8},
    {GgmlType::f64, "F64", 1, 8},        {GgmlType::bf16, "BF16", 1, 2},
};

constexpr std::uint32_t gguf_magic = 0x46554747;  // "GGUF" read as a little-endian u32

// Reads the header sections of a mapped file; every read is bounds-checked and a failure names
// the field being read and the byte offset where it starts.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {}

  template <class T>
  T read(std::string_view field) {
    need(sizeof(T), field);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(std::string_view field) {
    const auto length = read<std::uint64_t>(field);
    if (length > gguf_max_string_bytes)
      fail(where_, "{}: string length {} exceeds the limit of {} bytes", field, length, gguf_max_string_bytes);
    need(std::size_t(length), field);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), std::size_t(length));
    pos_ += std::size_t(length);
    return s;
  }

  void need(std::size_t n, std::string_view field) const {
    if (n > bytes_.size() - pos_)
      fail(where_, "{}: truncated file: {} bytes needed at offset {}, the file has {}", field, n, pos_,
           bytes_.size());
  }
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }
  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
  std::string where_;
};

std::size_t scalar_bytes(GgufType t) noexcept {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
    case GgufType::string: return 8;  // at least its length field
    case GgufType::array: return 12;  // at least its type and count
  }
  return 0;
}

GgufType read_type(Cursor& in, std::string_view field) {
  const auto raw = in.read<std::uint32_t>(field);
  if (raw > std::uint32_t(GgufType::f64)) fail(in.where(), "{}: unknown value type {}", field, raw);
  return GgufType(raw);
}

void read_element(Cursor& in, GgufType t, GgufValue& v, std::string_view field) {
  switch (t) {
    case GgufType::u8: v.ints.push_back(in.read<std::uint8_t>(field)); break;
    case GgufType::i8: v.ints.push_back(in.read<std::int8_t>(field)); break;
    case GgufType::u16: v.ints.push_back(in.read<std::uint16_t>(field)); break;
    case GgufType::i16: v.ints.push_back(in.read<std::int16_t>(field)); break;
    case GgufType::u32: v.ints.push_back(in.read<std::uint32_t>(field)); break;
    case GgufType::i32: v.ints.push_back(in.read<std::int32_t>(field)); break;
    case GgufType::u64: v.ints.push_back(std::int64_t(in.read<std::uint64_t>(field))); break;
    case GgufType::i64: v.ints.push_back(in.read<std::int64_t>(field)); break;
    case GgufType::f32: v.floats.push_back(double(in.read<float>(field))); break;
    case GgufType::f64: v.floats.push_back(in.read<double>(field)); break;
    case GgufType::string: v.strings.push_back(in.read_string(field)); break;
    case GgufType::boolean: {
      const auto b = in.read<std::uint8_t>(field);
      if (b > 1) fail(in.where(), "{}: boolean byte is {}, not 0 or 1", field, b);
      v.ints.push_back(b);
      break;
    }
    case GgufType::array: fail(in.where(), "{}: nested arrays are not supported", field);
  }
}

GgufValue read_value(Cursor& in, std::string_view field) {
  GgufValue v;
  v.type = read_type(in, field);
  if (v.type != GgufType::array) {
    read_element(in, v.type, v, field);
    return v;
  }
  v.is_array = true;
  v.type = read_type(in, field);
  if (v.type == GgufType::array) fail(in.where(), "{}: nested arrays are not supported", field);
  const auto count = in.read<std::uint64_t>(field);
  if (count > gguf_max_array_length)
    fail(in.where(), "{}: array length {} exceeds the limit of {}", field, count, gguf_max_array_length);
  // Every element takes at least scalar_bytes, so a count the rest of the file cannot hold is
  // rejected before anything is reserved.
  if (count * scalar_bytes(v.type) > in.remaining())
    fail(in.where(), "{}: truncated file: an array of {} {} needs at least {} bytes at offset {}, {} remain",
         field, count, gguf_type_name(v.type), count * scalar_bytes(v.type), in.position(), in.remaining());
  for (std::uint64_t i = 0; i < count; ++i) read_element(in, v.type, v, field);
  return v;
}

// out = a * b; false when that exceeds 2^62 (a margin below 2^64 that keeps offset + bytes safe).
bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  constexpr std::uint64_t limit = std::uint64_t{1} << 62;
  if (a != 0 && b > limit / a) return false;
  out = a * b;
  return true;
}

class Mapping {
 public:
  explicit Mapping(const std::filesystem::path& path, const std::string& where) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(where, "cannot open the file: {}", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      fail(where, "cannot stat the file: {}", std::strerror(e));
    }
    bytes_ = std::size_t(st.st_size);
    if (bytes_ > 0) {
      void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int e = errno;
      ::close(fd);
      if (p == MAP_FAILED) fail(where, "cannot map the file: {}", std::strerror(e));
      data_ = static_cast<const std::byte*>(p);
    } else {
      ::close(fd);
    }
  }
  ~Mapping() { reset(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  void reset() noexcept {
    if (data_) ::munmap(const_cast<std::byte*>(data_), bytes_);
    data_ = nullptr;
  }
  // Hands the mapping to the GgufFile, which unmaps it.
  std::pair<const std::byte*, std::size_t> release() noexcept { return {std::exchange(data_, nullptr), bytes_}; }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, data_ ? bytes_ : 0}; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace

std::string_view gguf_type_name(GgufType type) noexcept {
  constexpr std::string_view names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = std::size_t(type);
  return i < std::size(names) ? names[i] : "unknown";
}

const GgmlTypeTraits* ggml_type_traits(GgmlType type) noexcept {
  for (const auto& t : type_table)
    if (t.type == type) return &t;
  return nullptr;
}

std::string ggml_type_name(GgmlType type) {
  if (const auto* t = ggml_type_traits(type)) return std::string(t->name);
  return "type " + std::to_string(std::uint32_t(type));
}

bool GgufValue::is_integer() const noexcept {
  switch (type) {
    case GgufType::f32: case GgufType::f64: case GgufType::string: case GgufType::array: return false;
    default: return true;
  }
}

GgufFile GgufFile::open(const std::filesystem::path& path) {
  const std::string where = fmt::format("kvc::engine::GgufFile::open({})", path.string());
  Mapping mapping(path, where);
  Cursor in(mapping.bytes(), where);
  GgufFile f;
  f.path_ = path;

  if (in.read<std::uint32_t>("magic") != gguf_magic) fail(where, "not a GGUF file (the first 4 bytes are not \"GGUF\")");
  f.version_ = in.read<std::uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3)
    fail(where, "version: GGUF version {} is not supported (only 2 and 3)", f.version_);
  const auto n_tensors = in.read<std::uint64_t>("tensor count");
  const auto n_metadata = in.read<std::uint64_t>("metadata count");
  if (n_tensors > gguf_max_tensors)
    fail(where, "tensor count: {} exceeds the limit of {}", n_tensors, gguf_max_tensors);
  if (n_metadata > gguf_max_metadata)
    fail(where, "metadata count: {} exceeds the limit of {}", n_metadata, gguf_max_metadata);

  for (std::uint64_t i = 0; i < n_metadata; ++i) {
    std::string key = in.read_string(fmt::format("metadata #{} key", i));
    GgufValue value = read_value(in, fmt::format("metadata '{}'", key));
    if (f.metadata_.contains(key)) fail(where, "metadata '{}': the key appears twice", key);
    f.keys_.push_back(key);
    f.metadata_.emplace(std::move(key), std::move(value));
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (!a->is_integer() || a->is_array || a->ints[0] <= 0 || std::uint64_t(a->ints[0]) > gguf_max_alignment ||
        (a->ints[0] & (a->ints[0] - 1)) != 0)
      fail(where, "metadata 'general.alignment': must be an integer power of two up to {}", gguf_max_alignment);
    f.alignment_ = std::size_t(a->ints[0]);
  }

  f.tensors_.reserve(std::size_t(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = in.read_string(fmt::format("tensor #{} name", i));
    const std::string field = fmt::format("tensor '{}'", t.name);
    const auto n_dims = in.read<std::uint32_t>(field + " n_dims");
    if (n_dims == 0 || n_dims > gguf_max_dims)
      fail(where, "{}: n_dims is {}, must be 1 to {}", field, n_dims, gguf_max_dims);
    t.n_dims = n_dims;
    t.elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      t.dims[d] = in.read<std::uint64_t>(field + " dims");
      if (t.dims[d] == 0) fail(where, "{}: dimension {} is 0", field, d);
      if (!checked_mul(t.elements, t.dims[d], t.elements))
        fail(where, "{}: the element count overflows (dims {} {} {} {})", field, t.dims[0], t.dims[1], t.dims[2],
             t.dims[3]);
    }
    t.type = GgmlType(in.read<std::uint32_t>(field + " type"));
    const GgmlTypeTraits* traits = ggml_type_traits(t.type);
    if (!traits) fail(where, "{}: unknown tensor type {}", field, std::uint32_t(t.type));
    if (t.dims[0] % traits->block_elements != 0)
      fail(where, "{}: row length {} is not a multiple of the {} block size {}", field, t.dims[0], traits->name,
           traits->block_elements);
    if (!checked_mul(t.elements / traits->block_elements, traits->block_bytes, t.bytes))
      fail(where, "{}: the byte size overflows", field);
    t.offset = in.read<std::uint64_t>(field + " offset");
    if (t.offset % f.alignment_ != 0)
      fail(where, "{}: offset {} is not a multiple of the alignment {}", field, t.offset, f.alignment_);
    if (f.tensor_index_.contains(t.name)) fail(where, "{}: the name appears twice", field);
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  const std::size_t header_end = in.position();
  f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  const std::size_t file_bytes = mapping.bytes().size();
  if (!f.tensors_.empty() && f.data_offset_ > file_bytes)
    fail(where, "data section: truncated file: the data starts at offset {}, the file has {} bytes", f.data_offset_,
         file_bytes);
  const std::uint64_t data_bytes = f.tensors_.empty() ? 0 : file_bytes - f.data_offset_;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : f.tensors_) {
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset)
      fail(where, "tensor '{}': data [{}, {}) lies beyond the end of the data section ({} bytes; truncated file?)",
           t.name, t.offset, t.offset + t.bytes, data_bytes);
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->bytes > by_offset[i]->offset)
      fail(where, "tensor '{}': data at offset {} overlaps tensor '{}' at [{}, {})", by_offset[i]->name,
           by_offset[i]->offset, by_offset[i - 1]->name, by_offset[i - 1]->offset,
           by_offset[i - 1]->offset + by_offset[i - 1]->bytes);

  const auto [map, map_bytes] = mapping.release();
  f.map_ = std::unique_ptr<const std::byte, GgufUnmap>(map, GgufUnmap{map_bytes});
  return f;
}

void GgufUnmap::operator()(const std::byte* p) const noexcept {
  ::munmap(const_cast<std::byte*>(p), bytes);
}

const GgufValue* GgufFile::find(std::string_view key) const noexcept {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::tensor(std::string_view name) const noexcept {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> GgufFile::data(const GgufTensorInfo& info) const noexcept {
  return {map_.get() + data_offset_ + info.offset, std::size_t(info.bytes)};
}

const GgufValue& GgufFile::require(std::string_view key, std::string_view wanted) const {
  const GgufValue* v = find(key);
  if (!v) fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is missing (wanted {})", key, wanted);
  return *v;
}

std::int64_t GgufFile::require_int(std::string_view key, std::int64_t lo, std::uint64_t hi,
                                   std::string_view wanted) const {
  const GgufValue& v = require(key, wanted);
  const std::string where = fmt::format("kvc::engine::GgufFile({})", path_.string());
  if (v.is_array || !v.is_integer())
    fail(where, "metadata '{}' is {}{}, not {}", key, v.is_array ? "an array of " : "", gguf_type_name(v.type), wanted);
  const std::int64_t x = v.ints[0];
  const bool out_of_range = v.type == GgufType::u64 ? std::uint64_t(x) > hi
                                                    : (x < lo || (x >= 0 && std::uint64_t(x) > hi));
  if (out_of_range) {
    const std::string shown = v.type == GgufType::u64 ? std::to_string(std::uint64_t(x)) : std::to_string(x);
    fail(where, "metadata '{}' = {} does not fit {}", key, shown, wanted);
  }
  return x;
}

std::uint32_t GgufFile::get_u32(std::string_view key) const {
  return std::uint32_t(require_int(key, 0, std::numeric_limits<std::uint32_t>::max(), "u32"));
}
std::uint64_t GgufFile::get_u64(std::string_view key) const {
  return std::uint64_t(require_int(key, 0, std::numeric_limits<std::uint64_t>::max(), "u64"));
}
std::int32_t GgufFile::get_i32(std::string_view key) const {
  return std::int32_t(require_int(key, std::numeric_limits<std::int32_t>::min(),
                                  std::numeric_limits<std::int32_t>::max(), "i32"));
}
bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(key, "bool");
  if (v.is_array || v.type != GgufType::boolean)
    fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is {}{}, not bool", key,
         v.is_array ? "an array of " : "", gguf_type_name(v.type));
  return v.ints[0] != 0;
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue& v = require(key, "f32");
  if (v.is_array || !v.is_float())
    fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is {}{}, not f32", key,
         v.is_array ? "an array of " : "", gguf_type_name(v.type));
  return float(v.floats[0]);
}

const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(key, "string");
  if (v.is_array || v.type != GgufType::string)
    fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is {}{}, not string", key,
         v.is_array ? "an array of " : "", gguf_type_name(v.type));
  return v.strings[0];
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(key, "array of string");
  if (!v.is_array || v.type != GgufType::string)
    fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is {}{}, not an array of string",
         key, v.is_array ? "an array of " : "", gguf_type_name(v.type));
  return v.strings;
}

std::vector<std::int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue& v = require(key, "array of i32");
  const std::string where = fmt::format("kvc::engine::GgufFile({})", path_.string());
  if (!v.is_array || !v.is_integer())
    fail(where, "metadata '{}' is {}{}, not an array of i32", key, v.is_array ? "an array of " : "",
         gguf_type_name(v.type));
  std::vector<std::int32_t> out;
  out.reserve(v.ints.size());
  for (std::size_t i = 0; i < v.ints.size(); ++i) {
    const std::int64_t x = v.ints[i];
    if (v.type == GgufType::u64 ? std::uint64_t(x) > std::uint64_t(std::numeric_limits<std::int32_t>::max())
                                : (x < std::numeric_limits<std::int32_t>::min() ||
                                   x > std::numeric_limits<std::int32_t>::max()))
      fail(where, "metadata '{}': element {} does not fit i32", key, i);
    out.push_back(std::int32_t(x));
  }
  return out;
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue& v = require(key, "array of f32");
  if (!v.is_array || !v.is_float())
    fail(fmt::format("kvc::engine::GgufFile({})", path_.string()), "metadata '{}' is {}{}, not an array of f32",
         key, v.is_array ? "an array of " : "", gguf_type_name(v.type));
  return std::vector<float>(v.floats.begin(), v.floats.end());
}

}  // namespace kvc::engine
