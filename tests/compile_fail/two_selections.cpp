// Must not compile: a cache with two selection policies (tests/CMakeLists.txt checks the message).
#include "kvc/kvc.hpp"

struct A {
  using family = kvc::family::selection;
  template <class P>
  std::size_t select(const kvc::HeadRef<P>&, std::span<std::uint32_t>) { return 0; }
};
struct B : A {};

int main() { kvc::KVCache<kvc::ContiguousLayout, A, B> cache(kvc::Shape{1, 1, 1, 8}); }
