#pragma once
// Compile-time bookkeeping of a KVCache's policy pack: which policy serves which family.
#include "kvc/concepts/budget.hpp"
#include "kvc/concepts/family.hpp"
#include "kvc/concepts/lowrank.hpp"
#include "kvc/concepts/merging.hpp"
#include "kvc/concepts/quantization.hpp"
#include "kvc/concepts/selection.hpp"

#include <cstddef>
#include <tuple>
#include <type_traits>

namespace kvc::detail {

template <class Family, class... P>
inline constexpr std::size_t family_count = (std::size_t{InFamily<P, Family>} + ... + std::size_t{0});

template <class Family, class... P>
consteval std::size_t family_index() {
  constexpr bool matches[] = {InFamily<P, Family>..., false};
  for (std::size_t i = 0; i < sizeof...(P); ++i)
    if (matches[i]) return i;
  return sizeof...(P);
}

// The policy type of a family, or void when the pack has none.
template <class Family, class... P>
struct family_policy {
  using type = void;
};
template <class Family, class... P>
  requires(family_count<Family, P...> == 1)
struct family_policy<Family, P...> {
  using type = std::tuple_element_t<family_index<Family, P...>(), std::tuple<P...>>;
};
template <class Family, class... P>
using family_policy_t = typename family_policy<Family, P...>::type;

// A policy satisfies the concept of the family it names.
template <class P>
concept ValidPolicy = (InFamily<P, family::budget> && BudgetPolicy<P>) ||
                      (InFamily<P, family::selection> && SelectionPolicy<P>) ||
                      (InFamily<P, family::merging> && MergingPolicy<P>) ||
                      (InFamily<P, family::quantization> && QuantizationPolicy<P>) ||
                      (InFamily<P, family::lowrank> && LowRankPolicy<P>);

template <class P>
concept KnownFamily = InFamily<P, family::budget> || InFamily<P, family::selection> ||
                      InFamily<P, family::merging> || InFamily<P, family::quantization> ||
                      InFamily<P, family::lowrank>;

template <class... P>
consteval bool at_most_one_per_family() {
  return family_count<family::budget, P...> <= 1 && family_count<family::selection, P...> <= 1 &&
         family_count<family::merging, P...> <= 1 && family_count<family::quantization, P...> <= 1 &&
         family_count<family::lowrank, P...> <= 1;
}

}  // namespace kvc::detail

namespace kvc {

// Whether KVCache<Layout, P...> accepts this policy pack: every policy names a known family and
// satisfies its concept, at most one per family, and budget or merging come with a selection.
// Tools that build stacks at run time check it with `if constexpr` instead of restating the rules.
template <class... P>
inline constexpr bool valid_stack_v = [] {
  if constexpr (!((detail::KnownFamily<P> && detail::ValidPolicy<P>) && ... && true)) {
    return false;
  } else {
    constexpr bool has_selection = detail::family_count<family::selection, P...> == 1;
    return detail::at_most_one_per_family<P...>() &&
           (has_selection || (detail::family_count<family::budget, P...> == 0 &&
                              detail::family_count<family::merging, P...> == 0));
  }
}();

}  // namespace kvc
