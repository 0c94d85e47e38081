#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang-16 (ASan + UBSan,
# build-fuzz/) and runs each for SECONDS (default 60) on its seed corpus, two
# at a time (ctest label "fuzz"), then prints what each did: executions,
# coverage (edges "cov", features "ft"), corpus size. New inputs are kept in
# build-fuzz/tests/fuzz/work/NAME/corpus, a crash in .../artifacts.
#   scripts/fuzz.sh [SECONDS]        e.g. scripts/fuzz.sh 600 for the figures of docs/RELIABILITY.md
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cc=${MCP_FUZZ_CC:-clang-16}
jobs=${MCP_FUZZ_JOBS:-2}
if ! command -v "$cc" >/dev/null; then
    echo "fuzz.sh: $cc not found (scripts/install-deps.sh installs clang-16 and libclang-rt-16-dev)" >&2
    exit 2
fi
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$cc" -DMCP_FUZZ=ON -DMCP_WERROR=ON \
    -DBUILD_TESTING=OFF -DMCP_FUZZ_SECONDS="$seconds" >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzzers >/dev/null
rc=0
(cd build-fuzz && ctest -L fuzz -j "$jobs" --output-on-failure) || rc=$?
# libFuzzer's closing lines of every run, from ctest's log.
awk '/^[0-9]+\/[0-9]+ Test: fuzz\// { name = $3 }
     /DONE +cov:/ && name { sub(/^#[0-9]+[ \t]+DONE +/, ""); done[name] = $0 }
     /^stat::number_of_executed_units/ && name { execs[name] = $2 }
     /^stat::peak_rss_mb/ && name { rss[name] = $2 }
     END { for (n in execs) printf "%-16s execs %-10s peak rss %4s MB  %s\n", n, execs[n], rss[n], done[n] }' \
    build-fuzz/Testing/Temporary/LastTest.log | sort
exit $rc
