#!/usr/bin/env bash
# Installs the dependencies, builds mcp-agent twice (AddressSanitizer +
# UndefinedBehaviorSanitizer, then plain) with -Werror, and runs every test in
# both builds: C unit tests, the TOML conformance suite, the Lua policy specs
# and the integration tests on real podman. Ends with ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_DEPS:-0}" != 1 ]; then
    scripts/install-deps.sh
fi
jobs=$(nproc)

echo "== sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -DMCP_SANITIZE=ON -DMCP_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$jobs"
# Lua specs do not touch C code: the plain run covers them.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$jobs" -E '^lua/')

echo "== plain build"
cmake -S . -B build -DMCP_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
cd build && ctest --output-on-failure -j "$jobs"
