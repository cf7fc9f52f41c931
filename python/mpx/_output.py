"""A request's output as it arrives (:class:`Streamed`), for ``%px`` in Jupyter, which shows
each engine's output while the cell runs (as ipyparallel does).

While a request's output streams (its :class:`mpx._mpx.OutputStream` is open), the engines'
results carry no stdout or stderr: each piece of output is given once, to the stream.
:class:`Streamed` keeps the pieces and puts them back in front of each engine's result text,
so that ``AsyncResult.stdout``, ``get()`` and ``%pxresult`` see all of it either way.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional, Sequence

if TYPE_CHECKING:
    from ._mpx import AsyncResult as RawResult
    from ._mpx import OutputStream, ResultDict

#: The most output kept per engine and stream (characters), as the Rust client keeps in a
#: result (16 MiB): a cell printing gigabytes cannot fill the client's memory.
KEEP = 16 << 20
#: The two streams, in the order they are shown.
STREAMS = ("stdout", "stderr")


class _Text:
    """The output of one engine to one stream, up to :data:`KEEP` characters (the rest is
    counted, and said in one line at the end)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._chunks: list[str] = []
        self._size = 0
        self._dropped = 0

    def add(self, text: str) -> None:
        room = max(0, KEEP - self._size)
        if len(text) > room:
            self._dropped += len(text) - room
            text = text[:room]
        if text:
            self._chunks.append(text)
            self._size += len(text)
        if len(self._chunks) > 64:
            # Joined here, under the lock of adding (text() only reads: any thread calls it).
            self._chunks = ["".join(self._chunks)]

    def text(self) -> str:
        text = "".join(self._chunks)
        if self._dropped:
            end = "" if text.endswith("\n") or not text else "\n"
            note = "[mpx: %d more characters of %s were not kept (the client keeps %d MiB per engine)]\n"
            text += end + note % (self._dropped, self._name, KEEP >> 20)
        return text


class Streamed:
    """The output of a request's raw requests as it arrives, once :meth:`open` (what came
    before included), until :meth:`close`; thread-safe (a reader waits in :meth:`read` while
    another thread closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # None: never opened; [] once closed.
        self._streams: Optional[list[OutputStream]] = None
        self._texts: dict[tuple[int, str], _Text] = {}

    @property
    def opened(self) -> bool:
        """Whether the output was streamed (it may be closed since)."""
        return self._streams is not None

    def open(self, raws: Sequence[RawResult]) -> None:
        """Streams the output of ``raws`` from now on (unless done already)."""
        with self._lock:
            if self._streams is None:
                self._streams = [raw.output() for raw in raws]

    def _take(self) -> bool:
        """(With the lock held.) Keeps what arrived; True if anything came."""
        got = False
        for stream in self._streams or []:
            for engine_id, name, text in stream.next(0.0):
                self._texts.setdefault((engine_id, name), _Text(name)).add(text)
                got = True
        return got

    def read(self, timeout: float, wait: Callable[[float], object]) -> bool:
        """Keeps the output that arrives during ``timeout`` seconds, or until the request is
        done (``wait(timeout)`` waits for that: its output is all here then); at once when not
        streaming. True if any came."""
        with self._lock:
            if not self._streams:
                return False
            wait(timeout)
            return self._take()

    def close(self) -> None:
        """Keeps what arrived, then stops streaming (output that comes later goes to the
        results); before the raw requests are forgotten, which drops their streams' pieces."""
        with self._lock:
            if not self._streams:
                return
            self._take()
            for stream in self._streams:
                stream.close()
            self._streams = []

    def merge(self, results: list[ResultDict]) -> list[ResultDict]:
        """``results`` with each engine's streamed output in front of its result's own."""
        if not self._texts:
            return results
        out = []
        for r in results:
            texts = {name: self._texts.get((r["engine_id"], name)) for name in STREAMS}
            parts = {name: t.text() + r[name] for name, t in texts.items() if t is not None}
            out.append(dict(r, **parts) if parts else r)
        return out

    def texts(self, results: list[ResultDict]) -> dict[tuple[int, str], str]:
        """Each engine's output so far by ``(engine id, stream)``: what streamed in, and all
        of it for the engines of ``results`` (those that answered, as :meth:`merge` gives
        them)."""
        out = {key: text.text() for key, text in list(self._texts.items())}
        for r in results:
            for name in STREAMS:
                if r[name]:
                    out[(r["engine_id"], name)] = r[name]
        return out
