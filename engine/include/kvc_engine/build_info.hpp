#pragma once
// What built this engine, for the results files: the source commit as of the last CMake configure
// (`git describe --always --dirty`; "unknown" outside a git checkout).

namespace kvc::engine {

[[nodiscard]] const char* git_commit() noexcept;

}  // namespace kvc::engine
