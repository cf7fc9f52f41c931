""":class:`View`: a set of engines of a client and what runs on them (ipyparallel's
``DirectView``)."""
import os

from . import _apply
from ._arrays import from_buffer, is_wire_array, to_wire
from .asyncresult import AsyncResult, ExecuteReply
from .error import collect


def _split(n, k):
    """Row counts of n rows over k engines: the first engines get one more (as ipyparallel)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class View:
    """Engines ``targets`` (None: all) of ``client``.

    ``block`` (default False, as in ipyparallel) decides whether calls wait and return values
    or return an :class:`AsyncResult` at once; every call takes ``block=`` to override it.
    """

    def __init__(self, client, targets, single=False):
        self.client = client
        self._targets = targets
        self._single = single
        self.block = False

    @property
    def targets(self):
        """The engine ids (one id for a single-engine view)."""
        ids = self._ids()
        return ids[0] if self._single else ids

    def _ids(self):
        return self.client.ids if self._targets is None else list(self._targets)

    def _block(self, block):
        return self.block if block is None else block

    def _result(self, raws, values, block, targets=None, single=None, join=None):
        ar = AsyncResult(
            self.client,
            raws,
            self._targets if targets is None else targets,
            values,
            self._single if single is None else single,
            join,
        )
        return ar.get() if block else ar

    def __repr__(self):
        return "<mpx.View %s>" % ("all" if self._targets is None else self.targets)

    def __len__(self):
        return len(self._ids())

    # -- code --------------------------------------------------------------------------------
    def execute(self, code, silent=True, block=None):
        """Runs ``code`` as a cell; returns its :class:`AsyncResult` (waited for, and errors
        raised, when blocking). ``get()`` gives an ``ExecuteReply`` per engine."""
        raw = self.client._raw.execute(self._targets, code)
        ar = AsyncResult(self.client, [raw], self._targets, _replies, self._single)
        if self._block(block):
            ar.get()
        return ar

    def run(self, filename, block=None):
        """Runs a local file's code on the engines, like IPython's ``%run`` (tracebacks name it)."""
        with open(filename, encoding="utf-8") as f:
            code = f.read()
        raw = self.client._raw.run(self._targets, code, os.fspath(filename))
        ar = AsyncResult(self.client, [raw], self._targets, _replies, self._single)
        if self._block(block):
            ar.get()
        return ar

    # -- data --------------------------------------------------------------------------------
    def push(self, ns, block=None):
        """Binds each name of dict ``ns`` on the engines. numpy arrays of mpx's dtypes go as
        mpx arrays, read in place (not copied on the client); other values are pickled."""
        raws = []
        rest = {}
        for name, value in ns.items():
            if is_wire_array(value):
                raws.append(self.client._raw.push(self._targets, name, to_wire(value)))
            else:
                rest[name] = value
        if rest or not raws:
            raws.append(self._apply_raw("push", None, (rest,), {}, self._targets)[0])
        return self._result(raws, _nones, self._block(block))

    def pull(self, names, block=None):
        """The value of ``names`` (a name, or a list of names) on each engine."""
        raw, token = self._apply_raw("pull", None, (names,), {}, self._targets)
        return self._result([raw], self._unpacker(lambda eid: token), self._block(block))

    def __getitem__(self, name):
        return self.pull(name, block=True)

    def __setitem__(self, name, value):
        self.push({name: value}, block=True)

    def scatter(self, name, seq, block=None):
        """Splits ``seq`` along axis 0 over the engines (the first get one row more) and binds
        each part to ``name``. Arrays go as one mpx array (MPI Scatterv on the engines)."""
        if is_wire_array(seq):
            raw = self.client._raw.scatter(self._targets, name, to_wire(seq))
            return self._result([raw], _nones, self._block(block))
        ids = self._ids()
        raws, start = [], 0
        for eid, rows in zip(ids, _split(len(seq), len(ids))):
            part = seq[start : start + rows]
            start += rows
            raws.append(self._apply_raw("push", None, ({name: part},), {}, [eid])[0])
        return self._result(raws, _nones, self._block(block), single=False)

    def gather(self, name, block=None):
        """``name`` concatenated along axis 0 over the engines, in engine order (an array;
        MPI Gatherv on the engines)."""
        raw = self.client._raw.gather(self._targets, name)

        def values(groups):
            return [None if rs[0]["array"] is None else from_buffer(rs[0]["array"]) for rs in groups]

        def join(arrays):
            return [next(a for a in arrays if a is not None)]

        return self._result([raw], values, self._block(block), single=True, join=join)

    # -- Python functions --------------------------------------------------------------------
    def _apply_raw(self, op, f, args, kwargs, targets):
        self.client._ensure_helper()
        token = self.client._token()
        payload, arrays = _apply.pack(op, f, args, kwargs)
        call_args = [token, self.client._take_drop(targets), payload] + arrays
        return self.client._raw.apply(targets, _apply.HELPER, call_args), token

    def _unpacker(self, token_of):
        """The values of engines from their helper's result dicts (``token_of(engine id)``: the
        call's token there): their result arrays pulled (all at once), then unpickled."""
        client = self.client

        def values(groups):
            pulls = []
            for r in (rs[0] for rs in groups):
                token = token_of(r["engine_id"])
                value = r["value"][1:-1]
                names = ["__mpx_r_%s_%d" % (token, i) for i in range(_apply.array_count(value))]
                raws = [client._raw.pull([r["engine_id"]], n) for n in names]
                pulls.append((r["engine_id"], value, names, raws))
            out = []
            for eid, value, names, raws in pulls:
                arrays = []
                for raw in raws:
                    got = raw.get(None)
                    raw.forget()
                    error = collect(got)
                    if error is not None:
                        raise error
                    arrays.append(from_buffer(got[0]["array"]))
                client._dropped(eid, names)
                out.append(_apply.unpack(value, arrays))
            return out

        return values

    def apply(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on each engine (blocking as ``self.block`` says)."""
        return self._apply(f, args, kwargs, self.block)

    def apply_sync(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on each engine and returns the results."""
        return self._apply(f, args, kwargs, True)

    def apply_async(self, f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` on each engine; returns an :class:`AsyncResult`."""
        return self._apply(f, args, kwargs, False)

    def _apply(self, f, args, kwargs, block):
        raw, token = self._apply_raw("call", f, args, kwargs, self._targets)
        return self._result([raw], self._unpacker(lambda eid: token), block)

    def map(self, f, *seqs, block=None):
        """``list(map(f, *seqs))``, the sequences split over the engines in order."""
        ids = self._ids()
        n = min(len(s) for s in seqs)
        raws, tokens, start = [], {}, 0
        for eid, rows in zip(ids, _split(n, len(ids))):
            if rows == 0:
                continue
            chunks = tuple(s[start : start + rows] for s in seqs)
            start += rows
            raw, tokens[eid] = self._apply_raw("map", f, chunks, {}, [eid])
            raws.append(raw)

        def join(chunks):
            return [[x for chunk in chunks for x in chunk]]

        return self._result(raws, self._unpacker(tokens.__getitem__), self._block(block), single=True, join=join)

    def map_sync(self, f, *seqs):
        """``map`` and wait."""
        return self.map(f, *seqs, block=True)

    def map_async(self, f, *seqs):
        """``map`` without waiting: an :class:`AsyncResult` whose ``get()`` is the list."""
        return self.map(f, *seqs, block=False)

    def interrupt(self):
        """Interrupts the running cells of this view's engines."""
        return self.client.interrupt(self._targets)


def _replies(groups):
    """Each engine's ``ExecuteReply``."""
    return [ExecuteReply(rs[0]) for rs in groups]


def _nones(groups):
    """No value per engine (push, scatter)."""
    return [None] * len(groups)
