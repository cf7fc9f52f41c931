""":class:`Client`: a connection to an mpx cluster, indexed into views of engines as in
ipyparallel (``rc[:]``, ``rc[0]``, ``rc[::2]``, ``rc[[0, 2]]``, ``rc[-1]``)."""
from __future__ import annotations

import json
import numbers
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, overload

from . import _apply, _mpx
from ._arrays import WIRE_DTYPES
from .history import Exported, History, HistoryEntry, Replay
from .view import View

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .balanced import LoadBalancedView, TaskResult

#: Seconds a control request (ids, interrupt, where) may take.
CONTROL_TIMEOUT = 10.0
#: Seconds ``restart`` waits for the new MPI world by default.
RESTART_TIMEOUT = 120.0
#: Seconds the results watcher waits for the load-balanced tasks it knows at a time, per task
#: and at least and at most (a task sent meanwhile is waited for from the next wait on; each
#: wait looks at every task, so many tasks are looked at less often).
TASK_SLICE = (0.00005, 0.005, 0.05)


class Client:
    """A connection to a cluster's controller.

    ``Client()`` connects to the only cluster running, ``Client(cluster_id="x")`` to cluster
    ``x``, ``Client("path/to/cluster-x.json")`` through a connection file.
    """

    def __init__(
        self, connection_file: Union[str, os.PathLike[str], None] = None, cluster_id: Optional[str] = None
    ) -> None:
        if connection_file is not None and cluster_id is not None:
            raise ValueError("give a connection file or a cluster id, not both")
        target = connection_file if connection_file is not None else (cluster_id or "")
        self._raw: _mpx.Client = _mpx.Client(str(target))
        self._lock = threading.Lock()
        self._helper_ready = False
        self._pending: list[weakref.ref[AsyncResult]] = []
        # Load-balanced tasks not yet ended (held: a task's done callbacks must run even when
        # nobody else keeps its TaskResult).
        self._tasks: list[TaskResult] = []
        self._wake = threading.Condition()
        self._watcher: Optional[threading.Thread] = None

    # -- the cluster -------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Ids of the registered engines (with one engine set, its MPI ranks)."""
        return self._raw.ids()

    @property
    def cluster_id(self) -> str:
        """The cluster id."""
        return self._raw.cluster_id

    @property
    def connection_file(self) -> str:
        """The connection file used."""
        return self._raw.connection_file

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: Union[int, slice, list[int], tuple[int, ...], range]) -> View:
        """A view: ``rc[:]`` all engines, ``rc[i]`` one (results unwrapped), a slice or a list."""
        if isinstance(key, slice) and key == slice(None):
            return View(self, None)
        ids = self.ids
        if isinstance(key, numbers.Integral):
            return View(self, [ids[int(key)]], single=True)
        if isinstance(key, slice):
            return View(self, ids[key])
        if isinstance(key, (list, tuple, range)):
            chosen = [ids[k] if k < 0 else int(k) for k in key]
            missing = [k for k in chosen if k not in ids]
            if missing:
                raise IndexError("no engine %s (engines: %s)" % (missing, ids))
            return View(self, chosen)
        raise TypeError("index a Client with an int, a slice or a list of ints")

    def direct_view(self, targets: Union[str, int, list[int], None] = "all") -> View:
        """A view on ``targets`` ("all", an id, or a list of ids)."""
        if targets == "all" or targets is None:
            return self[:]
        if isinstance(targets, str):
            raise ValueError("targets: 'all', an engine id or a list of ids, not %r" % targets)
        return self[targets]

    def load_balanced_view(self, targets: Optional[list[int]] = None, retries: int = 0) -> LoadBalancedView:
        """A view whose tasks each run on one free engine of ``targets`` (None: all); a task
        whose engine dies runs again elsewhere up to ``retries`` times."""
        from .balanced import LoadBalancedView

        return LoadBalancedView(self, targets, retries)

    def activate(self) -> None:
        """Makes the ``%px`` magics use this client."""
        from .magics import activate

        activate(self)

    def interrupt(self, targets: Optional[list[int]] = None) -> list[int]:
        """Interrupts the running cells of ``targets`` (None: all); returns the engines told.

        A cell fails with ``KeyboardInterrupt``; a rank inside an MPI receive or probe gets an
        ``mpi4py.MPI.Exception`` and the world goes on; a rank inside a collective (Barrier,
        Allreduce, ...), which MPI cannot leave half way, makes the controller restart the MPI
        world: same engine ids, variables lost, and that request's results are ``WorldDown``
        errors. Requests sent meanwhile wait for the new world."""
        return self._raw.interrupt(targets, CONTROL_TIMEOUT)

    @overload
    def restart(
        self, timeout: float = ..., reason: str = ..., replay: Literal[False] = ...
    ) -> list[int]: ...

    @overload
    def restart(self, timeout: float = ..., reason: str = ..., *, replay: Literal[True]) -> Replay: ...

    def restart(
        self, timeout: float = RESTART_TIMEOUT, reason: str = "restarted from Python", replay: bool = False
    ) -> Union[list[int], Replay]:
        """Restarts the cluster's MPI world and returns its engine ids once every engine of the
        new world is ready (waits up to ``timeout`` seconds).

        The engine ids, the controller, this client's connection and the connection file stay;
        the engines' variables, imports and functions are lost (running cells end with
        ``WorldDown`` errors). Requests sent meanwhile wait for the new world. Refused for
        engines started by hand (``mpx controller start``).

        With ``replay=True``, the session before the restart then runs again (see
        :meth:`replay`) and the :class:`~mpx.history.Replay` is returned (its ``engines`` are
        the new world's ids): what ran, what was not replayed and why, where it stopped."""
        ids = self._raw.restart(reason, timeout)
        self._world_restarted()
        if not replay:
            return ids
        done = self.replay()
        done.engines = ids
        return done

    # -- the session's history ---------------------------------------------------------------
    def history(self, n: Optional[int] = None, errors: bool = False) -> History:
        """The session's history, oldest first: every cell, run, push, scatter, pull, gather
        and call that reached the engines (by any client), with its targets, each engine's
        outcome and times; ``n``: only the last n entries; ``errors``: only those that failed
        somewhere. A :class:`~mpx.history.History` (a list of
        :class:`~mpx.history.HistoryEntry` with the current MPI world's ``epoch``); ``print()``
        shows it as ``mpx history`` does. Requests of this client's own (its apply helper) are
        not in it."""
        raw = json.loads(self._raw.history_json(CONTROL_TIMEOUT))
        history = History([HistoryEntry.from_json(e) for e in raw["entries"]], raw["epoch"])
        return history.select(n, errors) if n is not None or errors else history

    def replay(self, timeout: Optional[float] = None) -> Replay:
        """Runs the session before the last restart of the MPI world again (``mpx replay``):
        its cells and runs that succeeded then, on the same targets, and its pushes and
        scatters of ``.npy`` files (``View.push_npy``) that did not change, in order, each
        waited for up to ``timeout`` seconds (None: no limit). It stops at the first entry
        that fails now. Arrays pushed from memory, Python calls (``apply``, ``map``, pushes of
        Python values) and entries that failed then are not replayed; the
        :class:`~mpx.history.Replay` returned says which and why (``print()`` it). Ctrl-C
        interrupts the engines and stops the replay there."""
        session, ran, skipped, failed = self._raw.replay(timeout, CONTROL_TIMEOUT)
        entries = json.loads(session)
        return Replay.from_raw(entries, ran, skipped, failed, entries[0]["epoch"] if entries else 0)

    def export(
        self,
        path: Union[str, os.PathLike[str]],
        sbatch: bool = False,
        pbs: bool = False,
        queue: Optional[str] = None,
        walltime: Optional[str] = None,
        python: str = "python3",
    ) -> Exported:
        """Writes the session since the last restart as a plain mpi4py program (``mpx export``)
        that ``mpirun -n N python3 FILE.py`` runs without mpx: cells that succeeded in order
        (those for some engines under a guard on the rank), ``.npy`` files pushed or scattered
        copied beside it, pulls and gathers saved; what cannot be had again (an array from a
        client's memory, a failed cell, a Python call) is left out with a comment. ``sbatch``/
        ``pbs``: also a Slurm (FILE.sbatch) or PBS (FILE.pbs) job script with ``queue`` and
        ``walltime`` (HH:MM:SS) that runs it with the interpreter ``python``. Returns what it
        wrote (an :class:`~mpx.history.Exported`; ``print()`` says how to run it)."""
        script, data, jobs, entries, size = self._raw.export(
            os.fspath(path), sbatch, pbs, queue, walltime, python, CONTROL_TIMEOUT
        )
        return Exported(script, data, jobs, entries, size)

    def where(self) -> list[tuple[int, Optional[dict[str, Any]]]]:
        """What every engine is doing: ``[(id, state dict or None), ...]``."""
        return [(eid, state) for eid, state in json.loads(self._raw.where_json(CONTROL_TIMEOUT))]

    def info(self) -> dict[str, Any]:
        """The cluster's state (id, engines with pids and hosts) as a dict."""
        info: dict[str, Any] = json.loads(self._raw.info_json(CONTROL_TIMEOUT))
        return info

    def shutdown(self) -> None:
        """Stops the whole cluster (engines, mpirun, controller)."""
        self._raw.shutdown(CONTROL_TIMEOUT)

    def close(self) -> None:
        """Drops the connection (the cluster goes on)."""
        with self._wake:
            self._pending.clear()
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            task._fail(ConnectionError("the client was closed before the task ended"))
        self._raw = None  # type: ignore[assignment]  # closed: every call fails

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<mpx.Client cluster %r>" % (self.cluster_id,)

    # -- helpers for views -------------------------------------------------------------------
    def _ensure_helper(self) -> None:
        """Defines the apply helper on every engine, once per client."""
        with self._lock:
            if self._helper_ready:
                return
            # A cell of mpx's own: the session's history does not record it.
            ar = self._raw.execute_internal(None, _apply.define_cell(WIRE_DTYPES))
            errors = [r["error"] for r in ar.get(60.0) if r["error"]]
            ar.forget()
            if errors:
                raise RuntimeError("cannot set up mpx's apply helper on the engines: %s" % (errors[0],))
            self._helper_ready = True

    def _world_restarted(self) -> None:
        """The engines' MPI world restarted: the apply helper this client defined is gone."""
        with self._lock:
            self._helper_ready = False

    def _watch(self, ar: AsyncResult) -> None:
        """Finishes ``ar`` in the background when ready (for Future callbacks and waits)."""
        with self._wake:
            self._pending.append(weakref.ref(ar))
            self._start_watcher()

    def _watch_task(self, task: TaskResult) -> None:
        """Takes the result of load-balanced ``task`` in the background when it ends, and
        hands it to the task (the watcher is the only one to take results of TaskResults:
        a result is taken once)."""
        with self._wake:
            self._tasks.append(task)
            self._start_watcher()

    def _start_watcher(self) -> None:
        """Starts the results watcher if not yet running, else wakes it (with ``_wake`` held)."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=_watch_loop, args=(weakref.ref(self),), daemon=True)
            self._watcher.name = "mpx-results"
            self._watcher.start()
        self._wake.notify()


def _watch_loop(client_ref: weakref.ref[Client]) -> None:
    """The results watcher of a client (thread ``mpx-results``): finishes its AsyncResults
    that are ready and hands its load-balanced tasks their results, so that their Futures'
    callbacks and waits work without a call of the user; ends with the client."""
    while True:
        client = client_ref()
        if client is None:
            return
        with client._wake:
            if not client._pending and not client._tasks:
                client._wake.wait(1.0)
            pending = list(client._pending)
            tasks = list(client._tasks)
        keep: list[weakref.ref[AsyncResult]] = []
        for ref in pending:
            ar = ref()
            if ar is None or ar._outcome is not None:
                continue
            try:
                if ar.ready():
                    ar._finish()
                    continue
            except Exception:  # noqa: BLE001 - reported by get() on the caller's thread
                continue
            keep.append(ref)
        # Hold no AsyncResult through the pause: its values (pulled arrays, their memory) are
        # the caller's to free.
        ar = None
        # While tasks run, waiting for them is the loop's pause.
        per_task, least, most = TASK_SLICE
        ended = _take_ended(tasks, min(most, max(least, per_task * len(tasks)))) if tasks else set()
        with client._wake:
            client._pending = keep + [r for r in client._pending if r not in pending]
            if ended:
                client._tasks = [t for t in client._tasks if id(t) not in ended]
            wait = 0.01 if client._pending and not client._tasks else None
        del client, pending, keep, tasks
        if wait:
            threading.Event().wait(wait)


def _take_ended(tasks: list[TaskResult], timeout: float) -> set[int]:
    """Hands each of ``tasks`` that ended its result, waiting up to ``timeout`` seconds for
    the first; returns the ``id()`` of those that ended. A lost connection ends them all with
    its error."""
    ended: set[int] = set()
    left = list(tasks)
    while left:
        try:
            found = _mpx.wait_any([t._task for t in left], 0.0 if ended else timeout)
        except Exception as e:  # noqa: BLE001 - the connection is lost: every task fails with it
            for task in left:
                task._fail(e)
            return {id(t) for t in tasks}
        if found is None:
            break
        i, raw = found
        task = left.pop(i)
        task._deliver(raw)
        ended.add(id(task))
    return ended
