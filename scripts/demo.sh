#!/usr/bin/env bash
# The reference session: a 4-engine cluster, a random array per engine, psum via MPI Allreduce,
# every engine prints the same total. Stops the cluster on every exit path.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

cargo build --release --bins
export PATH="$PWD/target/release:$PATH"

mpx cluster start -n 4 --daemonize
trap 'mpx cluster stop' EXIT
mpx px 'let a = rand(100);'
mpx run examples/psum.rhai
mpx px 'let s = psum(a);'
mpx px 'print(s)'
