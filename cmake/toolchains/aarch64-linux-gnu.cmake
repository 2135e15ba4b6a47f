# Cross build for 64-bit Arm Linux with Debian's cross compilers (g++-aarch64-linux-gnu) and
# arm64 libraries installed beside the host's (Debian multiarch: `dpkg --add-architecture arm64`,
# then libfmt-dev:arm64 and the like, in /usr/lib/aarch64-linux-gnu). The header-only
# dependencies (Eigen, CLI11, nlohmann-json) are the host's, from /usr/include and /usr/share.
# ctest runs the test binaries under qemu-user (package qemu-user); -L gives it the target's
# dynamic loader and C library from the cross toolchain's sysroot.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
# CMAKE_LIBRARY_ARCHITECTURE points find_package and find_library at /usr/lib/aarch64-linux-gnu;
# pkg-config (PCRE2) must look there too, and not at the host's .pc files.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
