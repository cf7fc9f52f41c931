"""A progress line that updates in place, and notes printed once above it: on a terminal (or
any stream) one line rewritten with ``\\r``; in a Jupyter kernel, which has no terminal, one
display updated through its display id (``IPython.display.display(..., display_id=True)``).
Used by :meth:`mpx.AsyncResult.wait_interactive` and ``%px``."""
from __future__ import annotations

import sys
from typing import Any, Optional, TextIO


def in_kernel() -> bool:
    """Whether this runs in a Jupyter (IPython) kernel, whose output is a notebook's."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class ProgressLine:
    """One line of progress: ``update(text)`` replaces it, ``note(text)`` prints a line once
    (above the progress line on a terminal), ``close()`` ends it.

    ``display`` (None: :func:`in_kernel`) chooses the Jupyter display over the ``\\r`` line.
    Notes go to ``stream`` (default: ``sys.stdout`` when written), the line's stream too, so
    the two never tear each other.
    """

    def __init__(self, display: Optional[bool] = None, stream: Optional[TextIO] = None) -> None:
        self._display = in_kernel() if display is None else display
        self._stream = stream
        self._handle: Any = None
        self._text = ""

    @property
    def out(self) -> TextIO:
        """The stream written to."""
        return self._stream if self._stream is not None else sys.stdout

    def update(self, text: str) -> None:
        """Shows ``text`` as the progress line (replacing the previous one)."""
        if text == self._text and (self._handle is not None or not self._display):
            return
        if self._display:
            from IPython.display import display

            data = {"text/plain": text}
            if self._handle is None:
                self._handle = display(data, raw=True, display_id=True)  # type: ignore[no-untyped-call]
            else:
                self._handle.update(data, raw=True)
        else:
            pad = " " * max(0, len(self._text) - len(text))
            self.out.write("\r" + text + pad)
            self.out.flush()
        self._text = text

    def note(self, text: str) -> None:
        """Prints ``text`` as a line of its own, once (the progress line stays below it)."""
        if self._display or not self._text:
            print(text, file=self.out, flush=True)
            return
        self.out.write("\r" + " " * len(self._text) + "\r" + text + "\n" + self._text)
        self.out.flush()

    def clear(self) -> None:
        """Removes the progress line (on a terminal; a display keeps its last text)."""
        if not self._display and self._text:
            self.out.write("\r" + " " * len(self._text) + "\r")
            self.out.flush()
            self._text = ""

    def close(self) -> None:
        """Ends the progress line: the cursor goes to the next line, the text stays."""
        if not self._display and self._text:
            self.out.write("\n")
            self.out.flush()
            self._text = ""
