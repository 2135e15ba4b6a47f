#pragma once
// The library's version: the one place it is written (CMakeLists.txt reads it from here).
// Semantic versioning; what the public API is and what counts as a break: README, "Compatibility".

#define KVC_VERSION_MAJOR 0
#define KVC_VERSION_MINOR 1
#define KVC_VERSION_PATCH 0
// One number that orders versions: 0.1.0 is 100, 1.4.12 is 10412.
#define KVC_VERSION (KVC_VERSION_MAJOR * 10000 + KVC_VERSION_MINOR * 100 + KVC_VERSION_PATCH)

namespace kvc {

struct Version {
  int major, minor, patch;
  friend constexpr auto operator<=>(const Version&, const Version&) = default;
};

// The version of the headers this translation unit was compiled with.
inline constexpr Version version{KVC_VERSION_MAJOR, KVC_VERSION_MINOR, KVC_VERSION_PATCH};

}  // namespace kvc
