"""The session's history as Python sees it (``Client.history()``), what a replay did
(``Client.replay()``, ``Client.restart(replay=True)``) and what an export wrote
(``Client.export()``).

The controller records every request that reaches the engines: cells, runs, pushes and
scatters (with the ``.npy`` file they came from, or "a Python client's memory"), pulls,
gathers and calls, with their targets, each engine's outcome and times. Entries are numbered
from 1 for the cluster's life; each restart of the MPI world begins a new *epoch*. Requests of
the Python client's own (its apply helper, the arrays of a function's result) are not recorded.

A Python function call travels as a call of one of mpx's helpers on the engines, which the
history names: ``mpx_apply`` (``apply``), ``mpx_map`` (``map``), ``mpx_push`` and ``mpx_pull``
(``push``/``pull`` of values that are not numpy arrays). Their functions and arguments are not
kept: a replay and an export leave them out.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

#: What the history says of the Python client's helpers (see :mod:`mpx._apply`).
PYTHON_CALLS = {
    "mpx_apply": "apply(...) of a Python function",
    "mpx_map": "map(...) of a Python function",
    "mpx_push": "push of Python values",
    "mpx_pull": "pull of Python values",
}

#: The separator between epochs in a rendered history (as ``mpx history`` writes it).
RESTARTED = "--- the MPI world restarted (variables were lost) ---"


def ranks_text(ids: list[int]) -> str:
    """Engine ids in short form: ``0-3``, ``0,2``, ``1-2,5``."""
    ids = sorted(set(ids))
    runs: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        runs.append("%d-%d" % (ids[i], ids[j]) if j > i else str(ids[i]))
        i = j + 1
    return ",".join(runs)


def _outcome_word(outcome: Any) -> str:
    """``ok``, the error's class, ``interrupted`` or ``died`` from the JSON of an outcome."""
    if isinstance(outcome, dict):
        return str(outcome["Error"])
    return {"Ok": "ok", "Interrupted": "interrupted", "Died": "died"}.get(str(outcome), str(outcome).lower())


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One request of the session.

    ``kind`` is ``cell``, ``run``, ``push``, ``scatter``, ``pull``, ``gather`` or ``apply``;
    ``code`` the cell's (or run file's) code; ``name`` the variable (push, scatter, pull,
    gather), the function called (apply) or the file run; ``source`` the ``.npy`` file a push
    or scatter came from (None: a client's memory, which mpx does not keep); ``targets``
    ``"all"`` or the engine ids it was sent to (``engines``: the engines it ran on either way);
    ``outcomes`` each engine's: ``"ok"``, the error's class (``"ZeroDivisionError"``),
    ``"interrupted"`` or ``"died"`` (engines still running have none yet); ``started`` and
    ``completed`` Unix times (0 until known)."""

    n: int
    epoch: int
    kind: str
    code: Optional[str]
    name: Optional[str]
    targets: Union[str, list[int]]
    engines: list[int]
    outcomes: dict[int, str]
    started: float
    completed: float
    dtype: Optional[str] = None
    shape: Optional[tuple[int, ...]] = None
    source: Optional[str] = None
    blake3: Optional[str] = None

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> HistoryEntry:
        """An entry from its JSON (``mpx_messages::HistoryEntry``)."""
        ((tag, item),) = e["item"].items()
        kind = tag.lower()
        fields: dict[str, Any] = {"code": item.get("code")}
        if kind == "run":
            fields["name"] = item["filename"]
        elif kind == "apply":
            fields["name"] = item["function"]
        else:
            fields["name"] = item.get("name")
        if kind in ("push", "scatter"):
            fields["dtype"] = item["dtype"]
            fields["shape"] = tuple(item["shape"])
            source = item["source"]
            if isinstance(source, dict) and "File" in source:
                fields["source"] = source["File"]["path"]
                fields["blake3"] = source["File"]["blake3"]
        return cls(
            n=e["n"],
            epoch=e["epoch"],
            kind=kind,
            targets="all" if e["all"] else list(e["engines"]),
            engines=list(e["engines"]),
            outcomes={eid: _outcome_word(o) for eid, o in e["outcomes"]},
            started=e["started"],
            completed=e["completed"],
            **fields,
        )

    @property
    def done(self) -> bool:
        """Whether every engine answered."""
        return len(self.outcomes) == len(self.engines)

    @property
    def succeeded(self) -> bool:
        """Whether every engine answered and each one succeeded."""
        return self.done and all(o == "ok" for o in self.outcomes.values())

    @property
    def duration(self) -> Optional[float]:
        """Seconds from the first engine's start to the last one's end (None until known)."""
        if self.started > 0 and self.completed > 0:
            return self.completed - self.started
        return None

    @property
    def text(self) -> str:
        """What the entry did, as the user typed it (a cell's code)."""
        if self.kind == "cell":
            return (self.code or "").rstrip()
        if self.kind == "run":
            return "%%run %s" % self.name
        if self.kind in ("push", "scatter"):
            origin = self.source if self.source is not None else "a Python client's memory"
            shape = "[%s]" % ", ".join(str(d) for d in self.shape or ())
            return "%%%s %s (%s %s) from %s" % (self.kind, self.name, self.dtype, shape, origin)
        if self.kind in ("pull", "gather"):
            return "%%%s %s" % (self.kind, self.name)
        return PYTHON_CALLS.get(self.name or "", "apply %s(...)" % self.name)

    @property
    def outcome_text(self) -> str:
        """The outcomes at a glance: ``ok``, ``0: ZeroDivisionError; 1-3: died``, ``running``."""
        if not self.outcomes:
            return "running"
        groups: dict[str, list[int]] = {}
        for eid in sorted(self.outcomes):
            groups.setdefault(self.outcomes[eid], []).append(eid)
        if len(groups) == 1:
            (word,) = groups
            return word if self.done else "%s so far" % word
        text = "; ".join("%s: %s" % (ranks_text(ids), word) for word, ids in groups.items())
        return text if self.done else text + "; others running"

    def __str__(self) -> str:
        """The entry as ``mpx history`` shows it: ``[n] targets outcomes (seconds): code``."""
        secs = "-" if self.duration is None else "%.2f s" % self.duration
        targets = "all" if self.targets == "all" else ranks_text(self.engines)
        first, *rest = self.text.split("\n")
        lines = ["[%d] %s %s (%s): %s" % (self.n, targets, self.outcome_text, secs, first)]
        return "\n".join(lines + ["    " + line for line in rest])


class History(list[HistoryEntry]):
    """The session's history, oldest first (a list of :class:`HistoryEntry`); ``epoch`` is
    the current MPI world's (entries of earlier epochs ran in worlds since restarted).
    ``str()`` (and IPython's display) shows it as ``mpx history`` does."""

    def __init__(self, entries: list[HistoryEntry], epoch: int) -> None:
        super().__init__(entries)
        self.epoch = epoch

    def select(self, n: Optional[int] = None, errors: bool = False) -> History:
        """The last ``n`` entries (all: None), only those that failed somewhere if ``errors``."""
        kept = [e for e in self if not errors or (e.done and not e.succeeded)]
        if n is not None:
            kept = kept[max(0, len(kept) - n) :]
        return History(kept, self.epoch)

    @property
    def current(self) -> History:
        """The entries since the last restart (what ``export`` writes)."""
        return History([e for e in self if e.epoch == self.epoch], self.epoch)

    @property
    def previous(self) -> History:
        """The entries of the last epoch before the current one that has any (what a replay
        runs again)."""
        epochs = [e.epoch for e in self if e.epoch < self.epoch]
        if not epochs:
            return History([], self.epoch)
        return History([e for e in self if e.epoch == max(epochs)], self.epoch)

    def render(self) -> str:
        """The history as ``mpx history`` shows it (an empty string when there is none)."""
        out: list[str] = []
        epoch = self[0].epoch if self else 0
        for entry in self:
            if entry.epoch != epoch:
                out.append(RESTARTED)
                epoch = entry.epoch
            out.append(str(entry))
        return "".join(line + "\n" for line in out)

    def __str__(self) -> str:
        return self.render()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.render().rstrip("\n") if self else "<empty mpx history>")


#: Why a replay leaves the Python client's calls out.
_NOT_KEPT = {
    "mpx_apply": "a Python apply(...): its function and arguments are not kept",
    "mpx_map": "a Python map(...): its function and sequences are not kept",
    "mpx_push": "a push of Python values, which mpx does not keep",
}


def _python_why(entry: Optional[HistoryEntry], why: str) -> str:
    """A replay's reason for an entry, in the Python client's words for its helpers' calls."""
    if entry is not None and entry.kind == "apply" and entry.succeeded:
        return _NOT_KEPT.get(entry.name or "", why)
    return why


@dataclasses.dataclass
class Replay:
    """What a replay of the session before the last restart did: ``ran`` the history numbers
    run again, in order; ``skipped`` ``(number, why)`` of what it did not replay (failed
    then, an array from a client's memory, a changed file, a Python call); ``failed``
    ``(number, why)`` where it stopped because an entry failed now (None: it got to the end);
    ``session`` the entries it went through; ``engines`` the new world's engine ids after
    ``Client.restart(replay=True)``. ``str()`` is the summary ``mpx replay`` prints."""

    ran: list[int]
    skipped: list[tuple[int, str]]
    failed: Optional[tuple[int, str]]
    session: History
    engines: list[int] = dataclasses.field(default_factory=list)

    @classmethod
    def from_raw(
        cls,
        session_json: list[dict[str, Any]],
        ran: list[int],
        skipped: list[tuple[int, str]],
        failed: Optional[tuple[int, str]],
        epoch: int,
    ) -> Replay:
        """From what the extension's ``replay`` returned (Python calls named as such; pulls of
        Python values, which only fetched data, left unmentioned as pulls are)."""
        session = History([HistoryEntry.from_json(e) for e in session_json], epoch)
        by_n = {e.n: e for e in session}
        kept = []
        for n, why in skipped:
            entry = by_n.get(n)
            if entry is not None and entry.kind == "apply" and entry.name == "mpx_pull" and entry.succeeded:
                continue
            kept.append((n, _python_why(entry, why)))
        return cls(list(ran), kept, failed, session)

    @property
    def ok(self) -> bool:
        """Whether the replay got to the end of the session."""
        return self.failed is None

    def summary(self) -> str:
        """A few lines for the user (as ``mpx replay`` prints them)."""
        if not self.session:
            return "nothing to replay: no session before the current MPI world\n"
        text = "replayed %d of the session's entries" % len(self.ran)
        if self.ran:
            text += " ([%d]..[%d])" % (self.ran[0], self.ran[-1])
        text += "\n"
        for n, why in self.skipped:
            text += "  not replayed [%d]: %s\n" % (n, why)
        if self.failed is not None:
            text += "  stopped at [%d], which failed now: %s\n" % self.failed
        return text

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary().rstrip("\n"))


@dataclasses.dataclass
class Exported:
    """What ``Client.export`` wrote: the program ``script``, the ``.npy`` ``data`` files copied
    beside it, the job scripts ``jobs``; ``entries`` how many history entries it covers and
    ``size`` the ranks it runs on. ``str()`` says so as ``mpx export`` does."""

    script: str
    data: list[str]
    jobs: list[str]
    entries: int
    size: int

    def __str__(self) -> str:
        lines = [
            "wrote %s (%d entries; run it with mpirun -n %d python3 %s)"
            % (self.script, self.entries, self.size, self.script)
        ]
        for job in self.jobs:
            submit = "sbatch" if job.endswith(".sbatch") else "qsub"
            lines.append("wrote %s (%s %s)" % (job, submit, job))
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))
