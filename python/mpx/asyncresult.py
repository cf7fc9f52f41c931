""":class:`AsyncResult`: one request's per-engine results, as ipyparallel's (and a
``concurrent.futures.Future``), with each engine's result as soon as that engine is done."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

from . import _display
from ._output import Streamed
from ._progress import ProgressLine
from .error import RemoteError, collect, helper_missing, world_restarted

if TYPE_CHECKING:
    from ._mpx import AsyncResult as RawResult
    from ._mpx import ResultDict
    from .client import Client

#: The values of several engines, each given its result dicts (one per raw request that ran on
#: it, none with an error), in the same order.
Values = Callable[[Sequence[list["ResultDict"]]], list[Any]]
#: The request's value from its engines' values in engine order (default: that list).
Join = Callable[[list[Any]], list[Any]]


class ExecuteReply:
    """What ``execute`` returns per engine: ``execution_count``, ``stdout``, ``stderr`` and the
    cell's value as text (``execute_result``, or None)."""

    def __init__(self, r: ResultDict) -> None:
        self.engine_id: int = r["engine_id"]
        self.execution_count: int = r["execution_count"]
        self.stdout: str = r["stdout"]
        self.stderr: str = r["stderr"]
        self.execute_result: Optional[str] = r["value"]

    def __repr__(self) -> str:
        value = "" if self.execute_result is None else ": " + self.execute_result
        return "<ExecuteReply[%d]%s>" % (self.execution_count, value)


class AsyncResult(concurrent.futures.Future[Any]):
    """The results of one request on a view's engines.

    The whole request: ``wait(timeout)``, ``ready()``, ``get(timeout)`` / ``result(timeout)``
    (a list in engine order, or one value for a view of one engine, ``rc[i]``),
    ``get_dict(timeout)``, ``wait_interactive()`` (progress, and what the controller says of
    ranks stuck in MPI calls), ``stdout``, ``stderr``, ``metadata`` (per engine: submitted,
    started, completed, received, execution_count), ``display_outputs()``.

    Engine by engine, while others still run: ``ready_engines()``, ``results_so_far()`` (each
    finished engine's value, or its exception), ``progress`` (engines done), ``len(ar)``
    (engines), iteration (each engine's value in engine order as soon as it is done),
    ``stuck`` (the controller's messages about ranks stuck in MPI calls), ``interrupt()``.

    As a ``concurrent.futures.Future`` it runs from the start (the request is sent):
    ``cancel()`` returns False; ``interrupt()`` stops it. ``add_done_callback(fn)`` runs
    ``fn(ar)`` on the client's background thread once every engine answered.

    A ``KeyboardInterrupt`` during a blocking wait interrupts the engines, then propagates.
    Errors raise :class:`mpx.RemoteError` (one engine), :class:`mpx.CompositeError` (several)
    or :class:`mpx.EngineDied`. When an interrupt freed ranks from an MPI collective, the MPI
    world restarts (same engine ids, variables lost) and the engines' errors are ``WorldDown``.
    """

    def __init__(
        self,
        client: Client,
        raws: Sequence[RawResult],
        targets: Optional[list[int]],
        values: Values,
        single: bool = False,
        join: Optional[Join] = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._raws = list(raws)
        self._targets = targets
        self._values_of = values
        self._join = join
        self._single = single
        self._lock = threading.Lock()
        # Each engine's value once computed, or its exception: (ok, value).
        self._values: dict[int, tuple[bool, Any]] = {}
        self._values_lock = threading.RLock()
        # Each raw request's engines, once the controller accepted it.
        self._raw_engines: list[Optional[list[int]]] = [None] * len(self._raws)
        self._outcome: Optional[tuple[str, Any]] = None
        self._results: Optional[list[ResultDict]] = None
        self._stuck: Optional[list[dict[str, Any]]] = None
        self._all_ids: Optional[list[int]] = None
        # The output as it arrives, once _stream_output() asked for it.
        self._output = Streamed()
        # Whether a Ctrl-C in a wait (or interrupt()) interrupted the engines.
        self._interrupted = False
        self.submitted: float = min((r.submitted for r in self._raws), default=time.time())
        # Sent already: a running Future, which cancel() leaves alone (interrupt() stops it).
        self.set_running_or_notify_cancel()
        client._watch(self)

    # -- waiting -----------------------------------------------------------------------------
    def _raw_wait(self, timeout: Optional[float]) -> bool:
        # In slices: the background watcher may finish (and forget) the request meanwhile.
        deadline = None if timeout is None else time.monotonic() + timeout
        for raw in self._raws:
            while True:
                if self._outcome is not None:
                    return True
                left = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
                if raw.wait(left):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return self._outcome is not None
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits up to ``timeout`` seconds (None: until done); True when done."""
        if self._outcome is not None:
            return True
        try:
            done = self._raw_wait(timeout)
        except KeyboardInterrupt:
            self._interrupted = True
            self._client.interrupt(self._targets)
            raise
        if done:
            self._finish()
        return done

    def ready(self) -> bool:
        """Whether every engine has answered."""
        return self._outcome is not None or all(r.ready() for r in self._raws)

    def done(self) -> bool:
        return self.ready()

    def successful(self) -> bool:
        """Whether it finished without an error (False while running)."""
        return self.ready() and self.wait(0) and self._outcome is not None and self._outcome[0] == "ok"

    def _finish(self) -> None:
        with self._lock:
            if self._outcome is not None:
                return
            if not all(raw.ready() for raw in self._raws):
                return
            # The output streamed in goes back in front of each result's own (it must be taken
            # before the raw requests are forgotten).
            self._output.close()
            per_raw = [self._output.merge(raw.get(0)) for raw in self._raws]
            results = [d for raw_results in per_raw for d in raw_results]
            self._stuck = [s for raw in self._raws for s in raw.stuck()]
            self._raw_engines = [[d["engine_id"] for d in raw_results] for raw_results in per_raw]
            self._results = results
            if world_restarted(results):
                self._client._world_restarted()
            error = collect(results)
            if error is None:
                try:
                    values = self._engine_values(_by_engine(results))
                    self._outcome = ("ok", self._join(values) if self._join else values)
                except BaseException as e:  # noqa: BLE001 - handed to the caller of get()
                    self._outcome = ("error", e)
            else:
                if helper_missing(error):
                    self._client._world_restarted()
                    _explain_helper(error)
                self._outcome = ("error", error)
            for raw in self._raws:
                raw.forget()
        outcome: tuple[str, Any] = self._outcome
        kind, value = outcome
        try:
            if kind == "ok":
                self.set_result(value[0] if self._single else value)
            else:
                self.set_exception(value)
        except concurrent.futures.InvalidStateError:
            pass

    def get(self, timeout: Optional[float] = None) -> Any:
        """The per-engine results (one value for a single-engine view); raises the engines'
        errors, or ``TimeoutError`` when not done in ``timeout`` (the request goes on: wait
        or get again)."""
        if not self.wait(timeout):
            raise TimeoutError("mpx result not ready after %s s (still running: wait again)" % timeout)
        assert self._outcome is not None
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value[0] if self._single else value

    def result(self, timeout: Optional[float] = None) -> Any:
        return self.get(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.wait(timeout):
            raise TimeoutError("mpx result not ready after %s s" % timeout)
        assert self._outcome is not None
        kind, value = self._outcome
        return value if kind == "error" else None

    def get_dict(self, timeout: Optional[float] = None) -> dict[int, Any]:
        """Each engine's own value by engine id, once all are done (raises as ``get``)."""
        self.get(timeout)
        results = self.results
        return {eid: value for eid, (_, value) in zip(_by_engine(results), self._engine_items(results))}

    def wait_interactive(
        self, interval: float = 0.1, timeout: Optional[float] = None, widget: Optional[bool] = None
    ) -> bool:
        """Waits like ``wait(timeout)`` (None or a negative timeout: until done) while showing
        progress every ``interval`` seconds (``2/4 engines done after 3 s``) and each message
        of the controller about ranks stuck in MPI calls, once, as it arrives.

        In a Jupyter kernel the progress is one display updated in place (an ipywidgets bar
        when ipywidgets is installed); elsewhere a line rewritten with ``\\r``. ``widget``
        forces one (True: the display, False: the line).
        Returns whether the request is done."""
        if timeout is not None and timeout < 0:
            timeout = None
        deadline = None if timeout is None else time.monotonic() + timeout
        told: set[str] = set()
        line = ProgressLine(widget)
        try:
            while True:
                step = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
                done = self.wait(step)
                for message in self.stuck:
                    if message not in told:
                        told.add(message)
                        line.note("mpx: " + message)
                # No engines yet: a request sent while the MPI world restarts waits for it.
                done_engines, total = self.progress, len(self)
                text = "%d/%s engines done after %d s" % (done_engines, total or "?", self.elapsed)
                line.update(text, done_engines, total)
                if done or (deadline is not None and time.monotonic() >= deadline):
                    return done
        finally:
            line.close()

    # -- engine by engine --------------------------------------------------------------------
    def _engines_of(self, i: int) -> Optional[list[int]]:
        """The engines of raw request ``i`` (None: not accepted yet, or forgotten)."""
        known = self._raw_engines[i]
        if known is None and self._results is None:
            try:
                known = self._raws[i].engines(0.0)
            except TimeoutError:
                return None
            except Exception:  # noqa: BLE001 - a refusal: get() raises it
                known = []
            self._raw_engines[i] = known
        return known

    def _engines(self, wait: Optional[float] = 0.0) -> list[int]:
        """Every engine of the request, in order. Until the controller accepted it (a request
        sent while the MPI world restarts waits for the new world), waits up to ``wait``
        seconds (None: until accepted or done), then counts the view's targets."""
        deadline = None if wait is None else time.monotonic() + wait
        out: list[int] = []
        for i, raw in enumerate(self._raws):
            engines = self._engines_of(i)
            while engines is None and self._results is None:
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    break
                try:
                    engines = self._raw_engines[i] = raw.engines(left)
                except TimeoutError:
                    pass
                except Exception:  # noqa: BLE001 - a refusal: get() raises it
                    engines = self._raw_engines[i] = []
            if self._results is not None:
                return list(_by_engine(self._results))
            if engines is None:
                engines = self._target_ids()
            out += [e for e in engines if e not in out]
        return out

    def _target_ids(self) -> list[int]:
        """The view's engines (all: the client's, asked once)."""
        if self._targets is not None:
            return list(self._targets)
        if not self._all_ids:
            self._all_ids = self._client.ids  # none while the MPI world restarts: ask again
        return self._all_ids

    def ready_engines(self) -> list[int]:
        """The engines that are done with this request (answered every part of it that ran on
        them), in engine order; the others still run."""
        if self._results is not None:
            return sorted(_by_engine(self._results))
        partial = [raw.partial() for raw in self._raws]
        if self._results is not None:
            return sorted(_by_engine(self._results))
        expected: dict[int, int] = {}
        for i in range(len(self._raws)):
            engines = self._engines_of(i)
            if engines is None:
                return []  # not accepted yet: nothing can be done
            for e in engines:
                expected[e] = expected.get(e, 0) + 1
        got: dict[int, int] = {}
        for results in partial:
            for r in results:
                got[r["engine_id"]] = got.get(r["engine_id"], 0) + 1
        return sorted(e for e, n in got.items() if n >= expected.get(e, 1))

    def results_so_far(self) -> dict[int, Any]:
        """The value of each engine done so far, by engine id (in engine order), or the
        exception of an engine that failed (:class:`mpx.RemoteError`, :class:`mpx.EngineDied`);
        the engines still running are missing. As ``get()``, per engine: an
        ``ExecuteReply`` for ``execute``, the function's value for ``apply``, ..."""
        done = set(self.ready_engines())
        results = [r for r in self.results if r["engine_id"] in done]
        by_engine = _by_engine(results)
        return {eid: value for eid, (_, value) in zip(by_engine, self._engine_items(results))}

    def _engine_items(self, results: list[ResultDict]) -> list[tuple[bool, Any]]:
        """(ok, value or exception) of each engine in ``results`` (all done), in the order of
        :func:`_by_engine`; computed once per engine (apply pulls the arrays of a result)."""
        by_engine = _by_engine(results)
        with self._values_lock:
            fresh = {eid: rs for eid, rs in by_engine.items() if eid not in self._values}
            good: dict[int, list[ResultDict]] = {}
            for eid, rs in fresh.items():
                error = collect(rs)
                if error is None:
                    good[eid] = rs
                else:
                    self._values[eid] = (False, error)
            if good:
                try:
                    values = self._values_of(list(good.values()))
                    for eid, value in zip(good, values):
                        self._values[eid] = (True, value)
                except Exception as e:  # noqa: BLE001 - this engine's value is the error
                    for eid in good:
                        self._values[eid] = (False, e)
            return [self._values[eid] for eid in by_engine]

    def _engine_values(self, by_engine: dict[int, list[ResultDict]]) -> list[Any]:
        """The values of all engines (none failed), in order; raises a value's error."""
        results = [r for rs in by_engine.values() for r in rs]
        out = []
        for ok, value in self._engine_items(results):
            if not ok:
                raise value
            out.append(value)
        return out

    def __len__(self) -> int:
        """The number of engines the request runs on (its targets until the controller
        accepted it)."""
        return len(self._engines())

    def __iter__(self) -> Iterator[Any]:
        """Each engine's value in engine order, as soon as that engine is done (an engine's
        error is raised when its turn comes)."""
        if self._single:
            raise TypeError("the AsyncResult of a single engine (or a map) is not iterable")
        engines = self._engines(wait=None)
        if not engines:
            self.get()  # refused: raises why
        for eid in engines:
            while eid not in self.ready_engines() and not self.wait(0.05):
                pass
            ok, value = self._item(eid)
            if not ok:
                raise value
            yield value

    def _item(self, engine_id: int) -> tuple[bool, Any]:
        """``(True, value)`` or ``(False, exception)`` of one engine that is done."""
        results = [r for r in self.results if r["engine_id"] == engine_id]
        if not results:
            raise KeyError("engine %d has no result yet" % engine_id)
        return self._engine_items(results)[0]

    def interrupt(self) -> list[int]:
        """Interrupts this request on its engines that are not done (as Ctrl-C does): cells
        fail with ``KeyboardInterrupt``, a rank in an MPI receive or probe gets an
        ``MPI.Exception``, and a rank inside a collective makes the MPI world restart (its
        engines' results are then ``WorldDown`` errors). Returns the engines told (none once
        done). Those engines' current cell is interrupted, whichever request it belongs to."""
        if self.ready():
            return []
        done = set(self.ready_engines())
        pending = [e for e in self._engines() if e not in done]
        self._interrupted = True
        return self._client.interrupt(pending) if pending else []

    @property
    def stuck(self) -> list[str]:
        """What the controller said so far about ranks of this request stuck in MPI calls,
        oldest first, e.g. ``ranks 1-3 are blocked in Barrier on COMM_WORLD (<cell-1> line 4)
        waiting for rank 0, which left the cell with ZeroDivisionError; Ctrl-C to free them``."""
        return [s["message"] for s in self.stuck_details]

    @property
    def stuck_details(self) -> list[dict[str, Any]]:
        """The messages of :attr:`stuck` as dicts: message, set (the engine set), blocked
        (engine_id, rank, call, comm, detail of each rank blocked) and left (engine_id, rank,
        error: the class of the error it left the cell with, or None if it finished)."""
        if self._stuck is not None:
            return self._stuck
        stuck = [s for raw in self._raws for s in raw.stuck()]
        return self._stuck if self._stuck is not None else stuck

    # -- output as it arrives ----------------------------------------------------------------
    def _stream_output(self) -> None:
        """Takes the engines' output as it arrives from now on (what came before included), for
        :meth:`_read_output` and :meth:`_output_so_far` (``%px`` in Jupyter shows it while the
        engines run); the results hold it all the same."""
        with self._lock:
            if self._outcome is None:
                self._output.open(self._raws)

    def _read_output(self, timeout: float) -> bool:
        """Keeps the output that arrives during ``timeout`` seconds, or until every engine
        answered (at once when not streaming); True if any came. A ``KeyboardInterrupt``
        interrupts the engines (as in :meth:`wait`), then propagates."""
        try:
            return self._output.read(timeout, self._raw_wait)
        except KeyboardInterrupt:
            self._interrupted = True
            self._client.interrupt(self._targets)
            raise

    def _output_so_far(self) -> dict[tuple[int, str], str]:
        """Each engine's output so far, by ``(engine id, "stdout" or "stderr")``: all of it for
        the engines done, what arrived for the others (when streaming)."""
        return self._output.texts(self.results)

    # -- per-engine details ------------------------------------------------------------------
    @property
    def results(self) -> list[ResultDict]:
        """The raw per-engine result dicts (those received so far while running)."""
        if self._results is not None:
            return self._results
        partial = self._output.merge([d for raw in self._raws for d in raw.partial()])
        # The watcher may have finished (and forgotten) the request meanwhile.
        return self._results if self._results is not None else partial

    def _per_engine(self, key: str) -> Any:
        values = [r[key] for r in self.results]
        return values[0] if self._single and values else values

    @property
    def stdout(self) -> Any:
        """What each engine printed."""
        return self._per_engine("stdout")

    @property
    def stderr(self) -> Any:
        """What each engine wrote to stderr."""
        return self._per_engine("stderr")

    @property
    def engine_id(self) -> Any:
        """The engines that answered, in order (one id for a single-engine view)."""
        return self._per_engine("engine_id")

    @property
    def metadata(self) -> Any:
        """Per engine: engine_id, submitted, started, completed, received, execution_count."""
        keys = ("engine_id", "started", "completed", "received", "execution_count")
        out = [dict({k: r[k] for k in keys}, submitted=self.submitted) for r in self.results]
        return out[0] if self._single and out else out

    @property
    def wall_time(self) -> float:
        """Seconds from submission to the last result received."""
        received: float = max((r["received"] for r in self.results), default=self.submitted)
        return received - self.submitted

    @property
    def serial_time(self) -> float:
        """Sum of the engines' compute times."""
        return float(sum(r["completed"] - r["started"] for r in self.results))

    @property
    def elapsed(self) -> float:
        """Seconds since submission (until done)."""
        return self.wall_time if self.ready() else time.time() - self.submitted

    @property
    def progress(self) -> int:
        """How many engines are done."""
        return len(self.ready_engines())

    def display_outputs(self, group: bool = False) -> None:
        """Prints the engines' output as ``%px`` does (``group``: identical output once)."""
        for line in _display.render(self.results, group=group):
            print(line)

    def __repr__(self) -> str:
        state = "finished" if self.ready() else "pending"
        return "<mpx.AsyncResult: %s>" % state


def _by_engine(results: list[ResultDict]) -> dict[int, list[ResultDict]]:
    """Result dicts grouped by engine, in the order engines first appear."""
    out: dict[int, list[ResultDict]] = {}
    for r in results:
        out.setdefault(r["engine_id"], []).append(r)
    return out


def _explain_helper(error: BaseException) -> None:
    """Says why the apply helper is missing (the world restarted behind this client's back)."""
    errors = getattr(error, "errors", [error])
    for e in errors:
        if isinstance(e, RemoteError):
            e.evalue += (
                " (the engines' MPI world was restarted since this client set up its apply "
                "helper there; it is set up again by the next call)"
            )
