"""Exceptions: an engine's error as :class:`RemoteError` (several as :class:`CompositeError`),
a dead engine as :class:`EngineDied`."""
from __future__ import annotations

from typing import Any, Iterable, Optional

#: What the controller's errors say when the cluster's MPI world is being restarted (after a
#: rank was freed from a collective, a death with restarts on, an abort).
RESTARTING = "the MPI world is being restarted"


class RemoteError(Exception):
    """An exception raised on an engine: ``ename``, ``evalue``, ``traceback`` (the remote one,
    as text), ``engine_id`` (the MPI rank, with one engine set) and ``line`` (of the cell, when known).

    ``ename`` is ``WorldDown`` when the engine's MPI world went down under the request (``%px``
    and ``mpx px`` say when it is being restarted: same engine ids, variables lost)."""

    #: Whether ``%px`` shows identical errors of several engines once.
    group: bool = True
    #: Engines whose traceback ``%px`` showed already (rendered by their headline only).
    shown: frozenset[int] = frozenset()

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str = "",
        engine_id: Optional[int] = None,
        line: Optional[int] = None,
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_id = engine_id
        self.line = line
        super().__init__(ename, evalue, engine_id)

    def __str__(self) -> str:
        where = "" if self.engine_id is None else "[%s:error] " % self.engine_id
        sep = ": " if self.evalue else ""
        return "%s%s%s%s" % (where, self.ename, sep, self.evalue)

    def render(self) -> str:
        """The error as shown by ``%px``: the headline, then the remote traceback (unless
        ``%px`` showed it already)."""
        if self.engine_id is not None and self.engine_id in self.shown:
            return str(self) + " (traceback above)"
        lines = [str(self)]
        lines += ["    " + t for t in self.traceback.splitlines() if self.traceback]
        return "\n".join(lines)

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of the local traceback of the call that raised.
        return self.render().splitlines()


class CompositeError(RemoteError):
    """Errors from several engines; ``errors`` holds one :class:`RemoteError` per engine and the
    attributes of the first are this exception's."""

    def __init__(self, errors: Iterable[RemoteError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.ename, first.evalue, first.traceback, first.engine_id, first.line)

    def __str__(self) -> str:
        return "%d engines failed: %s" % (
            len(self.errors),
            "; ".join(RemoteError.__str__(e) for e in self.errors),
        )

    def render(self) -> str:
        from ._display import group_errors

        above = [e for e in self.errors if e.engine_id in self.shown]
        lines = ["%s (traceback above)" % RemoteError.__str__(e) for e in above]
        rest = [e for e in self.errors if e.engine_id not in self.shown]
        if rest:
            lines.append(group_errors(rest, self.group))
        return "\n".join(lines)


class EngineDied(Exception):
    """An engine died (killed, crashed, exited): ``engine_id``, its ``rank`` in its MPI world and
    ``cause`` (what mpirun said)."""

    def __init__(self, engine_id: int, cause: str, rank: Optional[int] = None) -> None:
        self.engine_id = engine_id
        self.rank = rank
        self.cause = cause
        super().__init__("engine %s died: %s" % (engine_id, cause))


def collect(results: list[dict[str, Any]]) -> Optional[Exception]:
    """The exception for a list of result dicts with errors, or None."""
    errors: list[RemoteError] = []
    for r in results:
        e = r["error"]
        if e is None:
            continue
        if r.get("died") is not None:
            engine, rank, cause = r["died"]
            return EngineDied(engine, cause, rank)
        ename, evalue, line, tb = e
        errors.append(RemoteError(ename, evalue, tb, r["engine_id"], line))
    if not errors:
        return None
    return errors[0] if len(errors) == 1 else CompositeError(errors)


def world_restarted(results: list[dict[str, Any]]) -> bool:
    """Whether result dicts say that their MPI world is being restarted (its variables are
    lost; the next request waits for the new world)."""
    for r in results:
        e = r["error"]
        if e is not None and (RESTARTING in e[1] or RESTARTING in (r.get("died") or ("", "", ""))[2]):
            return True
    return False


def helper_missing(error: BaseException) -> bool:
    """Whether an apply failed because the engines lack this client's helper (their world
    was restarted since it was defined)."""
    errors = getattr(error, "errors", [error])
    from ._apply import helper_missing as missing

    return bool(errors) and all(isinstance(e, RemoteError) and missing(e.ename, e.evalue) for e in errors)
