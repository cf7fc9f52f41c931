"""A progress line that updates in place, and notes printed once above it: on a terminal (or
any stream) one line rewritten with ``\\r``; in a Jupyter kernel, which has no terminal, one
display updated in place: an ipywidgets bar and label when ipywidgets is installed, else a text
display updated through its display id (``IPython.display.display(..., display_id=True)``).
Either way a notebook records one output, not one per update. Used by
:meth:`mpx.AsyncResult.wait_interactive` and ``%px``."""
from __future__ import annotations

import importlib
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


class _TextDisplay:
    """Progress as a text display, updated through its display id."""

    def __init__(self, text: str) -> None:
        from IPython.display import display

        data = {"text/plain": text}
        self._handle: Any = display(data, raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def update(self, text: str, done: Optional[int], total: Optional[int]) -> None:
        self._handle.update({"text/plain": text}, raw=True)

    def close(self, text: str) -> None:
        pass


class _Widget:
    """Progress as ipywidgets: a bar (once the numbers are known) and a label; a notebook
    viewer without widgets shows the label's last text."""

    def __init__(self, widgets: Any, text: str, done: Optional[int], total: Optional[int]) -> None:
        from IPython.display import display

        self._bar = widgets.IntProgress(min=0, max=1, value=0)
        self._label = widgets.Label(value=text)
        self.update(text, done, total)
        box = widgets.HBox([self._bar, self._label])
        bundle = getattr(box, "_repr_mimebundle_", None)
        self._data: dict[str, Any] = {}
        self._handle: Any = None
        if bundle is None:  # ipywidgets 7
            display(box)  # type: ignore[no-untyped-call]
            return
        self._data = dict(bundle())
        self._data["text/plain"] = text
        self._handle = display(self._data, raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def update(self, text: str, done: Optional[int], total: Optional[int]) -> None:
        known = done is not None and bool(total)
        if known:
            self._bar.max = total
            self._bar.value = min(done or 0, total or 0)
        self._bar.layout.display = None if known or self._bar.value else "none"
        self._label.value = text

    def close(self, text: str) -> None:
        # The text a viewer without widgets shows: the last.
        if self._handle is not None:
            self._handle.update(dict(self._data, **{"text/plain": text}), raw=True)


def _new_display(text: str, done: Optional[int], total: Optional[int]) -> Any:
    """A new progress display in the notebook: a widget when ipywidgets is installed."""
    try:
        widgets = importlib.import_module("ipywidgets")
    except ImportError:
        widgets = None
    if widgets is not None:
        try:
            return _Widget(widgets, text, done, total)
        except Exception:  # noqa: BLE001 - no widget then: the text display below
            pass
    return _TextDisplay(text)


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
        self._shown: Any = None
        self._text = ""

    @property
    def out(self) -> TextIO:
        """The stream written to."""
        return self._stream if self._stream is not None else sys.stdout

    def update(self, text: str, done: Optional[int] = None, total: Optional[int] = None) -> None:
        """Shows ``text`` as the progress line (replacing the previous one); ``done`` of
        ``total``: the progress as numbers (a widget shows them as a bar)."""
        if text == self._text and (self._shown is not None or not self._display):
            return
        if self._display:
            if self._shown is None:
                self._shown = _new_display(text, done, total)
            else:
                self._shown.update(text, done, total)
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
        if self._shown is not None:
            self._shown.close(self._text)
        if not self._display and self._text:
            self.out.write("\n")
            self.out.flush()
            self._text = ""
