#pragma once
// Every test binary replaces the global operator new (allocation_counter.cpp) so that tests can
// assert that a hot path allocates nothing after warm-up.
#include <cstddef>

namespace kvc::testing {

// Allocations through operator new in this process so far.
std::size_t allocation_count() noexcept;

}  // namespace kvc::testing
