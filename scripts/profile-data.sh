#!/usr/bin/env bash
# Where a data row's time goes: runs the data rows of mpx-bench under `perf record` (every process
# of the run: client, controller, engines) and, for each row, splits the CPU time spent during its
# timed samples by category (hash = keyed BLAKE3, tcp = the kernel's socket paths, mpi = Open MPI
# and its shared-memory copies, copy = memcpy/memmove in user space, pages = page faults and
# zeroing, python = the engine's interpreter, other) and by thread, per transfer. Wall time minus
# the busiest thread's CPU is time that thread waited for the others.
#
#   scripts/profile-data.sh [ROWS]   default ROWS: push8M,pull8M,scatter8M,gather8M,push80M,pull80M,scatter80M,gather80M
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
rows="${1:-push8M,pull8M,scatter8M,gather8M,push80M,pull80M,scatter80M,gather80M}"
command -v perf >/dev/null || { echo "profile-data.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }
cargo build --release -q -p mpx-cli -p mpx-engine -p mpx-benches --bins
out="${PROFILE_DIR:-$(mktemp -d)}"
[ -n "${PROFILE_DIR:-}" ] || trap 'rm -rf "$out"' EXIT   # the profile is large: kept only in PROFILE_DIR
MPX_BENCH_WINDOWS=1 perf record -q -e cpu-clock -k CLOCK_MONOTONIC -F 2000 -g -o "$out/perf.data" -- \
  target/release/mpx-bench --only "$rows" --out "$out/bench.json" >"$out/bench.txt" 2>"$out/windows.txt"
grep '^|' "$out/bench.txt"
python3 scripts/profile_windows.py "$out/perf.data" "$out/windows.txt" "$out/bench.json"
