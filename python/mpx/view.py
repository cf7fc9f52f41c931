""":class:`View`: a set of engines of a client and what runs on them (ipyparallel's
``DirectView``)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from . import _apply
from ._arrays import from_buffer, is_wire_array, to_wire
from .asyncresult import AsyncResult, ExecuteReply, Join, Values
from .error import RemoteError

if TYPE_CHECKING:
    from ._mpx import AsyncResult as RawResult
    from ._mpx import ResultDict
    from .client import Client


def _split(n: int, k: int) -> list[int]:
    """Row counts of n rows over k engines: the first engines get one more (as ipyparallel)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class View:
    """Engines ``targets`` (None: all) of ``client``.

    ``block`` (default False, as in ipyparallel) decides whether calls wait and return values
    or return an :class:`AsyncResult` at once; every call takes ``block=`` to override it.
    """

    def __init__(self, client: Client, targets: Optional[list[int]], single: bool = False) -> None:
        self.client = client
        self._targets = targets
        self._single = single
        self.block = False

    @property
    def targets(self) -> Union[int, list[int]]:
        """The engine ids (one id for a single-engine view)."""
        ids = self._ids()
        return ids[0] if self._single else ids

    def _ids(self) -> list[int]:
        return self.client.ids if self._targets is None else list(self._targets)

    def _block(self, block: Optional[bool]) -> bool:
        return self.block if block is None else block

    def _async(
        self,
        raws: Sequence[RawResult],
        values: Values,
        targets: Optional[list[int]] = None,
        single: Optional[bool] = None,
        join: Optional[Join] = None,
    ) -> AsyncResult:
        return AsyncResult(
            self.client,
            raws,
            self._targets if targets is None else targets,
            values,
            self._single if single is None else single,
            join,
        )

    def _run(self, submit: Callable[[], AsyncResult], block: Optional[bool]) -> Any:
        """``submit()``'s AsyncResult, or (blocking) its value. A blocking call that found no
        apply helper on any engine (their MPI world was restarted, by another client, since
        this one set it up) is sent once more: the helper is set up again first."""
        ar = submit()
        if not self._block(block):
            return ar
        try:
            return ar.get()
        except RemoteError:
            if not _helper_missing_everywhere(ar.results):
                raise
        return submit().get()

    def __repr__(self) -> str:
        return "<mpx.View %s>" % ("all" if self._targets is None else self.targets)

    def __len__(self) -> int:
        return len(self._ids())

    # -- code --------------------------------------------------------------------------------
    def execute(self, code: str, silent: bool = True, block: Optional[bool] = None) -> AsyncResult:
        """Runs ``code`` as a cell; returns its :class:`AsyncResult` (waited for, and errors
        raised, when blocking). ``get()`` gives an ``ExecuteReply`` per engine."""
        raw = self.client._raw.execute(self._targets, code)
        ar = AsyncResult(self.client, [raw], self._targets, _replies, self._single)
        if self._block(block):
            ar.get()
        return ar

    def run(self, filename: Union[str, os.PathLike[str]], block: Optional[bool] = None) -> AsyncResult:
        """Runs a local file's code on the engines, like IPython's ``%run`` (tracebacks name it)."""
        with open(filename, encoding="utf-8") as f:
            code = f.read()
        raw = self.client._raw.run(self._targets, code, os.fspath(filename))
        ar = AsyncResult(self.client, [raw], self._targets, _replies, self._single)
        if self._block(block):
            ar.get()
        return ar

    # -- data --------------------------------------------------------------------------------
    def push(self, ns: dict[str, Any], block: Optional[bool] = None, shared: bool = False) -> Any:
        """Binds each name of dict ``ns`` on the engines. numpy arrays of mpx's dtypes go as
        mpx arrays, read in place (not copied on the client); other values are pickled.

        ``shared=True``: one read-only copy of each array for all the engines (they map the
        same sealed memfd, so 1 GB pushed to 4 engines costs the host about 1 GB, not 4); the
        engines' arrays are not writeable (``x.copy()`` makes a private one). It needs this
        client and every target on the controller's host, and raises :class:`RefusedError`
        otherwise (never falling back to a copy per engine); every value must be a numpy
        array of mpx's dtypes (``TypeError`` otherwise)."""
        if shared:
            for name, value in ns.items():
                if not is_wire_array(value):
                    raise TypeError(f"push(shared=True) takes numpy arrays of mpx's dtypes, not {name!r}")

        def submit() -> AsyncResult:
            raws = []
            rest = {}
            for name, value in ns.items():
                if is_wire_array(value):
                    raws.append(self.client._raw.push(self._targets, name, to_wire(value), shared))
                else:
                    rest[name] = value
            if rest or not raws:
                raws.append(self._apply_raw("push", None, (rest,), {}, self._targets))
            return self._async(raws, _nones)

        return self._run(submit, block)

    def push_npy(self, name: str, path: Union[str, os.PathLike[str]], block: Optional[bool] = None) -> Any:
        """Binds ``name`` on the engines to the array of the ``.npy`` file ``path`` (read by
        the client, sent as an mpx array). Unlike an array pushed from memory, the session's
        history keeps where it came from (the file and its hash): ``Client.replay()`` loads it
        again if unchanged, and ``Client.export()`` copies it beside the program."""
        path = os.fspath(path)

        def submit() -> AsyncResult:
            return self._async([self.client._raw.push_npy(self._targets, name, path, False)], _nones)

        return self._run(submit, block)

    def scatter_npy(self, name: str, path: Union[str, os.PathLike[str]], block: Optional[bool] = None) -> Any:
        """Splits the array of the ``.npy`` file ``path`` along axis 0 over the engines (as
        :meth:`scatter`) and binds each part to ``name``; replayable and exported as
        :meth:`push_npy`."""
        path = os.fspath(path)

        def submit() -> AsyncResult:
            return self._async([self.client._raw.push_npy(self._targets, name, path, True)], _nones)

        return self._run(submit, block)

    def pull(self, names: Union[str, list[str]], block: Optional[bool] = None) -> Any:
        """The value of ``names`` (a name, or a list of names) on each engine.

        A blocking pull of one name by a client on the controller's host asks for the arrays
        first (they come back as memfds this process maps: the numpy arrays live over the
        mappings, no copy); a value that is not an array on some engine is then fetched as any
        other object, through the apply helper."""
        if isinstance(names, str) and self._block(block) and self.client._raw.is_local:
            try:
                return self._async([self.client._raw.pull(self._targets, names)], _arrays).get()
            except RemoteError:
                pass

        def submit() -> AsyncResult:
            return self._async([self._apply_raw("pull", None, (names,), {}, self._targets)], _unpacked)

        return self._run(submit, block)

    def __getitem__(self, name: str) -> Any:
        return self.pull(name, block=True)

    def __setitem__(self, name: str, value: Any) -> None:
        self.push({name: value}, block=True)

    def scatter(self, name: str, seq: Any, block: Optional[bool] = None) -> Any:
        """Splits ``seq`` along axis 0 over the engines (the first get one row more) and binds
        each part to ``name``. Arrays go as one mpx array (MPI Scatterv on the engines)."""
        if is_wire_array(seq):
            wire = to_wire(seq)

            def scatter() -> AsyncResult:
                return self._async([self.client._raw.scatter(self._targets, name, wire)], _nones)

            return self._run(scatter, block)
        ids = self._ids()

        def submit() -> AsyncResult:
            raws, start = [], 0
            for eid, rows in zip(ids, _split(len(seq), len(ids))):
                part = seq[start : start + rows]
                start += rows
                raws.append(self._apply_raw("push", None, ({name: part},), {}, [eid]))
            return self._async(raws, _nones, single=False)

        return self._run(submit, block)

    def gather(self, name: str, block: Optional[bool] = None) -> Any:
        """``name`` concatenated along axis 0 over the engines, in engine order (an array;
        MPI Gatherv on the engines)."""

        def values(groups: Sequence[list[ResultDict]]) -> list[Any]:
            return [None if rs[0]["array"] is None else from_buffer(rs[0]["array"]) for rs in groups]

        def join(arrays: list[Any]) -> list[Any]:
            return [next(a for a in arrays if a is not None)]

        def submit() -> AsyncResult:
            raw = self.client._raw.gather(self._targets, name)
            return self._async([raw], values, single=True, join=join)

        return self._run(submit, block)

    # -- Python functions --------------------------------------------------------------------
    def _apply_raw(
        self,
        op: str,
        f: Optional[Callable[..., Any]],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        targets: Optional[list[int]],
    ) -> RawResult:
        """One call of the apply helper (see :mod:`mpx._apply`) on ``targets``."""
        self.client._ensure_helper()
        payload, arrays = _apply.pack(op, f, args, kwargs)
        return self.client._raw.apply(targets, _apply.HELPERS[op], [payload, *arrays])

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls ``f(*args, **kwargs)`` on each engine (blocking as ``self.block`` says)."""
        return self._apply(f, args, kwargs, self.block)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls ``f(*args, **kwargs)`` on each engine and returns the results."""
        return self._apply(f, args, kwargs, True)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Calls ``f(*args, **kwargs)`` on each engine; returns an :class:`AsyncResult`."""
        ar: AsyncResult = self._apply(f, args, kwargs, False)
        return ar

    def _apply(self, f: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], block: bool) -> Any:
        def submit() -> AsyncResult:
            return self._async([self._apply_raw("call", f, args, kwargs, self._targets)], _unpacked)

        return self._run(submit, block)

    def map(self, f: Callable[..., Any], *seqs: Sequence[Any], block: Optional[bool] = None) -> Any:
        """``list(map(f, *seqs))``, the sequences split over the engines in order."""
        ids = self._ids()
        n = min(len(s) for s in seqs)

        def join(chunks: list[Any]) -> list[Any]:
            return [[x for chunk in chunks for x in chunk]]

        def submit() -> AsyncResult:
            raws: list[RawResult] = []
            start = 0
            for eid, rows in zip(ids, _split(n, len(ids))):
                if rows == 0:
                    continue
                chunks = tuple(s[start : start + rows] for s in seqs)
                start += rows
                raws.append(self._apply_raw("map", f, chunks, {}, [eid]))
            return self._async(raws, _unpacked, single=True, join=join)

        return self._run(submit, block)

    def map_sync(self, f: Callable[..., Any], *seqs: Sequence[Any]) -> list[Any]:
        """``map`` and wait."""
        values: list[Any] = self.map(f, *seqs, block=True)
        return values

    def map_async(self, f: Callable[..., Any], *seqs: Sequence[Any]) -> AsyncResult:
        """``map`` without waiting: an :class:`AsyncResult` whose ``get()`` is the list."""
        ar: AsyncResult = self.map(f, *seqs, block=False)
        return ar

    def interrupt(self) -> list[int]:
        """Interrupts the running cells of this view's engines."""
        return self.client.interrupt(self._targets)


def _replies(groups: Sequence[list[ResultDict]]) -> list[Any]:
    """Each engine's ``ExecuteReply``."""
    return [ExecuteReply(rs[0]) for rs in groups]


def _helper_missing_everywhere(results: list[ResultDict]) -> bool:
    """Whether every result dict says the engine had no apply helper (so nothing ran)."""
    return bool(results) and all(
        r["error"] is not None and _apply.helper_missing(r["error"][0], r["error"][1]) for r in results
    )


def _unpacked(groups: Sequence[list[ResultDict]]) -> list[Any]:
    """Each engine's value from its apply helper's result dict (pickle and arrays in the reply)."""
    return [_apply.unpack(rs[0]["returned"]) for rs in groups]


def _arrays(groups: Sequence[list[ResultDict]]) -> list[Any]:
    """Each engine's array from a native pull (over the received memory, no copy)."""
    return [from_buffer(rs[0]["array"]) for rs in groups]


def _nones(groups: Sequence[list[ResultDict]]) -> list[Any]:
    """No value per engine (push, scatter)."""
    return [None] * len(groups)
