# KVC_ARCH_X86_64: whether the C++ compiler targets x86-64. The compiler is asked with the test
# include/kvc/kernels/table.hpp makes, so the build and the headers agree on which kernel tables
# exist, and a cross toolchain (or -m32) gets no x86 -m flags.
include_guard(GLOBAL)
include(CheckCXXSourceCompiles)
block()
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)  # compiling is the test: no link, no run
  check_cxx_source_compiles("
#if !(defined(__x86_64__) || defined(_M_X64))
#error not x86-64
#endif
int kvc_arch_probe() { return 0; }" KVC_ARCH_X86_64)
endblock()
