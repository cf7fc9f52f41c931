#!/usr/bin/env bash
# The reference session (the seed's, in Python): a 4-engine cluster started in examples/ (so the
# engines import examples/psum.py), a random array per engine, psum via mpi4py's Allreduce, every
# engine prints the same total. Stops the cluster on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

cargo build --release --bins
export PATH="$PWD/target/release:$PATH"

cd examples
trap 'mpx cluster stop || true' EXIT   # also after a failed or interrupted start
mpx cluster start -n 4 --daemonize
mpx px 'import numpy as np'
mpx px 'a = np.random.rand(100)'
mpx px 'from psum import psum'
mpx px 's = psum(a)'
mpx px 'print(s)'
