#!/usr/bin/env bash
# The Python environment of mpx's Python client (python/) and its tests: a venv over
# /usr/bin/python3 with --system-site-packages, so the client sees the same numpy, mpi4py and
# cloudpickle (apt: python3-numpy python3-mpi4py python3-cloudpickle) as the engines, which
# embed /usr/bin/python3's libpython; the test tools and mypy from PyPI; and the `mpx` package
# built from ./python with maturin. Idempotent (the tools are installed once, the package rebuilt
# incrementally). The venv is $MPX_PYENV, default target/pyenv; this prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
VENV="${MPX_PYENV:-$PWD/target/pyenv}"
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
fi
if ! "$VENV/bin/python" -c "import maturin, pytest, IPython, nbclient, nbformat, ipykernel, mypy" 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check maturin pytest ipython nbclient nbformat ipykernel mypy >&2
fi
# --no-build-isolation: use the venv's maturin (on PATH for the build) instead of fetching one.
export PATH="$VENV/bin:$PATH"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation ./python >&2
echo "$VENV"
