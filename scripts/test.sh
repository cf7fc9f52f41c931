#!/usr/bin/env bash
# Runs every check and test: format, lint, build, unit tests, and the integration tests under a
# real mpirun. The same command is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# Open MPI refuses root without these; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Containers often lack ptrace (CMA); this keeps Open MPI's shared memory path quiet there.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Docs build without broken links (the spec lives beside the types).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
cargo build --workspace --bins --examples
cargo test --workspace

# The Python client (python/): its venv (made or refreshed by python-env.sh, which also runs
# `pip install ./python`), then pytest against real 4-rank clusters of the binaries built above.
VENV="$(./scripts/python-env.sh)"
# The package's type hints are checked (it ships them: py.typed, and _mpx.pyi for the extension).
"$VENV/bin/python" -m mypy --strict python/mpx
MPX_BIN="$PWD/target/debug/mpx" "$VENV/bin/python" -m pytest -q python/tests
# The same suite again with the engines in the user's own interpreter: a plain venv (no system
# packages; numpy and mpi4py from PyPI) where `pip install ./python` gave the client, the `mpx`
# command and the engine; its `mpx` runs engines as `python -m mpx.engine` of that venv
# (test_venv.py checks that they do).
PLAIN="$(./scripts/plain-venv.sh)"
MPX_TEST_ENGINES=python MPX_BIN="$PLAIN/bin/mpx" "$PLAIN/bin/python" -m pytest -q python/tests

# Smoke run of the benchmark (figures are printed, never asserted).
./scripts/bench.sh --quick --with-engines --out target/mpx-bench-quick.json
