// The stack registry. To add a policy: append one Entry to `entries` below (its name, family,
// parameters and how to build it from them). Everything else follows from the entry list: the
// spec checker, --help, and the KVCache<...> instantiation of every valid combination.
#include "kvc_engine/registry.hpp"

#include "kvc/data/capture.hpp"
#include "kvc/kvc.hpp"
#include "kvc/budget/ada_kv.hpp"
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/budget/pyramid_kv_prompt.hpp"
#include "kvc/budget/uniform.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/merge/d2o.hpp"
#include "kvc/quant/fp8.hpp"
#include "kvc/quant/kivi.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/knorm.hpp"
#include "kvc/select/snapkv.hpp"
#include "kvc/select/streaming_llm.hpp"
#include "kvc/select/tova.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <any>
#include <cmath>
#include <functional>
#include <memory>
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
  std::optional<double> ratio;        // Options::budget_ratio, instead of a budget
  std::optional<std::size_t> window;  // SnapKV's observation window, which pyramidkv must share
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

ParamInfo ratio_param() {
  return ParamInfo{"ratio", 0, 0, 1, false,
                   "share of the prompt each head keeps after compress_prompt(), in (0, 1]; instead of budget"};
}

void set_window(Settings& s, const Values& v, std::string_view who) {
  if (s.window && *s.window != v.count("window"))
    fail("kvc stack spec", "'{}' says window={} but another component has window={}; pyramidkv's layer budgets are "
         "its share plus SnapKV's window, so the two must agree", who, v.count("window"), *s.window);
  s.window = v.count("window");
}

void set_ratio(Settings& s, const Values& v, std::string_view who) {
  if (!v.given("ratio")) return;
  if (s.ratio && *s.ratio != v["ratio"])
    fail("kvc stack spec", "'{}' says ratio={} but another component already set ratio={}", who, v["ratio"], *s.ratio);
  s.ratio = v["ratio"];
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
    entry<select::SnapKV>(
        "snapkv", "selection",
        "SnapKV: compress the prompt once (compress_prompt) to what its last `window` queries attend to, pooled",
        {budget_param(), ratio_param(), {"window", 32, 1, 1e6, true, "observation window: the prompt's last queries"},
         {"kernel", 5, 1, 63, true, "pooling width along tokens (odd)"},
         {"avg", 0, 0, 1, true, "1 = average pooling (kvpress), 0 = max pooling (the reference's default)"}},
        [](const Values& v, Settings& s) {
          set_budget(s, v, "snapkv");
          set_ratio(s, v, "snapkv");
          set_window(s, v, "snapkv");
          return select::SnapKV{.window = v.count("window"), .kernel = v.count("kernel"),
                                .pooling = v.count("avg") == 1 ? select::Pooling::avg : select::Pooling::max};
        }),
    entry<select::TOVA>("tova", "selection",
                        "TOVA: drop the token the current query attends to least (the prompt's last query at prefill)",
                        {budget_param(), ratio_param()}, [](const Values& v, Settings& s) {
                          set_budget(s, v, "tova");
                          set_ratio(s, v, "tova");
                          return select::TOVA{};
                        }),
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
    entry<budget::PyramidKVPrompt>(
        "pyramidkv", "budget",
        "PyramidKV as published: with snapkv, layer budgets from the prompt's length at compress_prompt (mean = budget)",
        {budget_param(), {"beta", 20, 1, 1e6, true, "top layer keeps (budget - window) / beta + window"},
         {"window", 32, 0, 1e6, true, "SnapKV's observation window (must match snapkv's)"}},
        [](const Values& v, Settings& s) {
          set_budget(s, v, "pyramidkv");
          set_window(s, v, "pyramidkv");
          return budget::PyramidKVPrompt{v.count("beta"), v.count("window")};
        }),
    entry<budget::AdaKV>(
        "adakv", "budget",
        "AdaKV: at compress_prompt, a layer's budget shared across its KV heads by the selection's scores (with snapkv)",
        {budget_param(), {"alpha", 0.5, 0, 1, false, "share of each head's budget it keeps whatever (paper 0.5, kvpress 0.2)"}},
        [](const Values& v, Settings& s) {
          set_budget(s, v, "adakv");
          return budget::AdaKV{.alpha = v["alpha"]};
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
    entry<quant::Kivi>(
        "kivi", "quantization",
        "KIVI: keys per channel over groups of G tokens, values per token, the newest 1..R keys and values in full "
        "precision",
        {{"bits", 2, 2, 4, true, "bits of keys and values: 2 or 4"},
         {"group", 32, 8, 1024, true, "G: tokens per key group and channels per value group; a multiple of 8"},
         {"residual", 128, 8, 1 << 20, true, "R: full-precision tail of keys and values; a multiple of group"}},
        [](const Values& v, Settings&) {
          return quant::Kivi{.bits = unsigned(v.count("bits")), .group = unsigned(v.count("group")),
                             .residual = unsigned(v.count("residual"))};
        }),
    entry<quant::Fp8>("e4m3", "quantization", "fp8 e4m3 keys and values (OCP E4M3, no scale: 1 byte per element)", {},
                      [](const Values&, Settings&) { return quant::Fp8{}; }),
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

// ---- run-time stacks -------------------------------------------------------------------------
//
// A stack is chosen at run time, but the cache is kvc::KVCache<Layout, Policy...>. Instantiating
// one KVCache type per combination of registered policies made this file grow by a factor with
// every policy (76 types, 51 s of CPU and 1.5 GB to compile it with KNorm). Instead each family
// is one dynamic policy: it holds the chosen policy behind a virtual interface implemented by a
// template instantiated once per registered policy, which forwards every hook to that policy's
// own hook with a HeadRef of its type (HeadRef::rebind). The policy code is the compile-time
// policy's; the price is one indirect call per hook.
//
// The cache types left depend only on what the container must know at compile time: whether
// there is a selection (then budget and merging are always present, defaulting to Uniform and
// "no merge", which is what the container does without them), the selection's column type and
// whether it observes attention, and whether there is low rank (quantization is always present,
// giving the storage dtype's format when none is chosen). A new policy adds a cache type only if
// it brings a new column type or observer kind.

// Owns a `Base` with value semantics (copying clones), as policies are copied into the cache.
template <class Base>
class Cloned {
 public:
  Cloned() = default;
  explicit Cloned(std::unique_ptr<Base> p) : p_(std::move(p)) {}
  Cloned(const Cloned& other) : p_(other.p_ ? other.p_->clone() : nullptr) {}
  Cloned& operator=(const Cloned& other) {
    if (this != &other) p_ = other.p_ ? other.p_->clone() : nullptr;
    return *this;
  }
  Cloned(Cloned&&) noexcept = default;
  Cloned& operator=(Cloned&&) noexcept = default;
  ~Cloned() = default;
  [[nodiscard]] Base* operator->() const noexcept { return p_.get(); }
  [[nodiscard]] explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  std::unique_ptr<Base> p_;
};

// The clone() every interface below declares, written once.
template <class Base, class Self>
struct Clonable : Base {
  [[nodiscard]] std::unique_ptr<Base> clone() const override {
    return std::make_unique<Self>(static_cast<const Self&>(*this));
  }
};

template <class P>
void setup_of(P& p, const PolicySetup& setup) {
  if constexpr (requires { p.setup(setup); }) p.setup(setup);
}

struct DynamicBudget {
  using family = kvc::family::budget;
  struct Base {
    virtual ~Base() = default;
    [[nodiscard]] virtual std::unique_ptr<Base> clone() const = 0;
    virtual void allocate(const BudgetContext& context, std::span<std::size_t> budgets) const = 0;
    virtual void share(std::span<const float> scores, std::size_t tokens, std::span<std::size_t> budgets) const = 0;
  };
  template <class P>
  struct Impl final : Clonable<Base, Impl<P>> {
    explicit Impl(P policy) : p(std::move(policy)) {}
    void allocate(const BudgetContext& c, std::span<std::size_t> b) const override { p.allocate(c, b); }
    // A budget policy without head-wise sharing leaves the budgets as allocate() set them.
    void share(std::span<const float> scores, std::size_t tokens, std::span<std::size_t> b) const override {
      if constexpr (ShareHook<P>) p.share(scores, tokens, b);
    }
    P p;
  };
  Cloned<Base> impl;

  void allocate(const BudgetContext& c, std::span<std::size_t> b) const { impl->allocate(c, b); }
  void share(std::span<const float> scores, std::size_t tokens, std::span<std::size_t> b) const {
    impl->share(scores, tokens, b);
  }
};

// The selection policies of one column type and observer kind.
template <class Column>
struct ColumnOf {
  using column = Column;
};
template <>
struct ColumnOf<NoColumn> {};

template <class Column, bool Observes>
struct DynamicSelection : ColumnOf<Column> {
  using family = kvc::family::selection;
  using Ref = HeadRef<DynamicSelection>;
  struct Base {
    virtual ~Base() = default;
    [[nodiscard]] virtual std::unique_ptr<Base> clone() const = 0;
    virtual void setup(const PolicySetup& setup) = 0;
    virtual std::size_t select(const Ref& head, std::span<std::uint32_t> keep) noexcept = 0;
    virtual void on_attend(const Ref& head, std::span<const float> weights) noexcept = 0;
    virtual void on_append(const Ref& head, std::size_t row, std::span<const float> key,
                           std::span<const float> value) noexcept = 0;
    [[nodiscard]] virtual std::size_t observation_window() const noexcept = 0;
    [[nodiscard]] virtual bool evicts_while_decoding() const noexcept = 0;
    virtual void on_observe(const Ref& head, std::span<const float> weights) noexcept = 0;
    virtual void scores(const Ref& head, std::span<float> out) const noexcept = 0;
  };
  template <class P>
  struct Impl final : Clonable<Base, Impl<P>> {
    static_assert(std::is_same_v<column_t<P>, Column> && AttendHook<P> == Observes && !HasState<P>,
                  "a selection policy is wrapped by the DynamicSelection of its column type and observer kind "
                  "(and selection state lives in its column)");
    explicit Impl(P policy) : p(std::move(policy)) {}
    void setup(const PolicySetup& s) override { setup_of(p, s); }
    std::size_t select(const Ref& head, std::span<std::uint32_t> keep) noexcept override {
      return p.select(head.template rebind<P>(head.column(), nullptr), keep);
    }
    void on_attend(const Ref& head, std::span<const float> weights) noexcept override {
      if constexpr (AttendHook<P>) p.on_attend(head.template rebind<P>(head.column(), nullptr), weights);
    }
    void on_append(const Ref& head, std::size_t row, std::span<const float> key,
                   std::span<const float> value) noexcept override {
      if constexpr (AppendHook<P>) p.on_append(head.template rebind<P>(head.column(), nullptr), row, key, value);
    }
    // A policy without a prompt hook observes no window: compress_prompt() only evicts to budget.
    [[nodiscard]] std::size_t observation_window() const noexcept override {
      if constexpr (PromptHook<P>) return p.observation_window();
      return 0;
    }
    [[nodiscard]] bool evicts_while_decoding() const noexcept override {
      if constexpr (PromptHook<P>) return p.evicts_while_decoding();
      return true;
    }
    void on_observe(const Ref& head, std::span<const float> weights) noexcept override {
      if constexpr (PromptHook<P>) p.on_observe(head.template rebind<P>(head.column(), nullptr), weights);
    }
    // Only a budget policy that shares budgets reads these (AdaKV); without scores, zeros.
    void scores(const Ref& head, std::span<float> out) const noexcept override {
      if constexpr (ScoringHook<P>)
        p.scores(head.template rebind<P>(head.column(), nullptr), out);
      else
        std::fill(out.begin(), out.end(), 0.0f);
    }
    P p;
  };
  Cloned<Base> impl;

  void setup(const PolicySetup& s) { impl->setup(s); }
  std::size_t select(const Ref& head, std::span<std::uint32_t> keep) noexcept { return impl->select(head, keep); }
  void on_attend(const Ref& head, std::span<const float> weights) noexcept
    requires Observes
  {
    impl->on_attend(head, weights);
  }
  // Only policies with a column have anything to record per token.
  void on_append(const Ref& head, std::size_t row, std::span<const float> key, std::span<const float> value) noexcept
    requires(!std::is_same_v<Column, NoColumn>)
  {
    impl->on_append(head, row, key, value);
  }
  // Prompt-time selection (SnapKV) has a column: the kinds with one carry the prompt hooks.
  [[nodiscard]] std::size_t observation_window() const noexcept
    requires(!std::is_same_v<Column, NoColumn>)
  {
    return impl->observation_window();
  }
  [[nodiscard]] bool evicts_while_decoding() const noexcept
    requires(!std::is_same_v<Column, NoColumn>)
  {
    return impl->evicts_while_decoding();
  }
  void on_observe(const Ref& head, std::span<const float> weights) noexcept
    requires(!std::is_same_v<Column, NoColumn>)
  {
    impl->on_observe(head, weights);
  }
  void scores(const Ref& head, std::span<float> out) const noexcept
    requires(!std::is_same_v<Column, NoColumn>)
  {
    impl->scores(head, out);
  }
};
template <class P>
using dynamic_selection_t = DynamicSelection<column_t<P>, AttendHook<P>>;

// Merging; without an impl it merges nothing (the evicted tokens are dropped).
struct DynamicMerging {
  using family = kvc::family::merging;
  // The concrete policy's state, and how to count it.
  struct state {
    std::any held;
    std::size_t (*memory)(const std::any&) noexcept = nullptr;
    std::size_t (*workspace)(const std::any&) noexcept = nullptr;
    [[nodiscard]] std::size_t memory_bytes() const noexcept { return memory ? memory(held) : 0; }
    [[nodiscard]] std::size_t workspace_bytes() const noexcept { return workspace ? workspace(held) : 0; }
  };
  using Ref = HeadRef<DynamicMerging>;
  struct Base {
    virtual ~Base() = default;
    [[nodiscard]] virtual std::unique_ptr<Base> clone() const = 0;
    virtual void setup(const PolicySetup& setup, state& s) = 0;
    virtual void merge(const Ref& head, std::span<const std::uint32_t> keep,
                       std::span<const std::uint32_t> evicted) noexcept = 0;
    virtual void reset(state& s) noexcept = 0;
  };
  template <class P>
  struct Impl final : Clonable<Base, Impl<P>> {
    static_assert(!HasColumn<P>, "a merging policy keeps no per-token column");
    using S = state_t<P>;
    explicit Impl(P policy) : p(std::move(policy)) {}
    void setup(const PolicySetup& setup, state& s) override {
      s.held = S{};
      auto& held = *std::any_cast<S>(&s.held);
      if constexpr (requires { p.setup(setup, held); })
        p.setup(setup, held);
      else
        setup_of(p, setup);
      s.memory = [](const std::any& a) noexcept -> std::size_t {
        if constexpr (ReportsMemory<S>) return std::any_cast<S>(&a)->memory_bytes();
        return 0;
      };
      s.workspace = [](const std::any& a) noexcept -> std::size_t {
        if constexpr (ReportsWorkspace<S>) return std::any_cast<S>(&a)->workspace_bytes();
        return 0;
      };
    }
    void merge(const Ref& head, std::span<const std::uint32_t> keep,
               std::span<const std::uint32_t> evicted) noexcept override {
      p.merge(head.template rebind<P>({}, std::any_cast<S>(&head.state().held)), keep, evicted);
    }
    void reset(state& s) noexcept override {
      if constexpr (requires(S& held) { p.reset(held); }) p.reset(*std::any_cast<S>(&s.held));
    }
    P p;
  };
  Cloned<Base> impl;

  void setup(const PolicySetup& setup, state& s) {
    if (impl) impl->setup(setup, s);
  }
  void merge(const Ref& head, std::span<const std::uint32_t> keep, std::span<const std::uint32_t> evicted) noexcept {
    if (impl) impl->merge(head, keep, evicted);
  }
  void reset(state& s) noexcept {
    if (impl) impl->reset(s);
  }
};

// Row formats, fixed when the policy is made (its getters validate its parameters then).
struct DynamicQuantization {
  using family = kvc::family::quantization;
  kernels::RowFormat key{};
  kernels::RowFormat value{};
  ChannelKeys channel{};  // enabled for per-channel keys (KIVI)
  [[nodiscard]] kernels::RowFormat key_format() const noexcept { return key; }
  [[nodiscard]] kernels::RowFormat value_format() const noexcept { return value; }
  [[nodiscard]] ChannelKeys channel_keys() const noexcept { return channel; }
};

struct DynamicLowRank {
  using family = kvc::family::lowrank;
  struct Base {
    virtual ~Base() = default;
    [[nodiscard]] virtual std::unique_ptr<Base> clone() const = 0;
    virtual void setup(const PolicySetup& setup) = 0;
    [[nodiscard]] virtual std::size_t rank_keys(const Shape& shape) const = 0;
    [[nodiscard]] virtual std::size_t rank_values(const Shape& shape) const = 0;
    [[nodiscard]] virtual bool ready(std::size_t layer, std::size_t head) const noexcept = 0;
    virtual void calibrate(std::size_t layer, std::size_t head, std::span<const float> keys,
                           std::span<const float> values, std::size_t n) = 0;
    virtual void project_key(std::size_t layer, std::size_t head, const float* in, float* out) const noexcept = 0;
    virtual void project_value(std::size_t layer, std::size_t head, const float* in, float* out) const noexcept = 0;
    virtual void restore_value(std::size_t layer, std::size_t head, const float* in, float* out) const noexcept = 0;
    [[nodiscard]] virtual std::size_t memory_bytes() const noexcept = 0;
  };
  template <class P>
  struct Impl final : Clonable<Base, Impl<P>> {
    explicit Impl(P policy) : p(std::move(policy)) {}
    void setup(const PolicySetup& s) override { setup_of(p, s); }
    std::size_t rank_keys(const Shape& s) const override { return p.rank_keys(s); }
    std::size_t rank_values(const Shape& s) const override { return p.rank_values(s); }
    bool ready(std::size_t l, std::size_t h) const noexcept override { return p.ready(l, h); }
    void calibrate(std::size_t l, std::size_t h, std::span<const float> k, std::span<const float> v,
                   std::size_t n) override {
      p.calibrate(l, h, k, v, n);
    }
    void project_key(std::size_t l, std::size_t h, const float* in, float* out) const noexcept override {
      p.project_key(l, h, in, out);
    }
    void project_value(std::size_t l, std::size_t h, const float* in, float* out) const noexcept override {
      p.project_value(l, h, in, out);
    }
    void restore_value(std::size_t l, std::size_t h, const float* in, float* out) const noexcept override {
      p.restore_value(l, h, in, out);
    }
    std::size_t memory_bytes() const noexcept override {
      if constexpr (ReportsMemory<P>) return p.memory_bytes();
      return 0;
    }
    P p;
  };
  Cloned<Base> impl;

  void setup(const PolicySetup& s) { impl->setup(s); }
  [[nodiscard]] std::size_t rank_keys(const Shape& s) const { return impl->rank_keys(s); }
  [[nodiscard]] std::size_t rank_values(const Shape& s) const { return impl->rank_values(s); }
  [[nodiscard]] bool ready(std::size_t l, std::size_t h) const noexcept { return impl->ready(l, h); }
  void calibrate(std::size_t l, std::size_t h, std::span<const float> k, std::span<const float> v, std::size_t n) {
    impl->calibrate(l, h, k, v, n);
  }
  void project_key(std::size_t l, std::size_t h, const float* in, float* out) const noexcept {
    impl->project_key(l, h, in, out);
  }
  void project_value(std::size_t l, std::size_t h, const float* in, float* out) const noexcept {
    impl->project_value(l, h, in, out);
  }
  void restore_value(std::size_t l, std::size_t h, const float* in, float* out) const noexcept {
    impl->restore_value(l, h, in, out);
  }
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return impl->memory_bytes(); }
};

// ---- the chosen stack ------------------------------------------------------------------------

template <class... T>
struct TypeList {};

// The distinct DynamicSelection kinds of the registered selection policies, as a std::variant.
template <class Out, class... Ps>
struct SelectionKinds {
  using type = Out;
};
template <class... Out, class P, class... Rest>
struct SelectionKinds<TypeList<Out...>, P, Rest...> {
  using kind = std::conditional_t<std::is_same_v<typename P::family, family::selection>, dynamic_selection_t<P>, void>;
  static constexpr bool take = !std::is_void_v<kind> && !(std::is_same_v<kind, Out> || ...);
  using type = typename SelectionKinds<std::conditional_t<take, TypeList<Out..., kind>, TypeList<Out...>>, Rest...>::type;
};
template <class List>
struct ToVariant;
template <class... Ts>
struct ToVariant<TypeList<Ts...>> {
  using type = std::variant<std::monostate, Ts...>;
};
template <class Tuple>
struct SelectionVariant;
template <class... E>
struct SelectionVariant<std::tuple<E...>> {
  using type = typename ToVariant<typename SelectionKinds<TypeList<>, typename E::policy...>::type>::type;
};
using AnySelection = typename SelectionVariant<std::remove_cvref_t<decltype(entries)>>::type;

// The policies a stack chose, one slot per family.
struct Chosen {
  std::optional<DynamicBudget> budget;
  AnySelection selection;
  std::optional<DynamicMerging> merging;
  std::optional<DynamicLowRank> lowrank;
  std::optional<DynamicQuantization> quantization;
};

template <class P>
void store(Chosen& c, P p) {
  if constexpr (std::is_same_v<P, NoPolicy>) {
  } else if constexpr (std::is_same_v<typename P::family, family::budget>) {
    c.budget = DynamicBudget{Cloned<DynamicBudget::Base>(std::make_unique<DynamicBudget::Impl<P>>(std::move(p)))};
  } else if constexpr (std::is_same_v<typename P::family, family::selection>) {
    using D = dynamic_selection_t<P>;
    c.selection = D{{}, Cloned<typename D::Base>(std::make_unique<typename D::template Impl<P>>(std::move(p)))};
  } else if constexpr (std::is_same_v<typename P::family, family::merging>) {
    c.merging = DynamicMerging{Cloned<DynamicMerging::Base>(std::make_unique<DynamicMerging::Impl<P>>(std::move(p)))};
  } else if constexpr (std::is_same_v<typename P::family, family::lowrank>) {
    c.lowrank = DynamicLowRank{Cloned<DynamicLowRank::Base>(std::make_unique<DynamicLowRank::Impl<P>>(std::move(p)))};
  } else {
    static_assert(std::is_same_v<typename P::family, family::quantization>, "unknown policy family");
    c.quantization = DynamicQuantization{p.key_format(), p.value_format(), {}};
    if constexpr (ChannelKeyHook<P>) c.quantization->channel = p.channel_keys();
  }
}

template <class Cache, class... Ps>
std::unique_ptr<AnyCache> make(const Shape& shape, const Options& options, Ps&&... policies) {
  return std::make_unique<CacheAdapter<Cache>>(shape, options, std::forward<Ps>(policies)...);
}

template <class... Ps>
std::unique_ptr<AnyCache> with_lowrank(const Shape& shape, const Options& options, std::optional<DynamicLowRank> lowrank,
                                       Ps&&... policies) {
  if (lowrank)
    return make<KVCache<ContiguousLayout, std::decay_t<Ps>..., DynamicLowRank>>(shape, options, std::forward<Ps>(policies)...,
                                                                                 std::move(*lowrank));
  return make<KVCache<ContiguousLayout, std::decay_t<Ps>...>>(shape, options, std::forward<Ps>(policies)...);
}

std::unique_ptr<AnyCache> build(const Shape& shape, const Options& options, Chosen chosen) {
  const kernels::RowFormat plain{options.dtype, 0};
  DynamicQuantization quantization = chosen.quantization.value_or(DynamicQuantization{plain, plain, {}});
  return std::visit(
      [&](auto selection) -> std::unique_ptr<AnyCache> {
        if constexpr (std::is_same_v<decltype(selection), std::monostate>) {
          return with_lowrank(shape, options, std::move(chosen.lowrank), std::move(quantization));
        } else {
          DynamicBudget budget = chosen.budget ? std::move(*chosen.budget)
                                               : DynamicBudget{Cloned<DynamicBudget::Base>(
                                                     std::make_unique<DynamicBudget::Impl<budget::Uniform>>(budget::Uniform{}))};
          return with_lowrank(shape, options, std::move(chosen.lowrank), std::move(budget), std::move(selection),
                              chosen.merging.value_or(DynamicMerging{}), std::move(quantization));
        }
      },
      std::move(chosen.selection));
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
  if (!has_selection && chosen.budget)
    fail("kvc stack spec", "'{}': a budget policy decides how many tokens each head keeps and needs a selection "
         "policy to decide which (e.g. add '+h2o')", spec.text);
  if (!has_selection && chosen.merging)
    fail("kvc stack spec", "'{}': a merging policy folds evicted tokens into kept ones and needs a selection policy "
         "(e.g. 'h2o:budget=64+{}')", spec.text, names.back());
  if (has_selection) {
    if (settings.budget && settings.ratio)
      fail("kvc stack spec", "'{}': give a budget or a ratio, not both", spec.text);
    if (settings.ratio) {
      settings.options.budget_ratio = *settings.ratio;
    } else {
      if (!settings.budget)
        fail("kvc stack spec", "'{}': eviction needs a budget (or a ratio); give one to the selection or budget "
             "component (e.g. 'h2o:budget=64', 'snapkv:ratio=0.25')", spec.text);
      settings.options.budget = *settings.budget;
    }
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
  return build(shape, options, std::move(chosen));
}

}  // namespace kvc::engine
