""":class:`LoadBalancedView`: tasks that each run on one free engine (ipyparallel's
``LoadBalancedView``). The controller sends each task to the least loaded engine of the view's
targets, several queued per engine so that none waits for its next task.

A task must not call an MPI collective (``comm.allreduce``, ``Barrier``, ...): the other
engines are busy with other tasks and would never join it. Collectives belong to a direct view
(``rc[:]``) and ``%px``, which run a cell on every engine of a world.
"""
import threading
import time

from . import _apply, _mpx
from ._arrays import from_buffer
from .error import collect, world_restarted


def _finish(client, r):
    """The Python value of a task's result dict (its arrays pulled from its engine), or the
    task's error raised."""
    if world_restarted([r]):
        client._world_restarted()
    error = collect([r])
    if error is not None:
        raise error
    value = r["value"][1:-1]
    eid = r["engine_id"]
    token = r["_token"]
    names = ["__mpx_r_%s_%d" % (token, i) for i in range(_apply.array_count(value))]
    arrays = []
    for name in names:
        raw = client._raw.pull_internal([eid], name)
        got = raw.get(None)
        raw.forget()
        error = collect(got)
        if error is not None:
            raise error
        arrays.append(from_buffer(got[0]["array"]))
    if names:
        client._dropped(eid, names)
    return _apply.unpack(value, arrays)


class TaskResult:
    """One load-balanced call in flight: ``get(timeout)`` (its value, or its error raised),
    ``wait(timeout)``, ``ready()``, and once done ``engine_id``, ``attempts`` and ``metadata``."""

    def __init__(self, client, task, token):
        self._client = client
        self._task = task
        self._token = token
        self._raw = None
        self.submitted = task.submitted

    def wait(self, timeout=None):
        """Waits up to ``timeout`` seconds (None: until done); True when done."""
        if self._raw is None:
            try:
                self._raw = self._task.get(timeout)
            except TimeoutError:
                return False
            self._raw["_token"] = self._token
        return True

    def ready(self):
        """Whether the task has ended."""
        return self.wait(0)

    def get(self, timeout=None):
        """The call's value (waiting up to ``timeout`` seconds), or its error raised
        (:class:`mpx.RemoteError`, :class:`mpx.EngineDied`)."""
        if not self.wait(timeout):
            raise TimeoutError("the task did not end within %s s" % timeout)
        return _finish(self._client, self._raw)

    result = get

    @property
    def engine_id(self):
        """The engine that ran it (None until done, or if it never ran)."""
        return None if self._raw is None else self._raw["engine_id"]

    @property
    def attempts(self):
        """How many times it was started (above 1: retried after its engine died)."""
        return None if self._raw is None else self._raw["attempts"]

    @property
    def metadata(self):
        """engine_id, attempts, submitted, started, completed, received (once done)."""
        if self._raw is None:
            return None
        keys = ("engine_id", "attempts", "started", "completed", "received")
        return dict({k: self._raw[k] for k in keys}, submitted=self.submitted)


class LoadBalancedView:
    """Load-balanced tasks on engines ``targets`` (None: all) of ``client``.

    ``retries`` (default 0): how many times a task whose engine dies runs again on another
    engine; with none left it fails with :class:`mpx.EngineDied`. ``block`` (default False)
    decides whether ``apply`` and ``map`` wait.
    """

    def __init__(self, client, targets=None, retries=0):
        self.client = client
        self.targets = None if targets is None else list(targets)
        self.retries = retries
        self.block = False

    def __repr__(self):
        return "<mpx.LoadBalancedView %s>" % ("all" if self.targets is None else self.targets)

    def _submit(self, op, f, arg_lists, kwargs):
        """One task per entry of ``arg_lists``: ``(op, f, args, kwargs)`` through the apply
        helper. Returns [(task, token)]."""
        self.client._ensure_helper()
        calls, tokens = [], []
        for args in arg_lists:
            token = self.client._token()
            payload, arrays = _apply.pack(op, f, args, kwargs)
            calls.append((_apply.HELPER, [token, "", payload] + arrays))
            tokens.append(token)
        tasks = self.client._raw.balanced_apply(self.targets, self.retries, calls)
        return list(zip(tasks, tokens))

    # -- one call ------------------------------------------------------------------------------
    def apply(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on one engine (blocking as ``self.block`` says)."""
        return self._apply(f, args, kwargs, self.block)

    def apply_sync(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on one engine and returns its value."""
        return self._apply(f, args, kwargs, True)

    def apply_async(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on one engine; returns a :class:`TaskResult`."""
        return self._apply(f, args, kwargs, False)

    def _apply(self, f, args, kwargs, block):
        [(task, token)] = self._submit("call", f, [args], kwargs)
        result = TaskResult(self.client, task, token)
        return result.get() if block else result

    # -- many ----------------------------------------------------------------------------------
    def imap(self, f, *seqs, chunksize=1, ordered=True, max_outstanding=None, timeout=None):
        """Yields ``f(*items)`` for the items of ``seqs`` (zipped): in order, or as they
        complete (``ordered=False``). Each task runs ``chunksize`` items; at most
        ``max_outstanding`` tasks are sent and not yet yielded (None: all at once). A task's
        error is raised when its turn comes."""
        items = list(zip(*seqs))
        chunks = [items[i : i + chunksize] for i in range(0, len(items), max(1, chunksize))]
        bound = len(chunks) if max_outstanding is None else max(1, max_outstanding)
        pending = []  # [(chunk index, task, token)]
        done = {}
        next_chunk, next_yield = 0, 0
        while next_yield < len(chunks):
            room = bound - len(pending) - len(done)
            if room > 0 and next_chunk < len(chunks):
                batch = chunks[next_chunk : next_chunk + room]
                # One task per chunk: the helper's "map" op runs list(map(f, *columns)).
                sent = self._submit("map", f, [tuple(zip(*c)) for c in batch], {})
                for k, (task, token) in enumerate(sent):
                    pending.append((next_chunk + k, task, token))
                next_chunk += len(batch)
            if not pending:
                raise RuntimeError("mpx map: no task in flight for item chunk %d" % next_yield)
            found = _mpx.wait_any([t for _, t, _ in pending], timeout)
            if found is None:
                raise TimeoutError("no task ended within %s s" % timeout)
            i, raw = found
            index, _, token = pending.pop(i)
            raw["_token"] = token
            if not ordered:
                next_yield += 1
                yield from _finish(self.client, raw)
                continue
            done[index] = raw
            while next_yield in done:
                yield from _finish(self.client, done.pop(next_yield))
                next_yield += 1

    def map(self, f, *seqs, chunksize=1, ordered=True, block=None):
        """``list(map(f, *seqs))``, each task on one free engine (``chunksize`` items per task);
        ``ordered=False`` lists results as they completed. Blocks as ``self.block`` says
        (returning a :class:`MapResult` when not)."""
        block = self.block if block is None else block
        it = self.imap(f, *seqs, chunksize=chunksize, ordered=ordered)
        return list(it) if block else MapResult(it)

    def map_sync(self, f, *seqs, chunksize=1, ordered=True):
        """``map`` and wait: the list of results."""
        return self.map(f, *seqs, chunksize=chunksize, ordered=ordered, block=True)

    def map_async(self, f, *seqs, chunksize=1, ordered=True):
        """``map`` without waiting: a :class:`MapResult`."""
        return self.map(f, *seqs, chunksize=chunksize, ordered=ordered, block=False)


class MapResult:
    """A map in flight (its tasks sent and collected by a background thread): iterate for the
    results in the map's order, or ``get()`` the whole list; a task's error is raised there."""

    def __init__(self, it):
        self._got = []
        self._error = None
        self._done = False
        self._cond = threading.Condition()
        self.submitted = time.time()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True, name="mpx-map")
        self._thread.start()

    def _run(self, it):
        try:
            for x in it:
                with self._cond:
                    self._got.append(x)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - raised by get()/iteration on the caller's thread
            self._error = e
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def __iter__(self):
        i = 0
        while True:
            with self._cond:
                while i >= len(self._got) and not self._done:
                    self._cond.wait(0.1)
                if i < len(self._got):
                    x = self._got[i]
                elif self._error is not None:
                    raise self._error
                else:
                    return
            i += 1
            yield x

    def ready(self):
        """Whether every task has ended."""
        return self._done

    def get(self, timeout=None):
        """Every result, in the map's order, waiting up to ``timeout`` seconds (None: until done)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout):
                raise TimeoutError("the map did not end within %s s" % timeout)
        if self._error is not None:
            raise self._error
        return list(self._got)

    result = get
