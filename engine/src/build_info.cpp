#include "kvc_engine/build_info.hpp"

#ifndef KVC_GIT_COMMIT
#define KVC_GIT_COMMIT "unknown"
#endif

namespace kvc::engine {

const char* git_commit() noexcept { return KVC_GIT_COMMIT; }

}  // namespace kvc::engine
