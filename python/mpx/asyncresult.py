""":class:`AsyncResult`: one request's per-engine results, as ipyparallel's (and a
``concurrent.futures.Future``)."""
import concurrent.futures
import threading
import time

from . import _display
from .error import collect


class ExecuteReply:
    """What ``execute`` returns per engine: ``execution_count``, ``stdout``, ``stderr`` and the
    cell's value as text (``execute_result``, or None)."""

    def __init__(self, r):
        self.engine_id = r["engine_id"]
        self.execution_count = r["execution_count"]
        self.stdout = r["stdout"]
        self.stderr = r["stderr"]
        self.execute_result = r["value"]

    def __repr__(self):
        value = "" if self.execute_result is None else ": " + self.execute_result
        return "<ExecuteReply[%d]%s>" % (self.execution_count, value)


class AsyncResult(concurrent.futures.Future):
    """The results of one request on a view's engines.

    ``wait(timeout)``, ``ready()``, ``get(timeout)`` / ``result(timeout)`` (a list in engine
    order, or one value for a view of one engine, ``rc[i]``), ``stdout``, ``stderr``,
    ``metadata`` (per engine: submitted, started, completed, received, execution_count),
    ``display_outputs()``. A ``KeyboardInterrupt`` during a blocking wait interrupts the
    engines, then propagates. Errors raise :class:`mpx.RemoteError` (one engine),
    :class:`mpx.CompositeError` (several) or :class:`mpx.EngineDied`.
    """

    def __init__(self, client, raws, targets, finish, single=False):
        super().__init__()
        self._client = client
        self._raws = list(raws)
        self._targets = targets
        self._finisher = finish
        self._single = single
        self._lock = threading.Lock()
        self._outcome = None
        self._results = None
        self.submitted = min((r.submitted for r in self._raws), default=time.time())
        client._watch(self)

    # -- waiting -----------------------------------------------------------------------------
    def _raw_wait(self, timeout):
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

    def wait(self, timeout=None):
        """Waits up to ``timeout`` seconds (None: until done); True when done."""
        if self._outcome is not None:
            return True
        try:
            done = self._raw_wait(timeout)
        except KeyboardInterrupt:
            self._client.interrupt(self._targets)
            raise
        if done:
            self._finish()
        return done

    def ready(self):
        """Whether every engine has answered."""
        return self._outcome is not None or all(r.ready() for r in self._raws)

    def done(self):
        return self.ready()

    def successful(self):
        """Whether it finished without an error (False while running)."""
        return self.ready() and self.wait(0) and self._outcome[0] == "ok"

    def _finish(self):
        with self._lock:
            if self._outcome is not None:
                return
            if not all(raw.ready() for raw in self._raws):
                return
            results = [d for raw in self._raws for d in raw.get(0)]
            error = collect(results)
            if error is None:
                try:
                    self._outcome = ("ok", self._finisher(results))
                except BaseException as e:  # noqa: BLE001 - handed to the caller of get()
                    self._outcome = ("error", e)
            else:
                self._outcome = ("error", error)
            self._results = results
            for raw in self._raws:
                raw.forget()
        if self._outcome is None:
            return
        kind, value = self._outcome
        try:
            if kind == "ok":
                self.set_result(value[0] if self._single else value)
            else:
                self.set_exception(value)
        except concurrent.futures.InvalidStateError:
            pass

    def get(self, timeout=None):
        """The per-engine results (one value for a single-engine view); raises the engines'
        errors, or ``TimeoutError`` when not done in ``timeout`` (the request goes on: wait
        or get again)."""
        if not self.wait(timeout):
            raise TimeoutError("mpx result not ready after %s s (still running: wait again)" % timeout)
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value[0] if self._single else value

    def result(self, timeout=None):
        return self.get(timeout)

    def exception(self, timeout=None):
        if not self.wait(timeout):
            raise TimeoutError("mpx result not ready after %s s" % timeout)
        kind, value = self._outcome
        return value if kind == "error" else None

    # -- per-engine details ------------------------------------------------------------------
    @property
    def results(self):
        """The raw per-engine result dicts (those received so far while running)."""
        if self._results is not None:
            return self._results
        return [d for raw in self._raws for d in raw.partial()]

    def _per_engine(self, key):
        values = [r[key] for r in self.results]
        return values[0] if self._single and values else values

    @property
    def stdout(self):
        """What each engine printed."""
        return self._per_engine("stdout")

    @property
    def stderr(self):
        """What each engine wrote to stderr."""
        return self._per_engine("stderr")

    @property
    def engine_id(self):
        """The engines that answered, in order (one id for a single-engine view)."""
        return self._per_engine("engine_id")

    @property
    def metadata(self):
        """Per engine: engine_id, submitted, started, completed, received, execution_count."""
        keys = ("engine_id", "started", "completed", "received", "execution_count")
        out = [dict({k: r[k] for k in keys}, submitted=self.submitted) for r in self.results]
        return out[0] if self._single and out else out

    @property
    def wall_time(self):
        """Seconds from submission to the last result received."""
        return max((r["received"] for r in self.results), default=self.submitted) - self.submitted

    @property
    def serial_time(self):
        """Sum of the engines' compute times."""
        return sum(r["completed"] - r["started"] for r in self.results)

    @property
    def elapsed(self):
        """Seconds since submission (until done)."""
        return self.wall_time if self.ready() else time.time() - self.submitted

    @property
    def progress(self):
        """How many engines have answered."""
        return len(self.results)

    def display_outputs(self, group=False):
        """Prints the engines' output as ``%px`` does (``group``: identical output once)."""
        for line in _display.render(self.results, group=group):
            print(line)

    def __repr__(self):
        state = "finished" if self.ready() else "pending"
        return "<mpx.AsyncResult: %s>" % state
