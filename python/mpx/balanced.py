""":class:`LoadBalancedView`: tasks that each run on one free engine (ipyparallel's
``LoadBalancedView``). The controller sends each task to the least loaded engine of the view's
targets, several queued per engine so that none waits for its next task.

A task must not call an MPI collective (``comm.allreduce``, ``Barrier``, ...): the other
engines are busy with other tasks and would never join it. Collectives belong to a direct view
(``rc[:]``) and ``%px``, which run a cell on every engine of a world.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

from . import _apply, _mpx
from .error import collect, world_restarted

if TYPE_CHECKING:
    from ._mpx import BalancedTask, ResultDict
    from .client import Client


def _finish(client: Client, r: ResultDict) -> Any:
    """The Python value of a task's result dict (its pickle and arrays came in the reply), or
    the task's error raised."""
    if world_restarted([r]):
        client._world_restarted()
    error = collect([r])
    if error is not None:
        raise error
    return _apply.unpack(r["returned"])


def _wait(future: concurrent.futures.Future[Any], timeout: Optional[float]) -> bool:
    """Waits up to ``timeout`` seconds (None: until done) for ``future``; True when done."""
    done, _ = concurrent.futures.wait([future], timeout)
    return bool(done)


class TaskResult(concurrent.futures.Future[Any]):
    """One load-balanced call in flight, a ``concurrent.futures.Future`` of its value.

    ``result(timeout)`` (or ``get``): its value, or its error raised (:class:`mpx.RemoteError`,
    :class:`mpx.EngineDied`); ``exception(timeout)``; ``done()`` (or ``ready()``);
    ``wait(timeout)``; ``add_done_callback(fn)`` (``fn(task_result)`` runs on the client's
    background thread when the task ends, or at once if it has); it works with
    ``concurrent.futures.wait`` and ``as_completed``. Once done: ``engine_id``, ``attempts``,
    ``metadata``. Waits end with ``TimeoutError`` (the task goes on: wait again).

    A task sent to the controller cannot be taken back: it is a running Future from the start
    (``running()``), so ``cancel()`` returns False as for any running Future
    (``rc.interrupt()`` interrupts what the engines run).
    """

    def __init__(self, client: Client, task: BalancedTask) -> None:
        super().__init__()
        self._client = client
        self._task = task
        self._raw: Optional[ResultDict] = None
        self.submitted: float = task.submitted
        self.set_running_or_notify_cancel()
        # Only the client's watcher takes the task's result (a result is taken once), and
        # hands it to _deliver.
        client._watch_task(self)

    def _deliver(self, raw: ResultDict) -> None:
        """The task ended with result dict ``raw``: its value (or error) becomes this Future's."""
        self._raw = raw
        try:
            value = _finish(self._client, raw)
        except Exception as e:  # noqa: BLE001 - the task's error, raised by result()
            self._fail(e)
            return
        try:
            self.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass  # failed meanwhile: the client was closed

    def _fail(self, error: BaseException) -> None:
        """The task's Future ends with ``error`` (unless it ended already)."""
        try:
            self.set_exception(error)
        except concurrent.futures.InvalidStateError:
            pass

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits up to ``timeout`` seconds (None: until done); True when done."""
        return _wait(self, timeout)

    def ready(self) -> bool:
        """Whether the task has ended."""
        return self.done()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The call's value (waiting up to ``timeout`` seconds), or its error raised
        (:class:`mpx.RemoteError`, :class:`mpx.EngineDied`)."""
        if not self.wait(timeout):
            raise TimeoutError("the task did not end within %s s (still running: wait again)" % timeout)
        return super().result(0)

    get = result

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The task's error (None if it succeeded), waiting up to ``timeout`` seconds."""
        if not self.wait(timeout):
            raise TimeoutError("the task did not end within %s s (still running: wait again)" % timeout)
        return super().exception(0)

    @property
    def engine_id(self) -> Optional[int]:
        """The engine that ran it (None until done, or if it never ran)."""
        return None if self._raw is None else self._raw["engine_id"]

    @property
    def attempts(self) -> Optional[int]:
        """How many times it was started (above 1: retried after its engine died)."""
        return None if self._raw is None else self._raw["attempts"]

    @property
    def metadata(self) -> Optional[dict[str, Any]]:
        """engine_id, attempts, submitted, started, completed, received (once done)."""
        if self._raw is None:
            return None
        keys = ("engine_id", "attempts", "started", "completed", "received")
        return dict({k: self._raw[k] for k in keys}, submitted=self.submitted)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else "failed" if self.exception(0) else "finished"
        return "<mpx.TaskResult: %s>" % state


class LoadBalancedView:
    """Load-balanced tasks on engines ``targets`` (None: all) of ``client``.

    ``retries`` (default 0): how many times a task whose engine dies runs again on another
    engine; with none left it fails with :class:`mpx.EngineDied`. ``block`` (default False)
    decides whether ``apply`` and ``map`` wait.
    """

    def __init__(self, client: Client, targets: Optional[Iterable[int]] = None, retries: int = 0) -> None:
        self.client = client
        self.targets: Optional[list[int]] = None if targets is None else list(targets)
        self.retries = retries
        self.block = False

    def __repr__(self) -> str:
        return "<mpx.LoadBalancedView %s>" % ("all" if self.targets is None else self.targets)

    def _submit(
        self, op: str, f: Callable[..., Any], arg_lists: Iterable[Sequence[Any]], kwargs: dict[str, Any]
    ) -> list[BalancedTask]:
        """One task per entry of ``arg_lists``: ``(op, f, args, kwargs)`` through the apply
        helper (see :mod:`mpx._apply`)."""
        self.client._ensure_helper()
        calls: list[tuple[str, list[Any]]] = []
        for args in arg_lists:
            payload, arrays = _apply.pack(op, f, args, kwargs)
            calls.append((_apply.HELPER, [payload, *arrays]))
        return self.client._raw.balanced_apply(self.targets, self.retries, calls)

    # -- one call ------------------------------------------------------------------------------
    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls ``f(*args, **kwargs)`` on one engine (blocking as ``self.block`` says)."""
        return self._apply(f, args, kwargs, self.block)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls ``f(*args, **kwargs)`` on one engine and returns its value."""
        return self._apply(f, args, kwargs, True)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskResult:
        """Calls ``f(*args, **kwargs)`` on one engine; returns a :class:`TaskResult`."""
        result: TaskResult = self._apply(f, args, kwargs, False)
        return result

    def _apply(self, f: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], block: bool) -> Any:
        [task] = self._submit("call", f, [args], kwargs)
        if block:
            # Taken here rather than by the client's watcher: one thread hop less per call.
            return _finish(self.client, task.get(None))
        return TaskResult(self.client, task)

    # -- many ----------------------------------------------------------------------------------
    def imap(
        self,
        f: Callable[..., Any],
        *seqs: Iterable[Any],
        chunksize: int = 1,
        ordered: bool = True,
        max_outstanding: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[Any]:
        """Yields ``f(*items)`` for the items of ``seqs`` (zipped): in order, or as they
        complete (``ordered=False``). Each task runs ``chunksize`` items; at most
        ``max_outstanding`` tasks are sent and not yet yielded (None: all at once). A task's
        error is raised when its turn comes."""
        items = list(zip(*seqs))
        chunks = [items[i : i + chunksize] for i in range(0, len(items), max(1, chunksize))]
        bound = len(chunks) if max_outstanding is None else max(1, max_outstanding)
        pending: list[tuple[int, BalancedTask]] = []  # [(chunk index, task)]
        done: dict[int, ResultDict] = {}  # {chunk index: result dict}
        next_chunk, next_yield = 0, 0
        while next_yield < len(chunks):
            room = bound - len(pending) - len(done)
            if room > 0 and next_chunk < len(chunks):
                batch = chunks[next_chunk : next_chunk + room]
                # One task per chunk: the helper's "map" op runs list(map(f, *columns)).
                sent = self._submit("map", f, [tuple(zip(*c)) for c in batch], {})
                for k, task in enumerate(sent):
                    pending.append((next_chunk + k, task))
                next_chunk += len(batch)
            if not pending:
                raise RuntimeError("mpx map: no task in flight for item chunk %d" % next_yield)
            found = _mpx.wait_any([t for _, t in pending], timeout)
            if found is None:
                raise TimeoutError("no task ended within %s s" % timeout)
            i, raw = found
            index, _ = pending.pop(i)
            if not ordered:
                next_yield += 1
                yield from _finish(self.client, raw)
                continue
            done[index] = raw
            while next_yield in done:
                yield from _finish(self.client, done.pop(next_yield))
                next_yield += 1

    def map(
        self,
        f: Callable[..., Any],
        *seqs: Iterable[Any],
        chunksize: int = 1,
        ordered: bool = True,
        block: Optional[bool] = None,
    ) -> Any:
        """``list(map(f, *seqs))``, each task on one free engine (``chunksize`` items per task);
        ``ordered=False`` lists results as they completed. Blocks as ``self.block`` says
        (returning a :class:`MapResult` when not)."""
        block = self.block if block is None else block
        it = self.imap(f, *seqs, chunksize=chunksize, ordered=ordered)
        return list(it) if block else MapResult(it)

    def map_sync(
        self, f: Callable[..., Any], *seqs: Iterable[Any], chunksize: int = 1, ordered: bool = True
    ) -> list[Any]:
        """``map`` and wait: the list of results."""
        values: list[Any] = self.map(f, *seqs, chunksize=chunksize, ordered=ordered, block=True)
        return values

    def map_async(
        self, f: Callable[..., Any], *seqs: Iterable[Any], chunksize: int = 1, ordered: bool = True
    ) -> MapResult:
        """``map`` without waiting: a :class:`MapResult`."""
        result: MapResult = self.map(f, *seqs, chunksize=chunksize, ordered=ordered, block=False)
        return result


class MapResult(concurrent.futures.Future[list[Any]]):
    """A map in flight, a ``concurrent.futures.Future`` of the list of its results (its tasks
    are sent and collected by a background thread).

    Iterate for the results in the map's order as they come, or ``result(timeout)`` (or
    ``get``) the whole list; a task's error is raised there (``exception(timeout)`` gives it).
    ``done()`` (or ``ready()``), ``wait(timeout)``, ``add_done_callback(fn)`` (``fn(map_result)``
    runs on the map's thread when the last task ended, or at once if it has), and
    ``concurrent.futures.wait``/``as_completed`` work as for any Future. Waits end with
    ``TimeoutError`` (the map goes on: wait again). As a :class:`TaskResult`, it runs from the
    start: ``cancel()`` returns False.
    """

    def __init__(self, it: Iterator[Any]) -> None:
        super().__init__()
        self._got: list[Any] = []
        self._error: Optional[BaseException] = None
        self._ended = False
        self._cond = threading.Condition()
        self.submitted = time.time()
        self.set_running_or_notify_cancel()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True, name="mpx-map")
        self._thread.start()

    def _run(self, it: Iterator[Any]) -> None:
        try:
            for x in it:
                with self._cond:
                    self._got.append(x)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - raised by result()/iteration on the caller's thread
            self._error = e
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        # After the iteration's end is known: a done callback may iterate this map.
        if self._error is None:
            self.set_result(list(self._got))
        else:
            self.set_exception(self._error)

    def __iter__(self) -> Iterator[Any]:
        i = 0
        while True:
            with self._cond:
                while i >= len(self._got) and not self._ended:
                    self._cond.wait(0.1)
                if i < len(self._got):
                    x = self._got[i]
                elif self._error is not None:
                    raise self._error
                else:
                    return
            i += 1
            yield x

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits up to ``timeout`` seconds (None: until done); True when every task ended."""
        return _wait(self, timeout)

    def ready(self) -> bool:
        """Whether every task has ended."""
        return self.done()

    def result(self, timeout: Optional[float] = None) -> list[Any]:
        """Every result, in the map's order, waiting up to ``timeout`` seconds (None: until
        done); a task's error raised."""
        if not self.wait(timeout):
            raise TimeoutError("the map did not end within %s s (still running: wait again)" % timeout)
        return super().result(0)

    get = result

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The error that ended the map (a task's, at its turn in the map's order; None if
        none failed), waiting up to ``timeout`` seconds."""
        if not self.wait(timeout):
            raise TimeoutError("the map did not end within %s s (still running: wait again)" % timeout)
        return super().exception(0)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else "failed" if self.exception(0) else "finished"
        return "<mpx.MapResult: %s>" % state
