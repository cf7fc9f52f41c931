#!/usr/bin/env bash
# The mpx benchmark: builds in release and runs `mpx-bench`, which measures every mpx operation
# and the floor it is bounded by (TCP loopback, raw MPI under mpirun, `mpirun true`) in one run,
# prints the table and writes target/mpx-bench.json. Latency and start/stop rows are measured for both
# engine kernels (python, the default: `rtt1`...; rhai: `rtt1.rhai`...). See BENCHMARKS.md.
#
#   scripts/bench.sh           full run (≥ 200 samples per latency, 50 per 8 MB move, 7 per 80 MB move; < 10 min)
#   scripts/bench.sh --quick   smoke run (20, 5 and 2 samples; < 1 min; rough figures)
#
# Extra arguments go to mpx-bench (`--only rtt1,psum`, `--out FILE`; `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# Open MPI refuses root without these; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Containers often lack ptrace (CMA); this keeps Open MPI's shared memory path quiet there.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

cargo build --release -p mpx-cli -p mpx-engine -p mpx-benches --bins
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi
target/release/mpx-bench --commit "$commit" "$@"

# From Python (the mpx package): no-op execute and apply round trips, next to the rows above,
# when the package's venv exists (scripts/python-env.sh makes it; scripts/test.sh runs that).
if [ -x target/pyenv/bin/python ] && target/pyenv/bin/python -c 'import mpx' 2>/dev/null; then
  reps=200
  for a in "$@"; do [ "$a" = --quick ] && reps=30; done
  echo
  echo "From Python (python/bench.py, $reps round trips each):"
  # -P: import the installed package, not the sources next to the script.
  MPX_BIN="$PWD/target/release/mpx" target/pyenv/bin/python -P python/bench.py --reps "$reps"
fi
