"""Python functions on the engines: pickling on the client, a small helper on the engines.

A call travels as one mpx ``apply`` request of the engine-side function ``mpx_apply`` (defined
once per client in the engines' ``mpx_engine`` module, so the user's namespace stays clean, by a
cell of mpx's own that the session's history does not record; ``map``, ``push`` and ``pull``
call it under the names ``mpx_map``, ``mpx_push`` and ``mpx_pull``, which the history shows):
its arguments are a token, the names of earlier result arrays to drop, the pickled
``(op, f, args, kwargs)`` as a uint8 array, and every numpy array found in ``args``/``kwargs``
as an mpx array of its own (the pickle refers to them by index: they are never pickled).
The helper answers with ``"N:base64(pickle)"`` as the call's value; the N numpy arrays of the
result stay on the engine as ``__mpx_r_<token>_<i>`` until the client pulled them (as mpx
arrays) and names them for dropping in its next call.

Functions are pickled with cloudpickle where it is installed (closures, lambdas, functions
defined in a notebook), else with pickle (functions by reference). The engines need the same
cloudpickle version to unpickle what it made.
"""
from __future__ import annotations

import base64
import io
import pickle
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np

from ._arrays import WIRE_DTYPES, WireArray, is_wire_array, to_wire

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
    "array_count",
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
import base64 as _b64, io as _io, pickle as _pickle
try:
    import cloudpickle as _cp
    _Pickler = _cp.CloudPickler
except ImportError:
    _Pickler = _pickle.Pickler

def mpx_apply(token, drop, payload, *arrays):
    import __main__
    ns = __main__.__dict__
    for name in drop.split(",") if drop else ():
        ns.pop(name, None)

    class _Unpickler(_pickle.Unpickler):
        def persistent_load(self, pid):
            return arrays[pid]

    op, f, args, kwargs = _Unpickler(_io.BytesIO(payload.tobytes())).load()
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
    found = []

    class _ResultPickler(_Pickler):
        def persistent_id(self, obj):
            if type(obj) is _np.ndarray and obj.dtype.newbyteorder("<").str in _WIRE:
                found.append(obj)
                return len(found) - 1
            return None

    buf = _io.BytesIO()
    _ResultPickler(buf, protocol=_pickle.HIGHEST_PROTOCOL).dump(result)
    for i, a in enumerate(found):
        ns["__mpx_r_%s_%d" % (token, i)] = a
    return "%d:%s" % (len(found), _b64.b64encode(buf.getvalue()).decode("ascii"))

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


def unpack(value: str, arrays: Sequence[Any]) -> Any:
    """The result from the helper's value ``"N:base64"`` and its N pulled arrays."""

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return arrays[pid]

    _, data = value.split(":", 1)
    return _Unpickler(io.BytesIO(base64.b64decode(data))).load()


def helper_missing(ename: str, evalue: str) -> bool:
    """Whether an error is the engines' NameError for a missing helper (their MPI world was
    restarted since this client defined it)."""
    return ename == "NameError" and any("'%s'" % name in evalue for name in HELPERS.values())


def array_count(value: str) -> int:
    """How many result arrays the helper's value says stay on the engine."""
    return int(value.split(":", 1)[0])
