#!/usr/bin/env bash
# Every test: the release build with g++ (unit, real-model, packaging and compile-fail tests,
# benchmarks compiled), the same suite built with clang 14, then the library's unit tests again
# under AddressSanitizer and UndefinedBehaviorSanitizer (without the model engine, whose tests
# the two release builds already run). Warnings are errors throughout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
jobs="$(nproc)"
models="${KVC_MODELS_DIR:-$root/../shared/models}"

configure_build_test() {  # name, ctest args, cmake args...
  local name="$1" ctest_args="$2"; shift 2
  local dir="$root/build-$name"
  echo "== $name: configure and build" >&2
  cmake -S "$root" -B "$dir" -G Ninja -DKVC_WERROR=ON -DKVC_MODELS_DIR="$models" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== $name: test" >&2
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$jobs" $ctest_args)
}

configure_build_test gcc "" -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release
configure_build_test clang "-E packaging|compile_fail" -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Release \
  -DKVC_BUILD_BENCH=OFF
configure_build_test sanitize "-E packaging|compile_fail" -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Debug \
  -DKVC_BUILD_BENCH=OFF -DKVC_BUILD_EXAMPLES=OFF -DKVC_BUILD_ENGINE=OFF \
  "-DCMAKE_CXX_FLAGS=-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
echo "test.sh: all suites passed" >&2
