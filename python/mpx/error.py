"""Exceptions: an engine's error as :class:`RemoteError` (several as :class:`CompositeError`),
a dead engine as :class:`EngineDied`."""


class RemoteError(Exception):
    """An exception raised on an engine: ``ename``, ``evalue``, ``traceback`` (the remote one,
    as text), ``engine_id`` (= MPI rank) and ``line`` (of the cell, when known)."""

    def __init__(self, ename, evalue, traceback="", engine_id=None, line=None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_id = engine_id
        self.line = line
        super().__init__(ename, evalue, engine_id)

    def __str__(self):
        where = "" if self.engine_id is None else "[%s:error] " % self.engine_id
        sep = ": " if self.evalue else ""
        return "%s%s%s%s" % (where, self.ename, sep, self.evalue)

    def render(self):
        """The error as shown by ``%px``: the headline, then the remote traceback."""
        lines = [str(self)]
        lines += ["    " + t for t in self.traceback.splitlines() if self.traceback]
        return "\n".join(lines)

    def _render_traceback_(self):
        # IPython shows this instead of the local traceback of the call that raised.
        return self.render().splitlines()


class CompositeError(RemoteError):
    """Errors from several engines; ``errors`` holds one :class:`RemoteError` per engine and the
    attributes of the first are this exception's."""

    def __init__(self, errors):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.ename, first.evalue, first.traceback, first.engine_id, first.line)

    def __str__(self):
        return "%d engines failed: %s" % (
            len(self.errors),
            "; ".join(RemoteError.__str__(e) for e in self.errors),
        )

    def render(self):
        from ._display import group_errors

        return group_errors(self.errors, getattr(self, "group", True))


class EngineDied(Exception):
    """An engine died (killed, crashed, exited): ``engine_id``, its ``rank`` in its MPI world and
    ``cause`` (what mpirun said)."""

    def __init__(self, engine_id, cause, rank=None):
        self.engine_id = engine_id
        self.rank = rank
        self.cause = cause
        super().__init__("engine %s died: %s" % (engine_id, cause))


def collect(results):
    """The exception for a list of result dicts with errors, or None."""
    errors = []
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
