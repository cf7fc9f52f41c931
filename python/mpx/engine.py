"""``python -m mpx.engine --connect FILE``: an mpx engine in this interpreter.

mpirun starts one per rank (``mpx cluster start`` does so when run from this package's ``mpx``
command, ``mpx.Cluster``, or with ``--python PATH``), so cells run in the user's own
environment: its Python, numpy and packages. The engine is the same Rust engine as the
``mpx-engine`` binary, from this package's extension module; this thread becomes its MPI thread
and cells run on it, in a fresh ``__main__`` namespace.

The engine defines the blocking MPI functions that cells call (``MPI_Barrier``, ``MPI_Recv``,
...) so that ``mpx where`` names them and Ctrl-C frees ranks inside them. An extension module's
symbols are private to it, so that mpi4py's calls would go straight to the MPI library; this
module first makes the extension's symbols global (``RTLD_GLOBAL | RTLD_NOLOAD``, before MPI
and mpi4py load), which puts its definitions ahead of the MPI library's for every module loaded
later, as the engine binary's exported symbols are (the PMPI tool technique, without a
preloaded library). ``MPX_INTERCEPT=0`` leaves them private.
"""
from __future__ import annotations

import builtins
import ctypes
import os
import sys
import types
from typing import Optional, Sequence


def _make_symbols_global() -> None:
    from . import _mpx

    if os.environ.get("MPX_INTERCEPT", "1") == "0":
        return
    ctypes.CDLL(_mpx.__file__, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)


def _fresh_main() -> None:
    """Cells get an empty ``__main__``, as in the engine binary, not this module's globals."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs the engine with ``argv`` (default: this command's arguments) and ends the process
    with its exit code."""
    _make_symbols_global()
    from . import _mpx

    args = list(sys.argv[1:] if argv is None else argv)
    _fresh_main()
    code = _mpx.run_engine(args)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # As the engine binary: no interpreter shutdown after MPI was finalized (atexit handlers of
    # the cells' modules, e.g. mpi4py's, would call into it).
    os._exit(code)


if __name__ == "__main__":
    main()
