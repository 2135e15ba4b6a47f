// Must not compile: a quantization policy without value_format().
#include "kvc/kvc.hpp"

struct HalfQuant {
  using family = kvc::family::quantization;
  kvc::kernels::RowFormat key_format() const { return {}; }
};

int main() { kvc::KVCache<kvc::ContiguousLayout, HalfQuant> cache(kvc::Shape{1, 1, 1, 8}); }
