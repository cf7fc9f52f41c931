#!/usr/bin/env bash
# What mpx needs on Debian 12: Open MPI, libclang (for rsmpi's bindgen), a C toolchain, and Rust
# (through rustup, only if cargo is missing). Run as root, or it uses sudo.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
if ! command -v mpirun >/dev/null || ! dpkg -s libopenmpi-dev libclang-dev >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config openmpi-bin libopenmpi-dev libclang-dev ca-certificates curl >/dev/null
fi
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
fi
