#pragma once
// Every policy names its family with a nested `using family = kvc::family::X;`. The container
// applies families in a fixed order, whatever order the user lists policies in:
//   budget -> selection -> merging   (at compression: how many, which, what becomes of the rest)
//   lowrank -> quantization          (at append: how kept rows are projected, then encoded)
#include <concepts>
#include <cstddef>

namespace kvc::family {

struct budget {};
struct selection {};
struct merging {};
struct quantization {};
struct lowrank {};

}  // namespace kvc::family

namespace kvc {

template <class P>
concept HasFamily = requires { typename P::family; };

template <class P, class Family>
concept InFamily = HasFamily<P> && std::same_as<typename P::family, Family>;

// Optional: report bytes of per-head state (counted in the cache's memory_bytes()). Asked of
// the policy's `state` when it has one, and of the policy itself (SVD's fitted bases).
template <class T>
concept ReportsMemory = requires(const T& t) {
  { t.memory_bytes() } -> std::convertible_to<std::size_t>;
};

// Optional: report scratch kept per cache, not per token (counted in workspace_bytes()).
template <class T>
concept ReportsWorkspace = requires(const T& t) {
  { t.workspace_bytes() } -> std::convertible_to<std::size_t>;
};

}  // namespace kvc
