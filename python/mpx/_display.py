"""Rendering results as ipyparallel shows them: ``[stdout:0] line``, ``Out[0:7]: value``,
``[0:error] Name: message`` with the traceback; grouped, identical output of several engines is
shown once with the rank list (``[stdout:0-3] ...``)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Optional, Sequence, TypeVar

if TYPE_CHECKING:
    from .error import RemoteError

#: An error as the result dicts carry it: (ename, evalue, line or None, traceback).
Error = tuple[str, str, Optional[int], str]
K = TypeVar("K")


def rank_list(ids: Iterable[int]) -> str:
    """Engine ids as a compact list: ``[0, 1, 2, 3, 5]`` -> ``"0-3,5"``."""
    ids = sorted(ids)
    parts = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    return ",".join(parts)


def _group(
    items: Iterable[tuple[int, K]], norm: Callable[[K], Any] = lambda key: key
) -> list[tuple[list[int], K]]:
    """[(id, key)] -> [(ids, first key)] for non-empty keys equal under ``norm``, in first-seen
    order."""
    groups: dict[Any, tuple[K, list[int]]] = {}
    for eid, key in items:
        if key:
            groups.setdefault(norm(key), (key, []))[1].append(eid)
    return [(ids, key) for key, ids in groups.values()]


def _same_error(error: Error) -> tuple[str, str, Optional[int], str]:
    """An error's identity across engines: the traceback without its cell numbers (engines
    count cells separately)."""
    ename, evalue, line, tb = error
    return ename, evalue, line, re.sub(r"<cell-\d+>", "<cell>", tb)


def _lines(kind: str, who: object, text: str) -> list[str]:
    return ["[%s:%s] %s" % (kind, who, line) for line in text.splitlines()]


def _error_lines(who: object, error: Error) -> list[str]:
    ename, evalue, line, tb = error
    at = "" if line is None else " (line %d)" % line
    sep = ": " if evalue else ""
    out = ["[%s:error] %s%s%s%s" % (who, ename, sep, evalue, at)]
    out += ["    " + t for t in tb.splitlines()]
    return out


def _out(who: object, count: int, value: str) -> list[str]:
    return ["Out[%s:%d]: %s" % (who, count, value)]


def engine_lines(r: dict[str, Any]) -> list[str]:
    """One engine's output, ungrouped."""
    who = r["engine_id"]
    out = _lines("stdout", who, r["stdout"]) + _lines("stderr", who, r["stderr"])
    if r["value"] is not None:
        out += _out(who, r["execution_count"], r["value"])
    if r["error"] is not None:
        out += _error_lines(who, r["error"])
    return out


def render(results: Sequence[dict[str, Any]], group: bool = False, errors: bool = True) -> list[str]:
    """The lines showing results (dicts from :class:`mpx.AsyncResult`): engine by engine as in
    ipyparallel, or with ``group`` each distinct stdout, stderr, value and error once, labelled
    with the ranks that produced it."""
    if not errors:
        results = [dict(r, error=None) for r in results]
    if not group:
        return [line for r in results for line in engine_lines(r)]
    out: list[str] = []
    for ids, text in _group((r["engine_id"], r["stdout"]) for r in results):
        out += _lines("stdout", rank_list(ids), text)
    for ids, text in _group((r["engine_id"], r["stderr"]) for r in results):
        out += _lines("stderr", rank_list(ids), text)
    values = ((r["engine_id"], (r["execution_count"], r["value"])) for r in results if r["value"] is not None)
    for ids, (count, value) in _group(values):
        out += _out(rank_list(ids), count, value)
    for ids, error in _group(((r["engine_id"], r["error"]) for r in results), _same_error):
        out += _error_lines(rank_list(ids), error)
    return out


def group_errors(errors: Sequence[RemoteError], group: bool = True) -> str:
    """RemoteErrors as text, engine by engine, or (``group``) identical ones once with their
    rank list."""
    items: list[tuple[Any, Error]] = [(e.engine_id, (e.ename, e.evalue, e.line, e.traceback)) for e in errors]
    if not group:
        return "\n".join(line for eid, error in items for line in _error_lines(eid, error))
    out: list[str] = []
    for ids, error in _group(items, _same_error):
        out += _error_lines(rank_list(ids), error)
    return "\n".join(out)


class LiveLines:
    """Engines' output shown as it arrives (``%px`` in Jupyter): each call of :meth:`lines`
    gives the whole lines that are new since the last, ``[stdout:0] text``, engine by engine,
    and the last unfinished line of the engines that are done."""

    def __init__(self) -> None:
        # Characters of each (engine, stream) shown so far.
        self._shown: dict[tuple[int, str], int] = {}

    def lines(self, texts: dict[tuple[int, str], str], done: Container[int]) -> list[str]:
        """The lines to show now, from each engine's output so far by ``(engine id,
        stream)`` (stdout before stderr) and the engines that are ``done``."""
        out: list[str] = []
        for key in sorted(texts, key=lambda k: (k[0], k[1] != "stdout")):
            engine_id, name = key
            start = self._shown.get(key, 0)
            new = texts[key][start:]
            if engine_id not in done:
                new = new[: new.rfind("\n") + 1]
            if new:
                self._shown[key] = start + len(new)
                out += _lines(name, engine_id, new)
        return out


def without_output(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Result dicts without their stdout and stderr (shown already, as it arrived)."""
    return [dict(r, stdout="", stderr="") for r in results]
