#pragma once
// A minimal GGUF writer for tests: builds files the reader must accept, and (through raw fields
// and explicit offsets) files it must reject.
#include "kvc_engine/gguf.hpp"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace kvc::test {

class GgufWriter {
 public:
  template <class T>
  static void put(std::string& out, T value) {
    char b[sizeof(T)];
    std::memcpy(b, &value, sizeof(T));
    out.append(b, sizeof(T));
  }
  static void put_string(std::string& out, const std::string& s) {
    put<std::uint64_t>(out, s.size());
    out += s;
  }

  // A scalar of any fixed-size type.
  template <class T>
  GgufWriter& scalar(const std::string& key, engine::GgufType type, T value) {
    std::string& v = begin(key, type);
    put<T>(v, value);
    return *this;
  }
  GgufWriter& u32(const std::string& key, std::uint32_t x) { return scalar(key, engine::GgufType::u32, x); }
  GgufWriter& f32(const std::string& key, float x) { return scalar(key, engine::GgufType::f32, x); }
  GgufWriter& string(const std::string& key, const std::string& s) {
    put_string(begin(key, engine::GgufType::string), s);
    return *this;
  }
  GgufWriter& strings(const std::string& key, const std::vector<std::string>& xs) {
    std::string& v = begin_array(key, engine::GgufType::string, xs.size());
    for (const auto& x : xs) put_string(v, x);
    return *this;
  }
  template <class T>
  GgufWriter& array(const std::string& key, engine::GgufType type, const std::vector<T>& xs) {
    std::string& v = begin_array(key, type, xs.size());
    for (const T x : xs) put<T>(v, x);
    return *this;
  }
  // A key followed by hand-made bytes (type and value), for malformed metadata.
  GgufWriter& raw(const std::string& key, const std::string& type_and_value) {
    kv_.emplace_back();
    put_string(kv_.back(), key);
    kv_.back() += type_and_value;
    return *this;
  }

  // dims in ggml order (row length first). The offset defaults to the next aligned one.
  GgufWriter& tensor(const std::string& name, std::vector<std::uint64_t> dims, engine::GgmlType type,
                     std::string data, std::optional<std::uint64_t> offset = std::nullopt) {
    tensors_.push_back({name, std::move(dims), type, std::move(data), offset});
    return *this;
  }

  // The file; `alignment` is where tensor data is placed (write general.alignment to change it
  // in the file too). Counts can be overridden to write lying headers.
  [[nodiscard]] std::string bytes(std::uint32_t version = 3, std::size_t alignment = 32,
                                  std::optional<std::uint64_t> tensor_count = std::nullopt,
                                  std::optional<std::uint64_t> kv_count = std::nullopt) const {
    std::string out = "GGUF";
    put<std::uint32_t>(out, version);
    put<std::uint64_t>(out, tensor_count.value_or(tensors_.size()));
    put<std::uint64_t>(out, kv_count.value_or(kv_.size()));
    for (const auto& kv : kv_) out += kv;
    std::vector<std::uint64_t> offsets;
    std::uint64_t next = 0;
    for (const auto& t : tensors_) {
      const std::uint64_t off = t.offset.value_or(next);
      offsets.push_back(off);
      next = (off + t.data.size() + alignment - 1) / alignment * alignment;
      put_string(out, t.name);
      put<std::uint32_t>(out, std::uint32_t(t.dims.size()));
      for (const auto d : t.dims) put<std::uint64_t>(out, d);
      put<std::uint32_t>(out, std::uint32_t(t.type));
      put<std::uint64_t>(out, off);
    }
    if (tensors_.empty()) return out;
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    const std::size_t data_start = out.size();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      if (tensors_[i].data.empty()) continue;  // a tensor info without data (offsets beyond the file)
      const std::size_t at = data_start + std::size_t(offsets[i]);
      if (out.size() < at + tensors_[i].data.size()) out.resize(at + tensors_[i].data.size(), '\0');
      std::memcpy(out.data() + at, tensors_[i].data.data(), tensors_[i].data.size());
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    engine::GgmlType type;
    std::string data;
    std::optional<std::uint64_t> offset;
  };
  std::string& begin(const std::string& key, engine::GgufType type) {
    kv_.emplace_back();
    put_string(kv_.back(), key);
    put<std::uint32_t>(kv_.back(), std::uint32_t(type));
    return kv_.back();
  }
  std::string& begin_array(const std::string& key, engine::GgufType type, std::size_t n) {
    std::string& v = begin(key, engine::GgufType::array);
    put<std::uint32_t>(v, std::uint32_t(type));
    put<std::uint64_t>(v, n);
    return v;
  }

  std::vector<std::string> kv_;
  std::vector<Tensor> tensors_;
};

// n float32 values as bytes.
inline std::string f32_bytes(const std::vector<float>& xs) {
  std::string s(xs.size() * 4, '\0');
  std::memcpy(s.data(), xs.data(), s.size());
  return s;
}

}  // namespace kvc::test
