"""numpy arrays across the boundary with the Rust client, without copies.

Out: a C-contiguous little-endian array is described as ``(dtype, shape, address, nbytes,
owner)``; the Rust side sends its bytes from where they are and keeps ``owner`` alive until
they are written. In: a received array is a :class:`mpx._mpx.Buffer` whose
``__array_interface__`` numpy wraps in place.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: An array to send: ``(dtype, shape, address, nbytes, owner)``.
WireArray = tuple[str, list[int], int, int, Any]

#: numpy dtype strings mpx moves natively (every numeric dtype and bool).
WIRE_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8", "<c8", "<c16"]
)


def is_wire_array(x: object) -> bool:
    """Whether x is a plain ndarray of a dtype mpx moves natively (any byte order/layout)."""
    return type(x) is np.ndarray and isinstance(x, np.ndarray) and x.dtype.newbyteorder("<").str in WIRE_DTYPES


def to_wire(x: Any) -> WireArray:
    """The wire description of array x; only non-contiguous or big-endian arrays are copied."""
    a = np.asarray(x)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a)
    if a.dtype.str not in WIRE_DTYPES:
        raise TypeError("mpx does not move numpy dtype %s (numbers and bool only)" % a.dtype)
    address = a.__array_interface__["data"][0]
    return (a.dtype.str, list(a.shape), address, a.nbytes, a)


def from_buffer(buf: Any) -> np.ndarray[Any, Any]:
    """The numpy array over a received Buffer's bytes (no copy; the array keeps them alive)."""
    return np.asarray(buf)
