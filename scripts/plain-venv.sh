#!/usr/bin/env bash
# A plain venv as a new user makes one: over /usr/bin/python3, WITHOUT --system-site-packages,
# with numpy and mpi4py from PyPI (mpi4py built against the system's Open MPI by its mpicc), the
# test tools, a package found nowhere else (python/tests/venv_only) and `pip install ./python`,
# which brings the client, the `mpx` command and the engine (`python -m mpx.engine`) built for
# this venv. Its `mpx` starts clusters whose engines run this venv. Idempotent; the venv is
# $MPX_PLAIN_VENV, default target/plain-venv; this prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
VENV="${MPX_PLAIN_VENV:-$PWD/target/plain-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$VENV" >&2
fi
pip=("$VENV/bin/pip" install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import numpy, mpi4py, cloudpickle, maturin, pytest, IPython, nbclient, nbformat, ipykernel, mpx_venv_only" 2>/dev/null; then
  "${pip[@]}" numpy mpi4py cloudpickle maturin pytest ipython nbclient nbformat ipykernel >&2
  "${pip[@]}" ./python/tests/venv_only >&2
fi
# --no-build-isolation: the venv's maturin (on PATH for the build) instead of fetching one.
export PATH="$VENV/bin:$PATH"
"${pip[@]}" --no-build-isolation ./python >&2
echo "$VENV"
