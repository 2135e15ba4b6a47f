#!/usr/bin/env bash
# Every test. Warnings are errors throughout. Three builds:
#   gcc       g++ Release: unit, engine (stories260K and SmolLM2), evaluation, packaging and
#             compile-fail tests; benchmarks compiled.
#   sanitize  clang 14, AddressSanitizer + UndefinedBehaviorSanitizer + libFuzzer instrumentation:
#             the same unit, engine and evaluation tests, then every fuzz target replays its corpus
#             and fuzzes for KVC_FUZZ_SECONDS (default 20) seconds.
#   tsan      clang 14, ThreadSanitizer: what docs/architecture.md ("Concurrency") allows, run on
#             threads (tests/threads) and the threaded evaluation.
#   aarch64   Debian's g++ cross compiler for aarch64 (cmake/toolchains/aarch64-linux-gnu.cmake),
#             Release, the scalar kernels only, tests run by ctest under qemu-user: the library's
#             unit tests (core, kernels, select, budget, merge, quant, lowrank), the C API program and the engine's
#             (GGUF and tokenizer parsers, stories260K forward passes) on one engine thread
#             (KVC_ENGINE_THREADS=1); not the real-model forward passes (SmolLM2*, minutes each
#             under emulation), the death tests (a binary under qemu-user cannot re-execute
#             itself), nor the evaluation, data and threads tests (their binaries are not built:
#             _NOT_BUILT). Under qemu-user 7.2 an aarch64 test with threads ran for minutes where
#             it takes seconds on one (Forward.GreedyStoryFromBosMatchesTheReference: 2.6 s with
#             one engine thread, unfinished after 15 min with two; kvc-eval runs 2 threads), and
#             qemu runs threads with the host's memory ordering, so they would test nothing the
#             tsan build does not.
#   no-avx    the gcc build's dispatch and codec tests on an emulated x86-64 CPU without AVX
#             (qemu-x86_64 -cpu Westmere): the scalar table must be the only one supported.
#   The Python package is built in the gcc build (nanobind, from a venv in build-python/venv) and
#   its pytest suite runs there as the ctest test python.pytest; scripts/test_python.sh tests
#   the `pip install .` path separately.
# Each build's ctest prints its summary ("100% tests passed, 0 tests failed out of N").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" aarch64
jobs="$(nproc)"
models="$(bash "$root/scripts/fetch_models.sh" | tail -n 1)"
fuzz_seconds="${KVC_FUZZ_SECONDS:-20}"

configure_build_test() {  # name, build targets ("" = all), ctest args, cmake args...
  local name="$1" targets="$2" ctest_args="$3"; shift 3
  local dir="$root/build-$name"
  local start=$SECONDS
  echo "== $name: configure and build" >&2
  cmake -S "$root" -B "$dir" -G Ninja -DKVC_WERROR=ON -DKVC_MODELS_DIR="$models" "$@" >/dev/null
  # shellcheck disable=SC2086
  cmake --build "$dir" -j "$jobs" ${targets:+--target $targets}
  echo "== $name: test" >&2
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$jobs" $ctest_args)
  echo "== $name: $((SECONDS - start)) s" >&2
}

sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

venv="$root/build-python/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "nanobind>=2.0" "numpy>=1.21" "pytest>=7"

configure_build_test gcc "" "" -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release \
  -DKVC_BUILD_PYTHON=ON -DPython_EXECUTABLE="$venv/bin/python"
# The real-model forward passes (tests named SmolLM2*) run in the gcc build only: at -O1 under
# ASan they take minutes and test the same float arithmetic; the GGUF reader and tokenizer tests run here.
configure_build_test sanitize "" "-E packaging|compile_fail|SmolLM2" -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Debug \
  -DKVC_BUILD_BENCH=OFF -DKVC_BUILD_EXAMPLES=OFF -DKVC_BUILD_FUZZERS=ON -DKVC_FUZZ_SECONDS="$fuzz_seconds" \
  "-DCMAKE_CXX_FLAGS=-O1 -g $sanitizers -fsanitize=fuzzer-no-link"
configure_build_test tsan "kvc_threads_tests kvc_eval_tests" "-R ^(Concurrency|EvaluationThreads)\\." -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVC_BUILD_BENCH=OFF -DKVC_BUILD_EXAMPLES=OFF \
  "-DCMAKE_CXX_FLAGS=-fsanitize=thread -fno-omit-frame-pointer"
KVC_ENGINE_THREADS=1 configure_build_test aarch64 \
  "kvc_core_tests kvc_kernels_tests kvc_select_tests kvc_budget_tests kvc_merge_tests kvc_quant_tests kvc_lowrank_tests kvc_engine_tests kvc_c_api_test" \
  "-E _NOT_BUILT|packaging|compile_fail|SmolLM2|DeathTest|c_api.ctypes" \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DKVC_BUILD_BENCH=OFF -DKVC_BUILD_EXAMPLES=OFF
echo "== no-avx: x86-64 without AVX (qemu-x86_64 -cpu Westmere)" >&2
no_avx="$(qemu-x86_64 -cpu Westmere "$root/build-gcc/tests/kvc_kernels_tests" --gtest_brief=1 \
  --gtest_filter='Dispatch.*:Isa/Codec*')"
echo "$no_avx"
grep -q "supported ISAs: scalar ;" <<<"$no_avx" || { echo "no-avx: a table besides scalar was supported" >&2; exit 1; }
echo "test.sh: all suites passed" >&2
