"""The IPython extension in a real IPython: an in-process InteractiveShell (IPython's own
machinery: transformers, magics, tracebacks) and a scripted `ipython` session."""
import os
import re
import signal
import subprocess
import sys
import threading
import time


import mpx
from conftest import names_ranks, run
from mpx import magics




def test_px_line_and_cell(ip, capsys):
    _, out = run(ip, capsys, "%px from mpi4py import MPI")
    assert out == ""
    _, out = run(ip, capsys, "%px print('rank', MPI.COMM_WORLD.rank)")
    assert out.splitlines() == ["[stdout:%d] rank %d" % (i, i) for i in range(4)]
    _, out = run(ip, capsys, "%%px --targets 1,3\nv = MPI.COMM_WORLD.rank * 2\nv")
    lines = out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"Out\[1:\d+\]: 2", lines[0]) and re.fullmatch(r"Out\[3:\d+\]: 6", lines[1])


def test_group_outputs_shows_identical_output_once(ip, capsys):
    _, out = run(ip, capsys, "%px --group-outputs print('same')")
    assert out.splitlines() == ["[stdout:0-3] same"]
    _, out = run(ip, capsys, "%%px --group-outputs\nprint('r', MPI.COMM_WORLD.rank % 2)")
    assert out.splitlines() == ["[stdout:0,2] r 0", "[stdout:1,3] r 1"]


def test_px_errors_show_remote_tracebacks(ip, capsys):
    result, out = run(ip, capsys, "%%px --targets 0-1\ndef g():\n    raise KeyError('missing')\ng()")
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    assert "[0:error] KeyError: 'missing'" in out
    assert "[1:error] KeyError: 'missing'" in out
    assert "in g" in out
    result, out = run(ip, capsys, "%%px --targets 0-1 --group-outputs\ng()")
    assert "[0-1:error] KeyError: 'missing'" in out


def test_stream_prints_each_engine_as_it_finishes(ip, capsys):
    code = "%px --stream import time; time.sleep(0.4 * MPI.COMM_WORLD.rank); print('done', MPI.COMM_WORLD.rank)"
    _, out = run(ip, capsys, code)
    assert out.splitlines() == ["[stdout:%d] done %d" % (i, i) for i in range(4)]


def test_a_quick_cell_queued_behind_another_prints_in_engine_order(ip, capsys, monkeypatch):
    """A quick cell that waits behind another request is still shown whole, in engine order:
    the hold counts from the first engine's output, not from the submission. (The engines
    finish 0.36 s apart in reverse order; the queue delay (3 s) is longer than the hold
    (1.5 s here, a margin of over a second each way), so a hold counted from the submission
    would print them in arrival order.)"""
    monkeypatch.setattr(magics, "STREAM_AFTER", 1.5)
    px = ip.magics_manager.registry["ParallelMagics"]
    blocker = px._view(None).execute("import time; time.sleep(3)", block=False)
    code = (
        "%px --stream import time; from mpi4py import MPI; "
        "time.sleep(0.12 * (3 - MPI.COMM_WORLD.rank)); print('r', MPI.COMM_WORLD.rank)"
    )
    _, out = run(ip, capsys, code)
    blocker.get(60)
    assert _engine_lines(out) == ["[stdout:%d] r %d" % (i, i) for i in range(4)], out
    # It waited over 2 s: its progress was shown meanwhile.
    assert "[px] done in" in out, out


def test_stream_shows_each_engine_line_while_the_cell_runs(ip, monkeypatch):
    """--stream (the default in Jupyter, where no option says otherwise): each engine's
    lines as they arrive, not at the end; the request's results keep the output."""
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    px = ip.magics_manager.registry["ParallelMagics"]
    seen = {}

    def watch():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and "[stdout:3] first" not in recorder.text():
            time.sleep(0.02)
        seen["running"] = px.last is not None and not px.last.ready()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ip.run_cell("%px --stream import time; print('first'); time.sleep(1.5); print('last')")
    watcher.join(60)
    monkeypatch.undo()
    lines = recorder.text().splitlines()
    # Lines that arrive together are shown in engine order; later ones as they come.
    assert sorted(lines[:4]) == ["[stdout:%d] first" % i for i in range(4)], lines
    assert sorted(lines[4:]) == ["[stdout:%d] last" % i for i in range(4)], lines
    assert seen == {"running": True}
    assert px.last.stdout == ["first\nlast\n"] * 4
    # Without an option, a terminal's %px does not stream (Jupyter's does, unless grouped).
    assert magics._stream(None, False) is False and magics._stream(True, True) is True


def test_noblock_and_pxresult(ip, capsys):
    result, out = run(ip, capsys, "%px --noblock import time; time.sleep(0.3); print('late')")
    assert isinstance(result.result, mpx.AsyncResult)
    _, out = run(ip, capsys, "%pxresult")
    assert out.splitlines() == ["[stdout:%d] late" % i for i in range(4)]


def test_autopx(ip, capsys):
    _, out = run(ip, capsys, "%autopx")
    assert "enabled" in out
    _, out = run(ip, capsys, "auto_value = 5\nprint(auto_value + MPI.COMM_WORLD.rank)")
    assert out.splitlines() == ["[stdout:%d] %d" % (i, 5 + i) for i in range(4)]
    _, out = run(ip, capsys, "%autopx")
    assert "disabled" in out
    assert "auto_value" not in ip.user_ns
    result, _ = run(ip, capsys, "local_only = 1")
    assert ip.user_ns["local_only"] == 1


def test_where_and_progress_line(ip, capsys, monkeypatch):
    _, out = run(ip, capsys, "%where")
    assert [line.split("]")[0] for line in out.splitlines()] == ["[0", "[1", "[2", "[3"]
    monkeypatch.setattr(magics, "PROGRESS_AFTER", 0.2)
    _, out = run(ip, capsys, "%px import time; time.sleep(0.8)")
    assert "[px] " in out and "engines done" in out


def test_scripted_ipython_session(cluster, tmp_path):
    script = "\n".join([
        "%load_ext mpx",
        "%pxconfig --cluster-id " + cluster.cluster_id,
        "%px import numpy as np",
        "%px x = np.arange(4).sum()",
        "%px print(x)",
        "%px --group-outputs print(x)",
        "exit",
    ]) + "\n"
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor", "--quick"],
        input=script, capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if "stdout:" in l]
    lines = [l[l.index("[stdout:"):] for l in lines]
    assert lines[:4] == ["[stdout:%d] 6" % i for i in range(4)]
    assert "[stdout:0-3] 6" in lines


class _Recorder:
    """A stream that keeps what was written, readable from another thread while it is written."""

    def __init__(self):
        self._lock = threading.Lock()
        self._parts = []

    def write(self, text):
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def text(self):
        with self._lock:
            return "".join(self._parts)


STUCK_CELL = "%%px\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 0: 1/0\nc.Barrier()"


def test_px_shows_a_failed_engine_while_the_others_are_stuck(ip, monkeypatch):
    """%px shows engine 0's traceback and the stuck message while ranks 1-3 sit in the Barrier
    (which they cannot leave before the interrupt below, sent only once both were seen); after
    the interrupt it says the MPI world restarted, and the next cell runs on all 4 engines."""
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    monkeypatch.setattr(sys, "stderr", recorder)
    px = ip.magics_manager.registry["ParallelMagics"]
    seen = {}

    def watch():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            text = recorder.text()
            traceback = "[0:error] ZeroDivisionError: division by zero" in text and "<cell-" in text
            stuck = re.search(r"\[px\] .*blocked in Barrier.* waiting for rank 0, which left the cell with "
                              r"ZeroDivisionError", text)
            if traceback and "traceback" not in seen:
                seen["traceback"] = px.last is not None and not px.last.ready()
            if traceback and stuck:
                seen["stuck"] = True
                break
            time.sleep(0.02)
        ip_client = px.client
        ip_client.interrupt([1, 2, 3])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = ip.run_cell(STUCK_CELL)
    watcher.join(60)
    text = recorder.text()
    assert seen == {"traceback": True, "stuck": True}, text
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    # The traceback is shown once (the error raised at the end refers to it).
    assert text.count("Traceback (most recent call last):") == 1, text
    assert text.count("if c.rank == 0: 1/0") == 1, text
    assert "[0:error] ZeroDivisionError: division by zero (traceback above)" in text
    stuck = [line for line in text.splitlines() if line.startswith("[px] ") and "blocked in Barrier" in line]
    assert len(stuck) == 1, text
    assert names_ranks(stuck[0], [1, 2, 3]), stuck[0]
    assert "[1:error] WorldDown: " in text and "being restarted (variables are lost)" in text
    assert "[px] the MPI world is restarting with the same engine ids; its variables are lost" in text
    assert "[px] " + magics.REPLAY_NOTE in text  # the session can be run again
    # The early lines come before the end of the request: the restart note is printed last.
    assert text.index("[0:error] ZeroDivisionError") < text.index("[px] the MPI world is restarting")

    monkeypatch.undo()
    out = _run_out(ip, "%px from mpi4py import MPI; print(MPI.COMM_WORLD.allreduce(1))")
    assert _engine_lines(out) == ["[stdout:%d] 4" % i for i in range(4)], out


def _engine_lines(out):
    """The engines' lines of a %px output, without its own ``[px]`` lines: a cell that waits
    for a restarted world (starting 4 Python engines: about 2 s here, more on a busy machine)
    may pass the 2 s after which %px shows its progress line."""
    return [line for line in out.splitlines() if line.strip() and not line.startswith("[px] ")]


def _run_out(ip, cell):
    recorder = _Recorder()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = recorder
    try:
        ip.run_cell(cell)
    finally:
        sys.stdout, sys.stderr = saved
    return recorder.text()


def test_restart_magic(ip, capsys):
    run(ip, capsys, "%px restart_probe = 1")
    _, out = run(ip, capsys, "%restart")
    assert "[px] restarting the MPI world (its variables are lost)..." in out
    assert re.search(r"\[px\] the MPI world is ready: 4 engines in \d+\.\d\d s", out), out
    assert out.splitlines()[-1] == "[px] " + magics.REPLAY_NOTE
    assert "Out[" not in out
    result, out = run(ip, capsys, "%px restart_probe")
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    assert "[0:error] NameError: name 'restart_probe' is not defined" in out
    _, out = run(ip, capsys, "%px print('again')")
    assert out.splitlines() == ["[stdout:%d] again" % i for i in range(4)]


def test_ctrl_c_in_px_frees_the_stuck_ranks(ip, capsys):
    """Ctrl-C while %px waits for the stuck cell (sent once the stuck message was shown):
    the ranks in the Barrier are freed, the world restarts, %px says so and ends."""
    # As in test_client: Python's own SIGINT handler, whatever the runner inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    px = ip.magics_manager.registry["ParallelMagics"]
    main = threading.main_thread().ident
    stop = threading.Event()

    def ctrl_c():
        t0 = time.monotonic()
        while not stop.is_set() and time.monotonic() - t0 < 60:
            ar = px.last
            if ar is not None and not ar.ready() and ar.stuck:
                time.sleep(0.3)  # %px polls every 0.1 s: the message is on screen by now
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.02)

    sender = threading.Thread(target=ctrl_c, daemon=True)
    try:
        px.last = None
        sender.start()
        result, out = run(ip, capsys, STUCK_CELL)
    finally:
        stop.set()
        sender.join(60)
        signal.signal(signal.SIGINT, previous)
    assert "[px] interrupted: the engines were sent KeyboardInterrupt" in out, out
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    assert {e.ename for e in result.error_in_exec.errors} == {"ZeroDivisionError", "WorldDown"}
    assert "[px] the MPI world is restarting with the same engine ids; its variables are lost" in out
    assert "[px] " + magics.REPLAY_NOTE in out
    _, out = run(ip, capsys, "%px from mpi4py import MPI; print(MPI.COMM_WORLD.allreduce(1))")
    assert _engine_lines(out) == ["[stdout:%d] 4" % i for i in range(4)], out
