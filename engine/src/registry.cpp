// The stack registry. To add a policy: append one Entry to `entries` below (its name, family,
// parameters and how to build it from them). Everything else follows from the entry list: the
// spec checker, --help, and the KVCache<...> instantiation of every valid combination.
#include "kvc_engine/registry.hpp"

#include "kvc/data/capture.hpp"
#include "kvc/kvc.hpp"
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/budget/uniform.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/merge/d2o.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/knorm.hpp"
#include "kvc/select/streaming_llm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <variant>

namespace kvc::engine {
namespace {

// ---- entries -----------------------------------------------------------------------------

// Marks components that are not policies ("full", storage dtypes).
struct NoPolicy {
  using family = void;
};

// Parameter values of one component, defaults filled in.
class Values {
 public:
  Values(const std::vector<ParamInfo>& info, const SpecComponent& component) : info_(&info) {
    for (const ParamInfo& p : info) values_.push_back(p.default_value), given_.push_back(false);
    for (const SpecParam& p : component.params)
      for (std::size_t i = 0; i < info.size(); ++i)
        if (info[i].key == p.key) values_[i] = p.value, given_[i] = true;
  }
  [[nodiscard]] double operator[](std::string_view key) const { return values_[find(key)]; }
  [[nodiscard]] std::size_t count(std::string_view key) const { return std::size_t(values_[find(key)]); }
  [[nodiscard]] bool given(std::string_view key) const { return given_[find(key)]; }

 private:
  [[nodiscard]] std::size_t find(std::string_view key) const {
    for (std::size_t i = 0; i < info_->size(); ++i)
      if ((*info_)[i].key == key) return i;
    fail("kvc::engine registry", "internal: parameter '{}' is not declared", key);
  }
  const std::vector<ParamInfo>* info_;
  std::vector<double> values_;
  std::vector<bool> given_;
};

// How a component changes the cache options besides its policy: the budget, the dtype.
struct Settings {
  Options options;
  std::optional<std::size_t> budget;  // set by whichever component states one
  // Known when building a cache, null when only checking a spec.
  const Shape* shape = nullptr;
  const data::KvCapture* calibration = nullptr;
};

template <class P>
struct Entry {
  using policy = P;
  ComponentInfo info;
  std::function<P(const Values&, Settings&)> make;
};

template <class P>
Entry<P> entry(std::string name, std::string family, std::string help, std::vector<ParamInfo> params,
               std::function<P(const Values&, Settings&)> make) {
  return Entry<P>{ComponentInfo{std::move(name), std::move(family), std::move(help), std::move(params)}, make};
}

ParamInfo budget_param(double fallback = 0) {
  return ParamInfo{"budget", fallback, 1, 1e7, true,
                   "tokens kept per (layer, KV head), on average; 0 = take it from another component"};
}

void set_budget(Settings& s, const Values& v, std::string_view who) {
  if (v.given("budget") && v.count("budget") > 0) {
    if (s.budget && *s.budget != v.count("budget"))
      fail("kvc stack spec", "'{}' says budget={} but another component already set budget={}", who,
           v.count("budget"), *s.budget);
    s.budget = v.count("budget");
  }
}

// Per-token integer quantization of keys and values at `bits`.
Entry<quant::PerToken> quantizer(std::string name, unsigned bits) {
  return entry<quant::PerToken>(
      std::move(name), "quantization",
      fmt::format("{}-bit asymmetric per-token quantization of keys and values, one f16 scale and min per group", bits),
      {{"group", 0, 0, 4096, true, "channels per scale; 0 = min(32, head_dim); a multiple of 8"},
       {"value_bits", 0, 0, 8, true, "bits of the values (8, 4, 2); 0 = same as the keys"},
       {"fast", 0, 0, 1, true, "1 = Precision::fast attention: int8 query and weights (AVX512-VNNI CPUs)"}},
      [bits](const Values& v, Settings& s) {
        if (v.count("fast") == 1) s.options.precision = kernels::Precision::fast;
        std::size_t group = v.count("group");
        if (group == 0) group = s.shape ? std::min<std::size_t>(32, s.shape->head_dim) : 32;
        return quant::PerToken{.bits = bits, .group = unsigned(group), .value_bits = unsigned(v.count("value_bits"))};
      });
}

// Unquantized rows stored in 16 bits.
Entry<NoPolicy> half_storage(std::string name, kernels::Dtype dtype, std::string help) {
  return entry<NoPolicy>(std::move(name), "storage", std::move(help),
                         {{"fast", 0, 0, 1, true, "1 = Precision::fast attention: bf16 dot products (AVX512-BF16 CPUs)"}},
                         [dtype](const Values& v, Settings& s) {
                           s.options.dtype = dtype;
                           if (v.count("fast") == 1) s.options.precision = kernels::Precision::fast;
                           return NoPolicy{};
                         });
}

const auto entries = std::make_tuple(
    entry<NoPolicy>("full", "none", "the uncompressed cache (f32 rows): the reference every stack is compared with",
                    {}, [](const Values&, Settings&) { return NoPolicy{}; }),
    half_storage("f16", kernels::Dtype::f16, "store unquantized rows as IEEE half"),
    half_storage("bf16", kernels::Dtype::bf16, "store unquantized rows as bfloat16"),
    entry<select::StreamingLLM>(
        "streaming", "selection", "StreamingLLM: the first `sinks` tokens plus a window of the `recent` last ones",
        {{"sinks", 4, 0, 1e6, true, "attention-sink tokens kept forever"},
         {"recent", 60, 1, 1e7, true, "most recent tokens kept; budget = sinks + recent"}},
        [](const Values& v, Settings& s) {
          const std::size_t budget = v.count("sinks") + v.count("recent");
          if (s.budget && *s.budget != budget)
            fail("kvc stack spec", "'streaming' keeps sinks + recent = {} tokens but another component set budget={}",
                 budget, *s.budget);
          s.budget = budget;
          return select::StreamingLLM{v.count("sinks")};
        }),
    entry<select::H2O>("h2o", "selection",
                       "H2O: heavy hitters by accumulated attention plus the most recent tokens",
                       {budget_param(), {"recent", 0.5, 0, 1, false, "share of the budget kept for recent tokens"}},
                       [](const Values& v, Settings& s) {
                         set_budget(s, v, "h2o");
                         return select::H2O{v["recent"]};
                       }),
    entry<select::KNorm>("knorm", "selection", "KNorm: the older tokens with the smallest key L2 norm plus the most recent",
                         {budget_param(), {"window", 8, 0, 1e6, true, "most recent tokens kept whatever their norm"}},
                         [](const Values& v, Settings& s) { return set_budget(s, v, "knorm"), select::KNorm{v.count("window")}; }),
    entry<budget::Uniform>("uniform", "budget", "every (layer, KV head) keeps the same budget (the default without one)",
                           {budget_param()},
                           [](const Values& v, Settings& s) {
                             set_budget(s, v, "uniform");
                             return budget::Uniform{};
                           }),
    entry<budget::PyramidKV>(
        "pyramid", "budget", "PyramidKV: layer budgets shrinking from the bottom layer to the top (mean = budget)",
        {budget_param(), {"beta", 20, 1, 1e6, true, "top layer keeps (budget - window) / beta + window"},
         {"window", 8, 0, 1e6, true, "recent tokens under every layer's budget"}},
        [](const Values& v, Settings& s) {
          set_budget(s, v, "pyramid");
          return budget::PyramidKV{v.count("beta"), v.count("window")};
        }),
    entry<merge::D2O>("d2o", "merging",
                      "D2O: evicted tokens close (key cosine) to a kept one are averaged into it",
                      {{"ema", 0.5, 0, 1, false, "weight of the old threshold in its moving average"},
                       {"threshold", 0, -1, 1, false, "fixed cosine threshold (if given, replaces the moving average)"}},
                      [](const Values& v, Settings&) {
                        merge::D2O d{};
                        d.ema = float(v["ema"]);
                        if (v.given("threshold")) d.threshold = float(v["threshold"]);
                        return d;
                      }),
    quantizer("int8", 8), quantizer("int4", 4), quantizer("int2", 2),
    entry<lowrank::SVD>(
        "svd", "lowrank", "low-rank keys and values: per-head SVD bases fitted on held-out calibration text",
        {{"rank", 0, 0, 1e6, true, "key rank; 0 = head_dim / 2"},
         {"value_rank", 0, 0, 1e6, true, "value rank; 0 = same as rank"}},
        [](const Values& v, Settings& s) {
          if (!s.shape) return lowrank::SVD{.rank = v.count("rank"), .value_rank = v.count("value_rank")};
          if (!s.calibration)
            fail("kvc stack spec", "'svd' needs calibration keys and values; none were given to make_cache");
          std::vector<float> keys, values;
          for (std::size_t l = 0; l < s.shape->layers; ++l) {
            keys.insert(keys.end(), s.calibration->keys(l).begin(), s.calibration->keys(l).end());
            values.insert(values.end(), s.calibration->values(l).begin(), s.calibration->values(l).end());
          }
          return lowrank::SVD::fit(*s.shape, v.count("rank"), keys, values, v.count("value_rank"));
        }));

// ---- compile-time plumbing -------------------------------------------------------------------

template <class... T>
struct TypeList {};

template <class List, class T>
struct Prepend;
template <class... Ts, class T>
struct Prepend<TypeList<Ts...>, T> {
  using type = TypeList<T, Ts...>;
};

// The distinct policy types of one family among the entries, as a std::variant with monostate.
template <class Family, class Out, class... Ps>
struct Collect {
  using type = Out;
};
template <class Family, class... Out, class P, class... Rest>
struct Collect<Family, TypeList<Out...>, P, Rest...> {
  static constexpr bool take =
      std::is_same_v<typename P::family, Family> && !(std::is_same_v<P, Out> || ...);
  using type = typename Collect<Family, std::conditional_t<take, TypeList<Out..., P>, TypeList<Out...>>, Rest...>::type;
};
template <class List>
struct ToVariant;
template <class... Ts>
struct ToVariant<TypeList<Ts...>> {
  using type = std::variant<std::monostate, Ts...>;
};
template <class Family, class Tuple>
struct FamilyVariant;
template <class Family, class... E>
struct FamilyVariant<Family, std::tuple<E...>> {
  using type = typename ToVariant<typename Collect<Family, TypeList<>, typename E::policy...>::type>::type;
};
template <class Family>
using family_variant = typename FamilyVariant<Family, std::remove_cvref_t<decltype(entries)>>::type;

// The policies a stack chose, one slot per family, in the library's application order.
struct Chosen {
  family_variant<family::budget> budget;
  family_variant<family::selection> selection;
  family_variant<family::merging> merging;
  family_variant<family::lowrank> lowrank;
  family_variant<family::quantization> quantization;
};

template <class P>
void store(Chosen& c, P&& p) {
  using T = std::decay_t<P>;
  if constexpr (std::is_same_v<T, NoPolicy>) {
  } else if constexpr (std::is_same_v<typename T::family, family::budget>) {
    c.budget = std::forward<P>(p);
  } else if constexpr (std::is_same_v<typename T::family, family::selection>) {
    c.selection = std::forward<P>(p);
  } else if constexpr (std::is_same_v<typename T::family, family::merging>) {
    c.merging = std::forward<P>(p);
  } else if constexpr (std::is_same_v<typename T::family, family::lowrank>) {
    c.lowrank = std::forward<P>(p);
  } else {
    static_assert(std::is_same_v<typename T::family, family::quantization>, "unknown policy family");
    c.quantization = std::forward<P>(p);
  }
}

template <class... Ps>
std::unique_ptr<AnyCache> build(const Shape& shape, const Options& options, std::tuple<Ps...> policies) {
  if constexpr (!valid_stack_v<Ps...>) {
    fail("kvc stack spec", "a budget or merging policy needs a selection policy");  // check_stack() says so first
  } else {
    return std::apply(
        [&](Ps&... p) -> std::unique_ptr<AnyCache> {
          if constexpr (sizeof...(Ps) == 0)
            return std::make_unique<CacheAdapter<KVCache<ContiguousLayout>>>(shape, options);
          else
            return std::make_unique<CacheAdapter<KVCache<ContiguousLayout, Ps...>>>(shape, options, std::move(p)...);
        },
        policies);
  }
}

// Drops the empty family slots, then builds.
template <class... Done>
std::unique_ptr<AnyCache> filter(const Shape& s, const Options& o, std::tuple<Done...> done) {
  return build(s, o, std::move(done));
}
template <class... Done, class First, class... Rest>
std::unique_ptr<AnyCache> filter(const Shape& s, const Options& o, std::tuple<Done...> done, First first, Rest... rest) {
  if constexpr (std::is_same_v<First, std::monostate>)
    return filter(s, o, std::move(done), std::move(rest)...);
  else
    return filter(s, o, std::tuple_cat(std::move(done), std::tuple<First>(std::move(first))), std::move(rest)...);
}

// ---- resolving a spec ------------------------------------------------------------------------

std::vector<ComponentInfo> collect_infos() {
  std::vector<ComponentInfo> out;
  std::apply([&](const auto&... e) { (out.push_back(e.info), ...); }, entries);
  return out;
}

std::string format_params(const ComponentInfo& c) {
  std::string s;
  for (const ParamInfo& p : c.params)
    s += fmt::format("{}{}={}", s.empty() ? "" : ",", p.key, p.default_value);
  return s;
}

std::string valid_names() {
  std::string s;
  for (const ComponentInfo& c : registered_components()) s += fmt::format("{}{}", s.empty() ? "" : ", ", c.name);
  return s;
}

const ComponentInfo& find_component(const StackSpec& spec, const SpecComponent& component) {
  for (const ComponentInfo& c : registered_components())
    if (c.name == component.name) return c;
  fail("kvc stack spec", "'{}': unknown component '{}' at offset {}; valid names: {}", spec.text, component.name,
       component.offset, valid_names());
}

void check_params(const StackSpec& spec, const SpecComponent& component, const ComponentInfo& info) {
  for (const SpecParam& p : component.params) {
    const auto it = std::find_if(info.params.begin(), info.params.end(), [&](const ParamInfo& i) { return i.key == p.key; });
    if (it == info.params.end()) {
      if (info.params.empty())
        fail("kvc stack spec", "'{}': '{}' takes no parameters, but '{}' was given", spec.text, info.name, p.key);
      std::string valid;
      for (const ParamInfo& i : info.params)
        valid += fmt::format("\n  {}={} ({})", i.key, i.default_value, i.help);
      fail("kvc stack spec", "'{}': unknown parameter '{}' of '{}'; valid parameters:{}", spec.text, p.key, info.name,
           valid);
    }
    if (it->integer && p.value != std::floor(p.value))
      fail("kvc stack spec", "'{}': parameter '{}' of '{}' must be an integer, got {}", spec.text, p.key, info.name,
           p.text);
    if (p.value < it->min || p.value > it->max)
      fail("kvc stack spec", "'{}': parameter '{}' of '{}' must be in [{}, {}], got {}", spec.text, p.key, info.name,
           it->min, it->max, p.text);
  }
}

// Runs every component's factory; returns the policies per family and the options.
std::pair<Chosen, Settings> resolve(const StackSpec& spec, const Shape* shape = nullptr,
                                    const data::KvCapture* calibration = nullptr) {
  Chosen chosen;
  Settings settings;
  settings.shape = shape;
  settings.calibration = calibration;
  std::vector<std::string> families;  // one component per family
  std::vector<std::string> names;
  bool full = false;
  for (const SpecComponent& component : spec.components) {
    const ComponentInfo& info = find_component(spec, component);
    check_params(spec, component, info);
    for (std::size_t i = 0; i < families.size(); ++i)
      if (families[i] == info.family && info.family != "none")
        fail("kvc stack spec", "'{}': '{}' and '{}' are both {} components; a stack takes at most one of each family",
             spec.text, names[i], info.name, info.family);
    if (info.name == "full") full = true;
    families.push_back(info.family);
    names.push_back(info.name);
    bool found = false;
    std::apply(
        [&](const auto&... e) {
          ((!found && e.info.name == component.name
                ? (store(chosen, e.make(Values(e.info.params, component), settings)), found = true)
                : false),
           ...);
        },
        entries);
  }
  if (full && spec.components.size() > 1)
    fail("kvc stack spec", "'{}': 'full' is the uncompressed cache and cannot be combined with other components",
         spec.text);
  const bool has_selection = chosen.selection.index() != 0;
  if (!has_selection && chosen.budget.index() != 0)
    fail("kvc stack spec", "'{}': a budget policy decides how many tokens each head keeps and needs a selection "
         "policy to decide which (e.g. add '+h2o')", spec.text);
  if (!has_selection && chosen.merging.index() != 0)
    fail("kvc stack spec", "'{}': a merging policy folds evicted tokens into kept ones and needs a selection policy "
         "(e.g. 'h2o:budget=64+{}')", spec.text, names.back());
  if (has_selection) {
    if (!settings.budget)
      fail("kvc stack spec", "'{}': eviction needs a budget; give one to the selection or budget component "
           "(e.g. 'h2o:budget=64')", spec.text);
    settings.options.budget = *settings.budget;
  }
  return {std::move(chosen), settings};
}

}  // namespace

const std::vector<ComponentInfo>& registered_components() {
  static const std::vector<ComponentInfo> infos = collect_infos();
  return infos;
}

std::string describe_components() {
  std::string s;
  for (const ComponentInfo& c : registered_components()) {
    const std::string params = format_params(c);
    s += fmt::format("  {:<34} {:<13} {}\n", params.empty() ? c.name : c.name + ":" + params, c.family, c.help);
  }
  return s;
}

void check_stack(const StackSpec& spec) { (void)resolve(spec); }

std::unique_ptr<AnyCache> make_cache(const StackSpec& spec, const Shape& shape, std::size_t context,
                                     const data::KvCapture* calibration) {
  if (calibration && !(calibration->shape() == shape))
    fail("kvc::engine::make_cache", "the calibration capture's shape is not the cache's");
  auto [chosen, settings] = resolve(spec, &shape, calibration);
  Options options = settings.options;
  if (options.budget == 0) options.capacity = context;
  return std::visit(
      [&](auto budget, auto selection, auto merging, auto lowrank, auto quantization) {
        return filter(shape, options, std::tuple<>{}, std::move(budget), std::move(selection), std::move(merging),
                      std::move(lowrank), std::move(quantization));
      },
      std::move(chosen.budget), std::move(chosen.selection), std::move(chosen.merging), std::move(chosen.lowrank),
      std::move(chosen.quantization));
}

}  // namespace kvc::engine
