#!/usr/bin/env bash
# The mpx benchmark: builds in release and runs `mpx-bench`, which measures every mpx operation
# and the floor it is bounded by (TCP loopback, raw MPI under mpirun, `mpirun true`) in one run,
# prints the table and writes target/mpx-bench.json. Latency and start/stop rows are measured for both
# engine kernels (python, the default: `rtt1`...; rhai: `rtt1.rhai`...). See BENCHMARKS.md.
# The data rows exist on both paths a move can take: `push8M` ... `gather80M` with a client over
# TCP (goal ≤ 1.2x the design floor: one TCP hop + the raw MPI collective), `push8M.shm` ...
# `gather80M.shm` with the client on the controller's host (Unix socket, memfds; goal: faster than
# one bare TCP hop, `tcp_8mb`/`tcp_80mb`), printed with one memcpy of the bytes and, for the 80 MB
# push and pull, ipyparallel's figures (goal ≥ 5x faster). MPX_SHM=0 leaves the .shm rows pending.
# The `.interp` rows (`rtt1.interp`, `psum.interp`, `push80M.interp`, `pull80M.interp`, `start.interp`)
# run the engines in a Python environment with the mpx package (`mpx cluster start --python PATH`):
# target/plain-venv (scripts/plain-venv.sh), else target/pyenv (scripts/python-env.sh), the first
# where `import mpx` works; with neither they are reported pending. `--python PATH` chooses another.
#
#   scripts/bench.sh           full run (≥ 200 samples per latency, 50 per 8 MB move, 7 per 80 MB move; < 10 min)
#   scripts/bench.sh --quick   smoke run (20, 5 and 2 samples; < 1 min; rough figures)
#
#   scripts/bench.sh --engines [--quick]   only the scale section: mpx-bench-engines, simulated
#                              engines against one controller (1,000 and 10,000; --quick: 100 and 1,000)
#   scripts/bench.sh --with-engines [--quick]   the usual run, then the scale section
#
# Extra arguments go to mpx-bench (`--only rtt1,psum`, `--out FILE`; `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# Open MPI refuses root without these; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Containers often lack ptrace (CMA); this keeps Open MPI's shared memory path quiet there.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# The scale section (simulated engines, no MPI): --engines alone, or after the rest.
engines=none quick=()
args=()
for a in "$@"; do
  case $a in
    --engines) engines=only ;;
    --with-engines) engines=after ;;
    --quick) quick=(--quick); args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
set -- ${args[@]+"${args[@]}"}
run_engines() {
  echo
  echo "Scale: simulated engines against one controller (benches/src/bin/mpx-bench-engines.rs):"
  local out=target/mpx-bench-engines.json
  [ ${#quick[@]} -gt 0 ] && out=target/mpx-bench-engines-quick.json
  target/release/mpx-bench-engines ${quick[@]+"${quick[@]}"} --out "$out"
}

cargo build --release -p mpx-cli -p mpx-engine -p mpx-benches --bins
if [ "$engines" = only ]; then
  run_engines
  exit 0
fi
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi
# The interpreter of the .interp rows' engines, unless the arguments give one. (Its extension
# module is the one `pip install ./python` built when the venv's script last ran: rerun the script
# after changing the engine, or the two modes measure different code.)
python=()
case " $* " in
  *" --python "* | *" --python="*) ;;
  *)
    for venv in target/plain-venv target/pyenv; do
      if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mpx' 2>/dev/null; then
        python=(--python "$PWD/$venv/bin/python")
        break
      fi
    done
    ;;
esac
target/release/mpx-bench --commit "$commit" ${python[@]+"${python[@]}"} "$@"

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

if [ "$engines" = after ]; then
  run_engines
fi
