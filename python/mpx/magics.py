"""The IPython extension (``%load_ext mpx``): ``%px``, ``%%px``, ``%autopx``, ``%pxresult``,
``%pxconfig``, ``%where``, ``%restart``, and the session's history: ``%pxhistory``,
``%replay`` and ``%export``.

Options of ``%px``/``%%px`` (and defaults set with ``%pxconfig``): ``--targets 0,2`` (also
``1-3``, ``::2``, ``all``), ``--block``/``--noblock``, ``--stream``/``--nostream`` (each
engine's output line by line as it arrives, ``[stdout:0] ...``, and each engine's value or
error as soon as it is done: the default in Jupyter, as in ipyparallel, unless outputs are
grouped), ``--group-outputs`` (identical output of several engines once, with the rank list:
``[stdout:0-3] ...``). Without streaming, an engine done while others still run is shown at
once (after the first second, so a quick cell is shown whole), its traceback too. What the
controller says of ranks stuck in MPI calls (``[px] ranks 1-3 are blocked in Barrier ...``) is
shown as it arrives. A cell still running after 2 s shows its progress: on a terminal a line
rewritten in place, in Jupyter one display updated in place (a widget when ipywidgets is
installed).
Ctrl-C interrupts the engines: a rank inside an MPI collective makes the MPI world restart
(same engine ids, variables lost), which %px says; ``%restart`` restarts it on purpose.

The controller keeps the session's history (every cell, push, pull... with its targets and each
engine's outcome): ``%pxhistory [-n N] [--errors]`` shows it as ``mpx history`` does (named so
as not to hide IPython's own ``%history`` of this shell's input); ``%replay`` (or ``%restart
--replay``) runs the session before the last restart again, and ``%export FILE.py [--sbatch]
[--pbs]`` writes the session since then as a program for ``mpirun``.

The client is ``mpx.Client()`` (the only cluster running) unless ``%pxconfig --cluster-id ID``
or ``Client.activate()`` chose another.
"""
from __future__ import annotations

import argparse
import shlex
import time
from typing import TYPE_CHECKING, NoReturn, Optional, Sequence, Union

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import _display
from ._progress import ProgressLine, in_kernel
from .error import RemoteError, world_restarted

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .client import Client
    from .view import View

#: Seconds a blocking %px waits silently before it shows a progress line.
PROGRESS_AFTER = 2.0
#: Seconds after which an engine that is done is shown while others still run (before, a
#: quick cell is shown whole, in engine order). Counted from the first engine's answer, not
#: from the submission: a quick cell that waited behind other work is still quick.
EARLY_AFTER = 1.0
#: Seconds a streaming %px holds the engines' output at first (a quick cell is shown whole, in
#: engine order), as the mpx command does; then it shows what arrived every :data:`TICK`.
#: Counted from the first output or answer of an engine, as :data:`EARLY_AFTER`.
STREAM_AFTER = 0.5
#: Seconds between two looks of %px at its request (output, engines done, stuck ranks).
TICK = 0.1
#: Seconds %px waits for the engines after Ctrl-C sent them KeyboardInterrupt.
INTERRUPTED_WAIT = 30.0
#: What %px says when a cell's MPI world is being restarted.
RESTART_NOTE = (
    "the MPI world is restarting with the same engine ids; its variables are lost. "
    "The next cell waits until it is ready."
)
#: What %px and %restart offer once the MPI world restarted.
REPLAY_NOTE = "%replay runs the session before the restart again (%pxhistory shows it)."

_active: dict[str, Optional[Client]] = {"client": None}


def activate(client: Client) -> None:
    """Makes ``client`` the one the magics use."""
    _active["client"] = client


def _stream(stream: Optional[bool], group: bool) -> bool:
    """Whether %px streams the engines' output: as asked, else in Jupyter (ipyparallel's
    default there) unless outputs are grouped (which needs each engine's whole output)."""
    return (in_kernel() and not group) if stream is None else stream


def parse_targets(spec: Optional[str], ids: list[int]) -> Optional[list[int]]:
    """Engine ids from ``all``, ``0,2``, ``1-3`` or a slice ``::2``."""
    if spec is None or spec == "all":
        return None
    if ":" in spec:
        parts = [int(p) if p else None for p in spec.split(":")]
        return ids[slice(*parts)]
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part.strip("-"):
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            n = int(part)
            out.append(ids[n] if n < 0 else n)
    return out


def split_options(line: str) -> tuple[dict[str, Union[str, bool]], str]:
    """(options dict, rest of the line): leading ``--x`` options, the rest is code."""
    opts: dict[str, Union[str, bool]] = {}
    rest = line.lstrip()
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name in ("targets", "cluster-id"):
            if not eq:
                value, _, after = after.lstrip().partition(" ")
            opts[name] = value
        elif name in ("block", "noblock", "stream", "group-outputs", "no-group-outputs", "nostream"):
            opts[name] = True
        else:
            raise ValueError("unknown %%px option --%s" % name)
        rest = after.lstrip()
    return opts, rest


class _Parser(argparse.ArgumentParser):
    """argparse for a magic's line: errors are IPython's UsageError, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError("%%%s: %s" % (self.prog, message))

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        raise UsageError(message or self.format_usage())

    def parse_line(self, line: str) -> argparse.Namespace:
        return self.parse_args(shlex.split(line))


def _history_parser() -> _Parser:
    p = _Parser(prog="pxhistory", add_help=False)
    p.add_argument("-n", type=int, default=None)
    p.add_argument("--errors", action="store_true")
    return p


def _export_parser() -> _Parser:
    p = _Parser(prog="export", add_help=False)
    p.add_argument("file")
    p.add_argument("--sbatch", action="store_true")
    p.add_argument("--pbs", action="store_true")
    p.add_argument("--queue", default=None)
    p.add_argument("--walltime", default=None)
    p.add_argument("--python", default="python3")
    return p


def _restart_parser() -> _Parser:
    p = _Parser(prog="restart", add_help=False)
    p.add_argument("--replay", action="store_true")
    p.add_argument("timeout", nargs="?", type=float, default=None)
    return p


@magics_class
class ParallelMagics(Magics):
    """The parallel magics; settings from ``%pxconfig`` persist."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.targets: Optional[str] = None
        self.block = True
        # None: stream in Jupyter unless outputs are grouped (see _stream).
        self.stream: Optional[bool] = None
        self.group = False
        self.cluster_id: Optional[str] = None
        self.last: Optional[AsyncResult] = None
        self._autopx_on = False

    # -- settings ----------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        """The client in use (connected at first use)."""
        client = _active["client"]
        if client is None:
            from .client import Client

            client = _active["client"] = Client(cluster_id=self.cluster_id)
        return client

    def _settings(
        self, opts: dict[str, Union[str, bool]]
    ) -> tuple[bool, Optional[bool], bool, Optional[str]]:
        """(block, stream (None: as :func:`_stream` decides), group, targets) from the options
        of a line and the defaults."""
        block = self.block
        if opts.get("block"):
            block = True
        if opts.get("noblock"):
            block = False
        group = bool((self.group or opts.get("group-outputs", False)) and not opts.get("no-group-outputs"))
        stream = self.stream
        if opts.get("stream"):
            stream = True
        if opts.get("nostream"):
            stream = False
        targets = opts.get("targets", self.targets)
        return block, stream, group, None if targets is None else str(targets)

    @line_magic
    def pxconfig(self, line: str) -> None:
        """%pxconfig [--targets T] [--block|--noblock] [--stream|--nostream]
        [--group-outputs|--no-group-outputs] [--cluster-id ID]: defaults for %px."""
        opts, _ = split_options(line)
        self.block, self.stream, self.group, self.targets = self._settings(opts)
        if "cluster-id" in opts:
            self.cluster_id = str(opts["cluster-id"])
            _active["client"] = None

    # -- running -----------------------------------------------------------------------------
    def _view(self, targets: Optional[str]) -> View:
        client = self.client
        ids = parse_targets(targets, client.ids)
        return client[:] if ids is None else client[list(ids)]

    def _execute(self, code: str, opts: dict[str, Union[str, bool]]) -> Optional[AsyncResult]:
        block, stream, group, targets = self._settings(opts)
        view = self._view(targets)
        ar = view.execute(code, block=False)
        self.last = ar
        if not block:
            return ar
        self._show(ar, _stream(stream, group), group)
        return None

    def _show(self, ar: AsyncResult, stream: bool, group: bool) -> None:
        """Waits for ``ar`` showing the engines' output: with ``stream``, each engine's lines
        as they arrive and its value or traceback as soon as it is done; else each engine's
        whole output (and traceback) as soon as it is done while others still run, after
        :data:`EARLY_AFTER`. Also what the controller says of ranks stuck in MPI calls, and the
        progress after :data:`PROGRESS_AFTER`; then the rest, and raises the engines' errors
        (those shown already by their headline only)."""
        start = time.monotonic()
        # When the first engine printed or answered: the cell is running (it may have waited
        # behind other clients' work before), and the hold of a quick cell starts there.
        first: Optional[float] = None
        shown: list[int] = []
        told: set[str] = set()
        line = ProgressLine()
        live = _display.LiveLines() if stream else None
        if stream:
            ar._stream_output()
        progress = False
        try:
            while True:
                if live is None:
                    finished = ar.wait(TICK)
                else:
                    # What arrives during a tick is shown together (a tick ends early when done).
                    ar._read_output(TICK)
                    finished = ar.wait(0)
                if finished:
                    break
                now = time.monotonic()
                elapsed = now - start
                done = ar.ready_engines()
                if first is None and (done or (live is not None and ar._output_so_far())):
                    first = now
                held = 0.0 if first is None else now - first
                # A quick cell's output is held, to be shown whole in engine order at the end;
                # ranks stuck in an MPI call end the hold (what was held comes before the note).
                unseen_stuck = any(message not in told for message in ar.stuck)
                holding = held < (STREAM_AFTER if stream else EARLY_AFTER) and not unseen_stuck
                fresh = [] if holding else [e for e in done if e not in shown]
                texts = [] if live is None or holding else live.lines(ar._output_so_far(), set(done))
                if fresh:
                    results = [r for r in ar.results if r["engine_id"] in fresh]
                    texts += _display.render(_display.without_output(results) if stream else results, group)
                    shown += fresh
                if texts:
                    line.clear()
                    print("\n".join(texts), flush=True)
                for message in ar.stuck:
                    if message not in told:
                        told.add(message)
                        line.note("[px] " + message)
                if elapsed > PROGRESS_AFTER:
                    progress = True
                    total = len(ar)
                    text = "[px] %d/%s engines done, %.1f s" % (len(done), total or "?", elapsed)
                    line.update(text, len(done), total)
        except KeyboardInterrupt:
            if not ar._interrupted:
                ar.interrupt()  # Ctrl-C came between two waits, which would have told the engines
            line.close()
            print("[px] interrupted: the engines were sent KeyboardInterrupt (ranks in MPI calls are freed)")
            ar.wait(INTERRUPTED_WAIT)
        if progress:
            line.update("[px] done in %.1f s" % (time.monotonic() - start), len(ar.ready_engines()), len(ar))
        line.close()
        texts = []
        if live is not None:
            so_far = ar._output_so_far()
            texts = live.lines(so_far, {engine_id for engine_id, _ in so_far})
        results = [r for r in ar.results if r["engine_id"] not in shown]
        if stream:
            results = _display.without_output(results)
        texts += _display.render(results, group=group, errors=False)
        if texts:
            print("\n".join(texts), flush=True)
        if world_restarted(ar.results):
            print("[px] " + RESTART_NOTE)
            print("[px] " + REPLAY_NOTE)
        self._raise_errors(ar, group, shown)

    def _raise_errors(self, ar: AsyncResult, group: bool, shown: Sequence[int] = ()) -> None:
        """Raises ``ar``'s error (IPython shows it), if done with one; ``shown``: engines whose
        traceback was shown already."""
        if not ar.ready():
            return
        error = ar.exception(0)
        if error is not None:
            if isinstance(error, RemoteError):
                error.group = group
                error.shown = frozenset(shown)
            raise error

    @line_magic
    def px(self, line: str) -> Optional[AsyncResult]:
        """%px [options] CODE: runs CODE on the engines."""
        opts, code = split_options(line)
        return self._execute(code, opts)

    @cell_magic("px")  # type: ignore[arg-type]  # IPython types the name-taking form badly
    def cell_px(self, line: str, cell: str) -> Optional[AsyncResult]:
        """%%px [options]: runs the cell on the engines."""
        opts, rest = split_options(line)
        if rest.strip():
            raise ValueError("unexpected text after the %%%%px options: %r" % rest)
        return self._execute(cell, opts)

    @line_magic
    def pxresult(self, line: str) -> None:
        """%pxresult: waits for the last %px (e.g. one run with --noblock) and shows its output."""
        if self.last is None:
            print("no %px result yet")
            return
        opts, _ = split_options(line)
        _, stream, group, _ = self._settings(opts)
        self._show(self.last, _stream(stream, group), group)

    @line_magic
    def restart(self, line: str) -> None:
        """%restart [--replay] [TIMEOUT]: restarts the cluster's MPI world (same engine ids; the
        engines' variables, imports and functions are lost); returns when the new world is
        ready (waiting up to TIMEOUT seconds, default 120). With --replay, the session before
        the restart then runs again (as %replay)."""
        from .client import RESTART_TIMEOUT

        args = _restart_parser().parse_line(line)
        timeout = RESTART_TIMEOUT if args.timeout is None else args.timeout
        print("[px] restarting the MPI world (its variables are lost)...", flush=True)
        t0 = time.monotonic()
        ids = self.client.restart(timeout=timeout, reason="restarted by %restart")
        print("[px] the MPI world is ready: %d engines in %.2f s" % (len(ids), time.monotonic() - t0))
        if args.replay:
            self._replay()
        else:
            print("[px] " + REPLAY_NOTE)

    @line_magic
    def replay(self, line: str) -> None:
        """%replay: runs the session before the last restart of the MPI world again: its cells
        that succeeded then, in order, on their targets (and pushes of unchanged .npy files);
        it stops at the first that fails now, and says what it did not replay and why. Ctrl-C
        stops it."""
        if line.strip():
            raise UsageError("%replay takes no arguments")
        self._replay()

    def _replay(self) -> None:
        print("[px] replaying the session before the restart...", flush=True)
        print(self.client.replay().summary(), end="")

    @line_magic
    def pxhistory(self, line: str) -> None:
        """%pxhistory [-n N] [--errors]: the session's history on the engines, numbered like
        IPython's: each cell, push, pull... with its targets, each engine's outcome at a glance
        and its time (the last N entries; only those that failed somewhere)."""
        args = _history_parser().parse_line(line)
        text = self.client.history(n=args.n, errors=args.errors).render()
        print(text or "the session's history is empty", end="" if text else "\n")

    @line_magic
    def export(self, line: str) -> None:
        """%export FILE.py [--sbatch] [--pbs] [--queue Q] [--walltime T] [--python P]: writes
        the session since the last restart as a plain mpi4py program that ``mpirun -n N python3
        FILE.py`` runs without mpx (and a Slurm or PBS job script that runs it)."""
        args = _export_parser().parse_line(line)
        done = self.client.export(
            args.file,
            sbatch=args.sbatch,
            pbs=args.pbs,
            queue=args.queue,
            walltime=args.walltime,
            python=args.python,
        )
        print(done)

    @line_magic
    def where(self, line: str) -> None:
        """%where: what every engine is doing right now (idle, a cell's line, an MPI call)."""
        for eid, state in self.client.where():
            if state is None:
                print("[%s] no answer" % eid)
                continue
            what = state["activity"]
            if state.get("cell") is not None:
                what += " cell %s" % state["cell"]
            if state.get("call"):
                what += " %s on %s" % (state["call"], state.get("comm") or "?")
            if state.get("detail"):
                what += " at %s" % state["detail"]
            print("[%s] %s for %.1f s" % (eid, what, state["seconds"]))

    @line_magic
    def autopx(self, line: str) -> None:
        """%autopx: toggles sending every cell to the engines (as %%px)."""
        assert self.shell is not None
        transformers = self.shell.input_transformers_cleanup
        if self._autopx_on:
            transformers[:] = [t for t in transformers if t is not _autopx_transform]
            self._autopx_on = False
            print("%autopx disabled")
        else:
            transformers.append(_autopx_transform)
            self._autopx_on = True
            print("%autopx enabled")


def _autopx_transform(lines: list[str]) -> list[str]:
    """While %autopx is on: every cell runs as ``%%px``, except ``%autopx`` itself."""
    first = lines[0].strip() if lines else ""
    local = (
        "%autopx", "%%px", "%pxconfig", "%where", "%pxresult", "%restart", "%replay", "%pxhistory", "%export",
    )
    if not lines or first.startswith(local):
        return lines
    return ["%%px\n"] + lines


def load(ipython: InteractiveShell) -> None:
    """Registers the magics with ``ipython``."""
    ipython.register_magics(ParallelMagics)
