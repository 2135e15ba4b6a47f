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

// Optional capability: report the bytes of per-head state the policy keeps (counted in the
// cache's memory_bytes()).
template <class P>
concept ReportsMemory = requires(const P& p) {
  { p.memory_bytes() } -> std::convertible_to<std::size_t>;
};

// Optional capability: report scratch the policy keeps per cache, not per token (counted in the
// cache's workspace_bytes()).
template <class P>
concept ReportsWorkspace = requires(const P& p) {
  { p.workspace_bytes() } -> std::convertible_to<std::size_t>;
};

}  // namespace kvc
