// Compile-time tests of the policy concepts: building this file is the test.
#include "kvc/kvc.hpp"

namespace kvc::static_tests {
namespace {

struct GoodSelect {
  using family = kvc::family::selection;
  std::size_t select(const HeadRef<GoodSelect>&, std::span<std::uint32_t>) { return 0; }
};
struct SelectWithoutFamily {
  std::size_t select(const HeadRef<SelectWithoutFamily>&, std::span<std::uint32_t>) { return 0; }
};
struct SelectMissingSelect {
  using family = kvc::family::selection;
};
struct SelectWrongReturn {
  using family = kvc::family::selection;
  void select(const HeadRef<SelectWrongReturn>&, std::span<std::uint32_t>) {}
};
struct Observer {
  using family = kvc::family::selection;
  std::size_t select(const HeadRef<Observer>&, std::span<std::uint32_t>) { return 0; }
  void on_attend(const HeadRef<Observer>&, std::span<const float>) noexcept {}
};
// Hooks are found on any family, and a column or a state is declared by naming its type.
struct ColumnKeeper {
  using family = kvc::family::quantization;
  using column = std::uint16_t;
  struct state {
    int appended = 0;
  };
  kernels::RowFormat key_format() const { return {}; }
  kernels::RowFormat value_format() const { return {}; }
  void on_append(const HeadRef<ColumnKeeper>&, std::size_t, std::span<const float>, std::span<const float>) noexcept {}
  void on_compact(const HeadRef<ColumnKeeper>&, std::span<const std::uint32_t>) noexcept {}
  void reset(state&) const noexcept {}
};

struct GoodBudget {
  using family = kvc::family::budget;
  void allocate(const BudgetContext&, std::span<std::size_t>) const {}
};
struct BudgetMissingAllocate {
  using family = kvc::family::budget;
};

struct GoodMerge {
  using family = kvc::family::merging;
  void merge(const HeadRef<GoodMerge>&, std::span<const std::uint32_t>, std::span<const std::uint32_t>) {}
};
struct MergeWrongSignature {
  using family = kvc::family::merging;
  void merge(const HeadRef<MergeWrongSignature>&) {}
};

struct GoodQuant {
  using family = kvc::family::quantization;
  kernels::RowFormat key_format() const { return {}; }
  kernels::RowFormat value_format() const { return {}; }
};
struct QuantMissingValue {
  using family = kvc::family::quantization;
  kernels::RowFormat key_format() const { return {}; }
};

struct GoodLowRank {
  using family = kvc::family::lowrank;
  std::size_t rank_keys(const Shape&) const { return 1; }
  std::size_t rank_values(const Shape&) const { return 1; }
  bool ready(std::size_t, std::size_t) const { return true; }
  void calibrate(std::size_t, std::size_t, std::span<const float>, std::span<const float>, std::size_t) {}
  void project_key(std::size_t, std::size_t, const float*, float*) const {}
  void project_value(std::size_t, std::size_t, const float*, float*) const {}
  void restore_value(std::size_t, std::size_t, const float*, float*) const {}
};
struct LowRankMissingRestore {
  using family = kvc::family::lowrank;
  std::size_t rank_keys(const Shape&) const { return 1; }
  std::size_t rank_values(const Shape&) const { return 1; }
  bool ready(std::size_t, std::size_t) const { return true; }
  void calibrate(std::size_t, std::size_t, std::span<const float>, std::span<const float>, std::size_t) {}
  void project_key(std::size_t, std::size_t, const float*, float*) const {}
  void project_value(std::size_t, std::size_t, const float*, float*) const {}
};

static_assert(SelectionPolicy<GoodSelect>);
static_assert(!SelectionPolicy<SelectWithoutFamily>, "a policy must name its family");
static_assert(!SelectionPolicy<SelectMissingSelect>, "a selection policy needs select()");
static_assert(!SelectionPolicy<SelectWrongReturn>, "select() returns the number of kept tokens");
static_assert(!SelectionPolicy<GoodBudget>, "a budget policy is not a selection policy");
static_assert(AttendHook<Observer> && !AttendHook<GoodSelect>);
static_assert(AppendHook<ColumnKeeper> && CompactHook<ColumnKeeper> && !AppendHook<Observer>);
static_assert(HasColumn<ColumnKeeper> && HasState<ColumnKeeper> && Resettable<ColumnKeeper>);
static_assert(std::is_same_v<column_t<ColumnKeeper>, std::uint16_t> && std::is_same_v<column_t<GoodSelect>, NoColumn>);
static_assert(std::is_same_v<state_t<GoodSelect>, NoState> && !HasColumn<GoodSelect> && !HasState<GoodSelect>);
static_assert(KVCache<ContiguousLayout, GoodSelect, ColumnKeeper>::has_quantization);
static_assert(BudgetPolicy<GoodBudget> && !BudgetPolicy<BudgetMissingAllocate>);
static_assert(MergingPolicy<GoodMerge> && !MergingPolicy<MergeWrongSignature>);
static_assert(QuantizationPolicy<GoodQuant> && !QuantizationPolicy<QuantMissingValue>);
static_assert(LowRankPolicy<GoodLowRank> && !LowRankPolicy<LowRankMissingRestore>);
static_assert(Layout<ContiguousLayout> && Layout<PagedLayout>);
static_assert(!Layout<GoodSelect>);

// Family bookkeeping: policies are found by family whatever their order.
static_assert(detail::at_most_one_per_family<GoodSelect, GoodBudget, GoodMerge, GoodQuant, GoodLowRank>());
static_assert(!detail::at_most_one_per_family<GoodSelect, Observer>());
static_assert(std::is_same_v<detail::family_policy_t<family::budget, GoodQuant, GoodBudget, GoodSelect>, GoodBudget>);
static_assert(std::is_void_v<detail::family_policy_t<family::merging, GoodQuant, GoodSelect>>);

static_assert(valid_stack_v<> && valid_stack_v<GoodQuant> && valid_stack_v<GoodSelect, GoodBudget, GoodMerge>);
static_assert(!valid_stack_v<GoodBudget>, "a budget needs a selection");
static_assert(!valid_stack_v<GoodQuant, GoodMerge>, "merging needs a selection");
static_assert(!valid_stack_v<GoodSelect, Observer>, "two selections");
static_assert(!valid_stack_v<SelectMissingSelect>, "a policy must satisfy its concept");

using Everything = KVCache<PagedLayout, GoodQuant, GoodLowRank, GoodMerge, GoodBudget, Observer>;
static_assert(Everything::has_budget && Everything::has_selection && Everything::has_merging &&
              Everything::has_quantization && Everything::has_lowrank && Everything::observes_attention);
static_assert(!KVCache<>::has_selection && !KVCache<>::observes_attention);

}  // namespace
}  // namespace kvc::static_tests
