// kvcompress._core: the Python binding of the run-time policy stack (nanobind).
//
// Thin on purpose, and the only file that names the library: every call goes through the
// `stack` alias below (kvc::runtime) and AnyCache, so following a change of those signatures is a few lines.
//
// The library's hot path (append, attend) treats wrong sizes, non-finite values and positions
// that do not increase as broken contracts and aborts the process. From Python those are everyday
// mistakes, so every input is checked here first and turned into an exception:
// TypeError for the wrong kind of array, kvcompress.Error (a ValueError) for wrong values.
#include "kvc/core/error.hpp"
#include "kvc/core/shape.hpp"
#include "kvc/runtime/any_cache.hpp"
#include "kvc/runtime/registry.hpp"
#include "kvc/runtime/stack_spec.hpp"
#include "kvc_engine/eval_cli.hpp"

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace nb = nanobind;
namespace stack = kvc::runtime;

namespace {

// Inputs are taken as any read-only array and checked by hand, so a float64 or transposed array
// gets a message naming the argument instead of nanobind's generic signature mismatch; no
// implicit conversion means a float32 C-contiguous array is read in place, never copied.
using InArray = nb::ndarray<nb::ro>;

std::string dtype_name(nb::dlpack::dtype t) {
  const char* kind = "unknown";
  switch (static_cast<nb::dlpack::dtype_code>(t.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; break;
    default: break;
  }
  return std::string(kind) + std::to_string(t.bits);
}

std::string shape_text(const InArray& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The floats of `a`, after checking it is a CPU float32 C-contiguous array whose shape is `dims`.
std::span<const float> floats(const char* where, const char* name, const InArray& a,
                              const std::vector<std::size_t>& dims) {
  if (a.device_type() != nb::device::cpu::value)
    throw nb::type_error(fmt::format("{}: {} must be a CPU array", where, name).c_str());
  if (a.dtype() != nb::dtype<float>())
    throw nb::type_error(
        fmt::format("{}: {} must be float32, got {} (convert with .astype(numpy.float32))", where, name,
                    dtype_name(a.dtype()))
            .c_str());
  bool shape_ok = a.ndim() == dims.size();
  for (std::size_t i = 0; shape_ok && i < dims.size(); ++i) shape_ok = a.shape(i) == dims[i];
  if (!shape_ok) {
    std::string want = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) want += (i ? ", " : "") + std::to_string(dims[i]);
    kvc::fail(where, "{} must have shape {}{}, got {}", name, want, dims.size() == 1 ? ",)" : ")", shape_text(a));
  }
  // C order: each stride is the product of the extents after it (extents of 1, and the strides
  // of an empty array, do not matter).
  std::int64_t expected = 1;
  for (std::size_t i = a.ndim(); a.size() > 0 && i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expected)
      kvc::fail(where, "{} must be C-contiguous (a transposed or sliced view is not; use numpy.ascontiguousarray)",
                name);
    expected *= static_cast<std::int64_t>(a.shape(i));
  }
  const auto* data = static_cast<const float*>(a.data());
  const std::span<const float> values(data, a.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      kvc::fail(where, "{} must be finite, element {} (flat index) is {}", name, i, values[i]);
  return values;
}

// A new numpy array of shape `dims` for the caller to fill (`data`); numpy owns and frees it.
template <class T>
nb::ndarray<nb::numpy, T> new_array(const std::vector<std::size_t>& dims, T*& data) {
  std::size_t count = 1;
  for (std::size_t d : dims) count *= d;
  data = new T[count == 0 ? 1 : count];
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(data, dims.size(), dims.data(), owner);
}

class Cache {
 public:
  Cache(const std::string& stack_text, std::size_t layers, std::size_t query_heads, std::size_t kv_heads,
        std::size_t head_dim, std::size_t context)
      : shape_{layers, query_heads, kv_heads, head_dim}, context_(context) {
    shape_.validate();
    if (context == 0) kvc::fail("kvcompress.Cache", "context must be at least 1 token");
    const stack::StackSpec spec = stack::parse_stack(stack_text);
    stack::check_stack(spec);
    stack_ = spec.text;
    cache_ = stack::make_cache(spec, shape_, context);
  }

  void append(std::int64_t layer, std::int64_t position, const InArray& k, const InArray& v) {
    const std::size_t l = check_layer("append", layer);
    const auto keys = floats("append", "k", k, {shape_.kv_heads, shape_.head_dim});
    const auto values = floats("append", "v", v, {shape_.kv_heads, shape_.head_dim});
    check_positions("append", l, position, 1);
    cache_->append(l, static_cast<std::int32_t>(position), keys, values);
  }

  void prefill(std::int64_t layer, std::int64_t first_position, const InArray& k, const InArray& v) {
    const std::size_t l = check_layer("prefill", layer);
    const std::size_t n = k.ndim() == 3 ? k.shape(0) : 0;
    if (n == 0) kvc::fail("prefill", "keys must have shape (n, {}, {}) with n >= 1, got {}", shape_.kv_heads,
                          shape_.head_dim, shape_text(k));
    const auto keys = floats("prefill", "keys", k, {n, shape_.kv_heads, shape_.head_dim});
    const auto values = floats("prefill", "values", v, {n, shape_.kv_heads, shape_.head_dim});
    check_positions("prefill", l, first_position, n);
    cache_->prefill(l, static_cast<std::int32_t>(first_position), keys, values);
  }

  // queries: (n, query_heads, head_dim), or (query_heads, head_dim) for one token.
  nb::ndarray<nb::numpy, float> attend(std::int64_t layer, const InArray& q) {
    const std::size_t l = check_layer("attend", layer);
    std::vector<std::size_t> dims = {shape_.query_heads, shape_.head_dim};
    if (q.ndim() == 3) dims.insert(dims.begin(), q.shape(0));
    const auto queries = floats("attend", "queries", q, dims);
    const std::size_t n = q.ndim() == 3 ? dims[0] : 1;
    if (n == 0) kvc::fail("attend", "queries hold no token");
    for (std::size_t h = 0; h < shape_.kv_heads; ++h)
      if (n > cache_->size(l, h))
        kvc::fail("attend", "{} queries but kv head {} of layer {} holds {} tokens (the queries are those of the "
                  "last tokens appended)", n, h, l, cache_->size(l, h));
    float* out = nullptr;
    auto result = new_array<float>(dims, out);
    cache_->attend(l, queries, std::span<float>(out, queries.size()));
    return result;
  }

  void compress() { cache_->compress(); }
  void clear() { cache_->clear(); }

  [[nodiscard]] std::size_t size(std::int64_t layer, std::int64_t head) const {
    return cache_->size(check_layer("size", layer), check_head("size", head));
  }

  // A copy: the cache's own positions move when it appends or evicts.
  [[nodiscard]] nb::ndarray<nb::numpy, std::int32_t> positions(std::int64_t layer, std::int64_t head) const {
    const auto p = cache_->positions(check_layer("positions", layer), check_head("positions", head));
    std::int32_t* data = nullptr;
    auto result = new_array<std::int32_t>({p.size()}, data);
    if (!p.empty()) std::memcpy(data, p.data(), p.size_bytes());
    return result;
  }

  [[nodiscard]] std::size_t memory_bytes() const { return cache_->memory_bytes(); }
  [[nodiscard]] std::size_t tokens() const { return cache_->tokens(); }
  [[nodiscard]] const kvc::Shape& shape() const { return shape_; }
  [[nodiscard]] std::size_t context() const { return context_; }
  [[nodiscard]] const std::string& stack_text() const { return stack_; }

  [[nodiscard]] std::string repr() const {
    return fmt::format("kvcompress.Cache('{}', layers={}, query_heads={}, kv_heads={}, head_dim={}, context={})", stack_,
                       shape_.layers, shape_.query_heads, shape_.kv_heads, shape_.head_dim, context_);
  }

 private:
  [[nodiscard]] std::size_t check_layer(const char* where, std::int64_t layer) const {
    if (layer < 0 || static_cast<std::uint64_t>(layer) >= shape_.layers)
      kvc::fail(where, "layer {} out of range [0, {})", layer, shape_.layers);
    return static_cast<std::size_t>(layer);
  }
  [[nodiscard]] std::size_t check_head(const char* where, std::int64_t head) const {
    if (head < 0 || static_cast<std::uint64_t>(head) >= shape_.kv_heads)
      kvc::fail(where, "kv head {} out of range [0, {})", head, shape_.kv_heads);
    return static_cast<std::size_t>(head);
  }
  // Positions are int32 in the cache and must increase per head.
  void check_positions(const char* where, std::size_t layer, std::int64_t first, std::size_t n) const {
    constexpr std::int64_t lo = std::numeric_limits<std::int32_t>::min(), hi = std::numeric_limits<std::int32_t>::max();
    if (first < lo || first > hi - static_cast<std::int64_t>(n - 1))
      kvc::fail(where, "positions {}..{} do not fit in int32", first, first + static_cast<std::int64_t>(n - 1));
    for (std::size_t h = 0; h < shape_.kv_heads; ++h) {
      const auto p = cache_->positions(layer, h);
      if (!p.empty() && first <= p.back())
        kvc::fail(where, "position {} does not follow the last position {} of layer {} (positions must increase)",
                  first, p.back(), layer);
    }
  }

  kvc::Shape shape_;
  std::size_t context_;
  std::string stack_;
  std::unique_ptr<stack::AnyCache> cache_;
};

nb::list components() {
  nb::list result;
  for (const stack::ComponentInfo& c : stack::registered_components()) {
    nb::list params;
    for (const stack::ParamInfo& p : c.params) {
      nb::dict d;
      d["key"] = p.key;
      d["default"] = p.default_value;
      d["min"] = p.min;
      d["max"] = p.max;
      d["integer"] = p.integer;
      d["help"] = p.help;
      params.append(d);
    }
    nb::dict d;
    d["name"] = c.name;
    d["family"] = c.family;
    d["help"] = c.help;
    d["params"] = params;
    result.append(d);
  }
  return result;
}

// kvc-eval in-process: (exit code, what it printed on stdout, what it printed on stderr).
std::tuple<int, std::string, std::string> run_eval(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"kvc-eval"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int code = 0;
  {
    // The evaluation touches no Python object; other Python threads may run meanwhile.
    nb::gil_scoped_release release;
    code = kvc::engine::report_failures(err, [&] {
      return kvc::engine::run_eval_cli(static_cast<int>(argv.size()), argv.data(), out, err);
    });
  }
  return {code, out.str(), err.str()};
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "kvcompress native module; use the kvcompress package.";
  nb::exception<kvc::Error>(m, "Error", PyExc_ValueError);

  nb::class_<Cache>(m, "Cache")
      .def(nb::init<const std::string&, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t>(),
           nb::arg("stack"), nb::kw_only(), nb::arg("layers"), nb::arg("query_heads"), nb::arg("kv_heads"),
           nb::arg("head_dim"), nb::arg("context") = 4096)
      .def("append", &Cache::append, nb::arg("layer"), nb::arg("position"), nb::arg("k"), nb::arg("v"))
      .def("prefill", &Cache::prefill, nb::arg("layer"), nb::arg("first_position"), nb::arg("keys"),
           nb::arg("values"))
      .def("attend", &Cache::attend, nb::arg("layer"), nb::arg("queries"))
      .def("compress", &Cache::compress)
      .def("clear", &Cache::clear)
      .def("size", &Cache::size, nb::arg("layer"), nb::arg("head"))
      .def("positions", &Cache::positions, nb::arg("layer"), nb::arg("head"))
      .def_prop_ro("memory_bytes", &Cache::memory_bytes)
      .def_prop_ro("tokens", &Cache::tokens)
      .def_prop_ro("layers", [](const Cache& c) { return c.shape().layers; })
      .def_prop_ro("query_heads", [](const Cache& c) { return c.shape().query_heads; })
      .def_prop_ro("kv_heads", [](const Cache& c) { return c.shape().kv_heads; })
      .def_prop_ro("head_dim", [](const Cache& c) { return c.shape().head_dim; })
      .def_prop_ro("context", &Cache::context)
      .def_prop_ro("stack", &Cache::stack_text)
      .def("__repr__", &Cache::repr);

  m.def("components", &components);
  m.def("describe_components", &stack::describe_components);
  m.def("run_eval", &run_eval, nb::arg("args"));
}
