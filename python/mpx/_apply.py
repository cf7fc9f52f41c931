"""Python functions on the engines: pickling on the client, a small helper on the engines.

A call travels as one mpx ``apply`` request of the engine-side function ``mpx_apply`` (defined
once per client in the engines' ``mpx_engine`` module, so the user's namespace stays clean, by a
cell of mpx's own that the session's history does not record; ``map``, ``push`` and ``pull``
call it under the names ``mpx_map``, ``mpx_push`` and ``mpx_pull``, which the history shows):
its arguments are the pickled ``(op, f, args, kwargs)`` as a uint8 array and every numpy array
found in ``args``/``kwargs`` as an mpx array of its own (the pickle refers to them by index:
they are never pickled).

The result travels back the same way, in the reply itself: the helper returns an
``mpx_engine.Returned(pickle, arrays)``, which the engine sends as the reply's buffers instead
of a displayed value: the pickle of the result with every numpy array of mpx's dtypes taken out
(referred to by index), and those arrays each as an mpx array (sent from the array's own memory
when nothing else on the engine refers to it, else copied once). The client finds them in the
result dict's ``returned`` (the pickle's bytes and a :class:`mpx._mpx.Buffer` per array, which
numpy wraps without a copy): one round trip per call, and nothing left behind on the engines.
A result must fit one reply (about 1 GiB; past that the call fails with ``ResultTooLarge``).

Functions are pickled with cloudpickle where it is installed (closures, lambdas, functions
defined in a notebook), else with pickle (functions by reference). The engines need the same
cloudpickle version to unpickle what it made.
"""
from __future__ import annotations

import io
import pickle
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np

from ._arrays import WIRE_DTYPES, WireArray, from_buffer, is_wire_array, to_wire

if TYPE_CHECKING:
    # cloudpickle ships no type information; its CloudPickler is a pickle.Pickler.
    _Base = pickle.Pickler
else:
    try:
        from cloudpickle import CloudPickler as _Base
    except ImportError:  # pragma: no cover - depends on the installation
        _Base = pickle.Pickler

__all__ = [
    "HELPER",
    "HELPERS",
    "WIRE_DTYPES",
    "define_cell",
    "helper_missing",
    "pack",
    "unpack",
]

#: Name of the engine-side helper (in the ``mpx_engine`` module).
HELPER = "mpx_apply"
#: The helper's name for each operation (the same function: the session's history tells the
#: operations apart by these names).
HELPERS = {"call": HELPER, "map": "mpx_map", "push": "mpx_push", "pull": "mpx_pull"}

# Compiled on the engine under cell.py's own file name, so the engine's traceback formatter drops
# the helper's frames and users see only their function's.
HELPER_SOURCE = r'''
import io as _io, pickle as _pickle
from mpx_engine import Returned as _Returned
try:
    import cloudpickle as _cp
    _Pickler = _cp.CloudPickler
except ImportError:
    _Pickler = _pickle.Pickler


class _ResultPickler(_Pickler):
    # Takes the numpy arrays of mpx's dtypes out of the pickle (into `found`, by index; an
    # array met twice is sent once and comes back as one array).
    def __init__(self, file, found):
        super().__init__(file, protocol=_pickle.HIGHEST_PROTOCOL)
        self.found = found
        self.index = {}

    def persistent_id(self, obj):
        if type(obj) is _np.ndarray and obj.dtype.newbyteorder("<").str in _WIRE:
            i = self.index.get(id(obj))
            if i is None:
                i = self.index[id(obj)] = len(self.found)
                self.found.append(obj)
            return i
        return None


class _ArgUnpickler(_pickle.Unpickler):
    # Puts the argument arrays back where the pickle refers to them.
    def __init__(self, file, arrays):
        super().__init__(file)
        self.arrays = arrays

    def persistent_load(self, pid):
        return self.arrays[pid]


def mpx_apply(payload, *arrays):
    import __main__
    ns = __main__.__dict__
    op, f, args, kwargs = _ArgUnpickler(_io.BytesIO(payload.tobytes()), arrays).load()
    del payload
    if op == "call":
        result = f(*args, **kwargs)
    elif op == "map":
        result = list(map(f, *args))
    elif op == "push":
        ns.update(args[0])
        result = None
    elif op == "pull":
        names = args[0]
        result = ns[names] if isinstance(names, str) else [ns[n] for n in names]
    else:
        raise ValueError("unknown mpx operation %r" % (op,))
    del f, args, kwargs, arrays
    buf = _io.BytesIO()
    found = []
    pickler = _ResultPickler(buf, found)
    pickler.dump(result)
    # Only the marker keeps the result's arrays: the engine then sends the arrays nothing else
    # refers to from their own memory (a pickler may outlive this call in a reference cycle).
    pickler.clear_memo()
    pickler.found = None
    del pickler, result
    return _Returned(buf.getvalue(), found)

mpx_map = mpx_push = mpx_pull = mpx_apply
'''


def define_cell(wire_dtypes: Iterable[str]) -> str:
    """The cell that defines the helper on the engines (run once per client)."""
    src = "import numpy as _np\n_WIRE = %r\n%s" % (sorted(wire_dtypes), HELPER_SOURCE)
    return (
        "exec(compile(%r, 'mpx_cell.py', 'exec'), __import__('sys').modules['mpx_engine'].__dict__)"
        % src
    )


class _ArgPickler(_Base):
    """Pickles arguments, taking numpy arrays out (they travel as mpx arrays)."""

    def __init__(self, file: io.BytesIO, arrays: list[Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._arrays = arrays

    def persistent_id(self, obj: Any) -> Optional[int]:
        if is_wire_array(obj):
            self._arrays.append(obj)
            return len(self._arrays) - 1
        return None


def pack(
    op: str, f: Optional[Callable[..., Any]], args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[WireArray, list[WireArray]]:
    """(payload, arrays): the pickled ``(op, f, args, kwargs)`` as a uint8 array and the wire
    descriptions of the numpy arrays taken out of it."""
    arrays: list[Any] = []
    buf = io.BytesIO()
    _ArgPickler(buf, arrays).dump((op, f, tuple(args), dict(kwargs)))
    payload = np.frombuffer(buf.getbuffer(), dtype=np.uint8)
    return to_wire(payload), [to_wire(a) for a in arrays]


class _ResultUnpickler(pickle.Unpickler):
    """Unpickles a result, putting its arrays back where the pickle refers to them."""

    def __init__(self, file: io.BytesIO, arrays: Sequence[Any]) -> None:
        super().__init__(file)
        self._arrays = arrays

    def persistent_load(self, pid: Any) -> Any:
        return self._arrays[pid]


def unpack(returned: Optional[tuple[bytes, list[Any]]]) -> Any:
    """The result of a helper call from its result dict's ``returned``: the pickle's bytes and
    a Buffer per array, which become numpy arrays over the reply's bytes (no copy)."""
    if returned is None:
        raise RuntimeError("the engine sent no result for mpx's apply helper (an engine of another mpx version?)")
    payload, buffers = returned
    return _ResultUnpickler(io.BytesIO(payload), [from_buffer(b) for b in buffers]).load()


def helper_missing(ename: str, evalue: str) -> bool:
    """Whether an error is the engines' NameError for a missing helper (their MPI world was
    restarted since this client defined it)."""
    return ename == "NameError" and any("'%s'" % name in evalue for name in HELPERS.values())
