"""mpx for Python, IPython and Jupyter: interactive parallel computing on MPI.

The API follows ipyparallel::

    import mpx
    with mpx.Cluster(n=4) as rc:          # or rc = mpx.Client() for a running cluster
        view = rc[:]
        view.execute("import numpy as np", block=True)
        view["a"] = np.arange(10)          # push; numpy arrays are not copied on the client
        view.apply_sync(lambda x: x * 2, 21)

``%load_ext mpx`` in IPython gives ``%px``, ``%%px``, ``%autopx``, ``%pxresult``, ``%where``,
``%restart``, ``%pxhistory``, ``%replay`` and ``%export``.

A request's results come engine by engine (``ar.results_so_far()``, ``ar.ready_engines()``,
``ar.wait_interactive()``), with what the controller says of ranks stuck in MPI calls
(``ar.stuck``); ``rc.interrupt()`` frees them, and ``rc.restart()`` gives a fresh MPI world with
the same engine ids.

The controller keeps the session's history (``rc.history()``): ``rc.restart(replay=True)`` and
``rc.replay()`` run the session before a restart again, ``rc.export("job.py", sbatch=True)``
writes it as a plain mpi4py program for a batch job.
"""
from typing import TYPE_CHECKING

from ._mpx import RefusedError
from .asyncresult import AsyncResult, ExecuteReply
from .balanced import LoadBalancedView, MapResult, TaskResult
from .client import Client
from .cluster import Cluster, find_mpx
from .error import CompositeError, EngineDied, RemoteError
from .history import Exported, History, HistoryEntry, Replay
from .view import View

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "AsyncResult",
    "Client",
    "Cluster",
    "CompositeError",
    "EngineDied",
    "ExecuteReply",
    "Exported",
    "History",
    "HistoryEntry",
    "LoadBalancedView",
    "MapResult",
    "RefusedError",
    "RemoteError",
    "Replay",
    "TaskResult",
    "View",
    "find_mpx",
    "load_ipython_extension",
]


def load_ipython_extension(ipython: "InteractiveShell") -> None:
    """``%load_ext mpx``: registers the parallel magics."""
    from .magics import load

    load(ipython)
