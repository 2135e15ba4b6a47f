#pragma once
// Every test binary replaces the global operator new (allocation_counter.cpp) so that tests can
// assert that a hot path allocates nothing after warm-up.
#include <cstddef>

namespace kvc::testing {

// Allocations through operator new in this process so far.
std::size_t allocation_count() noexcept;

// Fault injection: the n-th allocation from now (0: the next one) fails as if memory were
// exhausted (the throwing forms throw std::bad_alloc, the nothrow forms return null); the ones
// after it succeed again. failed_allocation() says whether it has fired.
void fail_allocation(std::size_t n) noexcept;
void disarm_allocation_failure() noexcept;
bool failed_allocation() noexcept;

}  // namespace kvc::testing
