#!/usr/bin/env bash
# What mpx needs on Debian 12: Open MPI, libclang (for rsmpi's bindgen), a C toolchain, Slurm and
# munge (for the Slurm launcher's test, which starts its own private daemons), Python with numpy
# and mpi4py (the engines' default kernel embeds /usr/bin/python3's libpython), OpenBLAS (its
# package switches the system BLAS that Debian's numpy uses: a 1000x1000 matmul 25x faster than
# the reference BLAS; each engine takes its share of the host's cores, engine/src/threads.rs),
# and Rust (through rustup, only if cargo is missing); then the Python client's venv (scripts/python-env.sh: venv,
# test tools, `pip install ./python`). Run as root, or it uses sudo.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
packages=(build-essential pkg-config openmpi-bin libopenmpi-dev libclang-dev ca-certificates curl tmux
          slurmctld slurmd slurm-client munge slurm-wlm-torque iproute2
          python3-dev libopenblas0-pthread python3-numpy python3-mpi4py python3-cloudpickle python3-venv python3-pip)
if ! command -v mpirun >/dev/null || ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
fi
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
"$(dirname "$0")/python-env.sh" >/dev/null
