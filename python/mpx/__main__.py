"""The ``mpx`` command, from this package: its ``mpx`` console script and ``python -m mpx``.

The same command as the ``mpx`` executable (the Rust code is in the extension module); clusters
it starts run their engines in this interpreter (``python -m mpx.engine``), so in the user's
own environment, unless ``--engine``, ``--python`` or ``$MPX_ENGINE`` choose other ones.
"""
from __future__ import annotations

import signal
import sys


def main() -> None:
    """Runs ``mpx`` with this process's arguments and exits with its code."""
    from . import _mpx

    # The command handles Ctrl-C itself (stopping what it started), as the executable does:
    # Python's handler would only raise KeyboardInterrupt after it returned.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = _mpx.run_command([sys.executable, "-m", "mpx"], sys.argv[1:], sys.executable)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
