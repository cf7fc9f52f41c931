"""The session's history from Python against the session's real 4-rank cluster:
``Client.history()``, ``Client.restart(replay=True)`` and ``Client.replay()``,
``Client.export()`` run under a real ``mpirun``, and the magics ``%pxhistory``, ``%export``,
``%restart --replay`` and ``%replay`` in IPython.

Tests that need a session of their own begin with a restart of the MPI world: a replay runs
the epoch before the last restart again, an export writes the epoch since."""
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import run

import mpx
from mpx.history import History, HistoryEntry

#: Generous bound of every wait (seconds).
BOUND = 120.0
#: The Python the engines embed (numpy and mpi4py), for exported programs.
PYTHON = "/usr/bin/python3"


def new_entries(rc, before):
    """The history's entries after number ``before``."""
    return [e for e in rc.history() if e.n > before]


def last_n(rc):
    history = rc.history()
    return history[-1].n if history else 0


def test_history_shows_cells_in_order_with_targets_and_outcomes(rc):
    dv = rc[:]
    dv.block = True
    before = last_n(rc)
    dv.execute("from mpi4py import MPI\nhist_rank = MPI.COMM_WORLD.rank")
    rc[[1, 3]].execute("hist_odd = hist_rank * 2", block=True)
    with pytest.raises(mpx.RemoteError):  # one engine's error
        dv.execute("if hist_rank == 0:\n    1/0")
    dv["hist_array"] = np.arange(4)
    # A fresh client sets up its apply helper (a cell of its own) and pulls a function's
    # result arrays: neither is in the history, only the call itself.
    other = mpx.Client(rc.connection_file)
    try:
        assert [a.tolist() for a in other[:].apply_sync(lambda: __import__("numpy").ones(2))] == [[1, 1]] * 4
    finally:
        other.close()

    entries = new_entries(rc, before)
    assert [e.kind for e in entries] == ["cell", "cell", "cell", "push", "apply"]
    assert [e.n for e in entries] == list(range(before + 1, before + 6))
    cell, odd, failed, push, call = entries
    assert cell.code == "from mpi4py import MPI\nhist_rank = MPI.COMM_WORLD.rank"
    assert cell.targets == "all" and cell.engines == [0, 1, 2, 3]
    assert cell.outcomes == {0: "ok", 1: "ok", 2: "ok", 3: "ok"} and cell.succeeded
    assert odd.targets == [1, 3] and odd.engines == [1, 3] and odd.outcomes == {1: "ok", 3: "ok"}
    assert failed.outcomes == {0: "ZeroDivisionError", 1: "ok", 2: "ok", 3: "ok"}
    assert failed.done and not failed.succeeded
    assert failed.outcome_text == "0: ZeroDivisionError; 1-3: ok"
    assert (push.name, push.dtype, push.shape, push.source) == ("hist_array", "i64", (4,), None)
    assert call.name == "mpx_apply" and call.text == "apply(...) of a Python function"
    for e in entries:
        assert e.started > 0 and e.completed >= e.started and e.duration is not None
        assert e.epoch == rc.history().epoch

    # As `mpx history` shows it: numbered, targets, outcomes, seconds, the code.
    text = str(History(entries, entries[0].epoch))
    lines = text.splitlines()
    n = before + 1
    assert re.fullmatch(r"\[%d\] all ok \(\d+\.\d\d s\): from mpi4py import MPI" % n, lines[0]), text
    assert lines[1] == "    hist_rank = MPI.COMM_WORLD.rank"
    assert re.fullmatch(r"\[%d\] 1,3 ok \(\d+\.\d\d s\): hist_odd = hist_rank \* 2" % (n + 1), lines[2])
    failed_line = r"\[%d\] all 0: ZeroDivisionError; 1-3: ok \(.*\): if hist_rank == 0:" % (n + 2)
    assert re.fullmatch(failed_line, lines[3]), text
    assert re.search(r"\): %push hist_array \(i64 \[4\]\) from a Python client's memory$", lines[5]), text
    assert lines[6].endswith("): apply(...) of a Python function")

    # -n and --errors, as `mpx history -n N --errors`.
    assert [e.n for e in rc.history(n=2)] == [n + 3, n + 4]
    assert (n + 2) in [e.n for e in rc.history(errors=True)]
    assert all(not e.succeeded for e in rc.history(errors=True))
    assert isinstance(rc.history(), History) and isinstance(rc.history()[0], HistoryEntry)


def test_restart_with_replay_restores_the_session_and_stops_at_a_cell_that_fails_now(rc, tmp_path):
    rc.restart(timeout=BOUND)  # a session of its own
    dv = rc[:]
    dv.block = True
    notes = tmp_path / "notes.txt"
    notes.write_text("read by a cell")
    data = tmp_path / "rows.npy"
    np.save(data, np.arange(8.0))
    before = last_n(rc)
    dv.execute("import math\nfrom mpi4py import MPI")  # +1
    dv.execute("def tenfold(x):\n    return 10 * x")  # +2
    dv.execute("y = tenfold(MPI.COMM_WORLD.rank) + math.floor(2.5)")  # +3
    rc[[1, 3]].execute("z = y + 1", block=True)  # +4
    with pytest.raises(mpx.CompositeError):
        dv.execute("1/0")  # +5: failed then
    dv["mem"] = np.arange(3)  # +6: from memory
    dv.scatter_npy("rows", data)  # +7: a file, replayable
    assert dv.pull("y") == [2, 12, 22, 32]  # +8: a pull, not mentioned
    dv.execute("text = open(%r).read()" % str(notes))  # +9: fails after the file is gone
    dv.execute("after = 1")  # +10: never reached
    n = before + 1
    assert [e.n for e in new_entries(rc, before)] == list(range(n, n + 10))

    notes.unlink()
    done = rc.restart(timeout=BOUND, replay=True)
    assert isinstance(done, mpx.history.Replay)
    assert done.engines == [0, 1, 2, 3]
    assert done.ran == [n, n + 1, n + 2, n + 3, n + 6]
    skipped = dict(done.skipped)
    assert sorted(skipped) == [n + 4, n + 5]
    assert skipped[n + 4].startswith("it failed then (0: ZeroDivisionError")
    assert skipped[n + 5] == "`mem` came from a client's memory, which mpx does not keep"
    assert done.failed is not None and done.failed[0] == n + 8 and "FileNotFoundError" in done.failed[1]
    assert not done.ok
    summary = str(done)
    assert summary.startswith("replayed 5 of the session's entries ([%d]..[%d])\n" % (n, n + 6)), summary
    assert "  not replayed [%d]: `mem` came from a client's memory" % (n + 5) in summary
    stopped = r"  stopped at \[%d\], which failed now: engine \d: FileNotFoundError" % (n + 8)
    assert re.search(stopped, summary), summary

    # Variables, functions and imports are back; what came after the failure is not.
    ar = dv.execute("(tenfold(4), y, math.floor(1.5), MPI.COMM_WORLD.size, rows.tolist())")
    assert [r.execute_result for r in ar.get()] == [
        "(40, %d, 1, 4, %r)" % (10 * r + 2, [2.0 * r, 2.0 * r + 1]) for r in range(4)
    ]
    assert [r.execute_result for r in rc[[1, 3]].execute("z", block=True).get()] == ["13", "33"]
    for name in ("after", "text", "mem"):
        with pytest.raises(mpx.CompositeError) as info:
            dv.execute(name)
        assert {e.ename for e in info.value.errors} == {"NameError"}
    # The client's own helper is set up again for its next call.
    assert dv.apply_sync(lambda: 7) == [7] * 4


def test_replay_after_a_plain_restart(rc):
    rc.restart(timeout=BOUND)
    dv = rc[:]
    dv.block = True
    before = last_n(rc)
    dv.execute("import math\nw = math.factorial(4)")
    dv.push({"py_value": {"k": 1}})  # a push of Python values: not replayed
    assert rc.restart(timeout=BOUND) == [0, 1, 2, 3]
    with pytest.raises(mpx.CompositeError):
        dv.execute("w")
    done = rc.replay(timeout=BOUND)
    assert done.ok and done.ran == [before + 1]
    assert done.skipped == [(before + 2, "a push of Python values, which mpx does not keep")]
    assert [e.n for e in done.session] == [before + 1, before + 2]
    # The replayed cell is part of the new session, in the history after a restart marker.
    history = rc.history()
    assert history[-1].code == "import math\nw = math.factorial(4)" and history[-1].epoch == history.epoch
    assert history[-1].n > before + 2
    assert "--- the MPI world restarted (variables were lost) ---" in str(history)
    assert [r.execute_result for r in dv.execute("w").get()] == ["24"] * 4


def test_ctrl_c_stops_a_replay(rc, tmp_path):
    """Ctrl-C while a replayed cell runs (it waits for a file that is gone now, bounded on the
    engines too): the engines are interrupted and the replay stops there, naming it."""
    go = tmp_path / "go"
    go.write_text("go")
    rc.restart(timeout=BOUND)
    dv = rc[:]
    dv.block = True
    before = last_n(rc)
    dv.execute("import os, time")
    wait = (
        "t0 = time.monotonic()\n"
        "while not os.path.exists(%r) and time.monotonic() - t0 < %d:\n"
        "    time.sleep(0.02)"
    )
    dv.execute(wait % (str(go), BOUND))
    dv.execute("after_wait = 1")
    go.unlink()
    rc.restart(timeout=BOUND)
    started = last_n(rc)

    # Python's own SIGINT handler, whatever the runner inherited (as in test_client).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    stop = threading.Event()

    def ctrl_c():
        # Once the replayed waiting cell is in the history with no outcome yet.
        t0 = time.monotonic()
        while not stop.is_set() and time.monotonic() - t0 < BOUND:
            running = [e for e in rc.history() if e.n > started and e.kind == "cell" and "os.path" in e.code]
            if running and not running[0].outcomes:
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.05)

    sender = threading.Thread(target=ctrl_c, daemon=True)
    try:
        sender.start()
        done = rc.replay(timeout=BOUND)
    finally:
        stop.set()
        sender.join(BOUND)
        signal.signal(signal.SIGINT, previous)
    assert done.ran == [before + 1], done
    assert done.failed is not None and done.failed[0] == before + 2, done
    assert "KeyboardInterrupt" in done.failed[1], done
    with pytest.raises(mpx.CompositeError):
        dv.execute("after_wait")
    assert [r.execute_result for r in dv.execute("os.sep").get()] == ["'/'"] * 4


def _mpirun(script, cwd, outputs):
    """Runs ``script`` under mpirun -n 4; every rank's stdout lines (each rank writes a file
    of its own, so lines of ranks printing at once never mix)."""
    proc = subprocess.run(
        ["mpirun", "-n", "4", "--oversubscribe", "--output-filename", str(outputs), PYTHON, str(script)],
        cwd=str(cwd), capture_output=True, text=True, timeout=BOUND, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(pathlib.Path(outputs).rglob("stdout"))
    assert len(files) == 4, files
    return [line for f in files for line in f.read_text().splitlines()]


def test_export_runs_under_mpirun_and_prints_the_same(rc, tmp_path):
    rc.restart(timeout=BOUND)  # the export is the session since the last restart
    dv = rc[:]
    dv.block = True
    source = tmp_path / "input.npy"
    np.save(source, np.arange(10.0) ** 2)
    dv.execute("import numpy as np\nfrom mpi4py import MPI\nrank = MPI.COMM_WORLD.rank")
    dv.scatter("from_memory", np.arange(8))
    dv.scatter_npy("part", source)
    rc[[1, 3]].execute("extra = 100 * rank", block=True)
    with pytest.raises(mpx.RemoteError):
        dv.execute("broken = 1\nif rank == 2:\n    1/0")
    printing = (
        "total = MPI.COMM_WORLD.allreduce(float(part.sum()))\n"
        "print('rank', rank, 'part', part.tolist(), 'extra', globals().get('extra'), 'total', total)"
    )
    session = dv.execute(printing).stdout
    gathered = dv.gather("part")

    out = tmp_path / "job"
    out.mkdir()
    done = rc.export(out / "session.py", sbatch=True, queue="short", walltime="00:10:00", python=PYTHON)
    assert done.script == str(out / "session.py") and done.entries == 7 and done.size == 4
    assert done.data == [str(out / "session_data" / ("%d_part.npy" % (last_n(rc) - 4)))]
    assert done.jobs == [str(out / "session.sbatch")]
    told = "wrote %s (7 entries; run it with mpirun -n 4 python3 %s)" % (done.script, done.script)
    assert str(done).startswith(told)
    script = (out / "session.py").read_text()
    assert "# from_memory came from a Python client's memory, which mpx does not keep" in script
    assert "from_memory = None  # was i64 [8]" in script
    assert "if _rank in (1, 3,):\n    extra = 100 * rank" in script
    assert re.search(r"# \[\d+\] left out: it failed \(0: ok, 1: ok, 2: ZeroDivisionError, 3: ok\)", script)
    assert "broken = 1" not in script
    assert "mpx_cell.py" not in script and "mpx_apply" not in script  # the client's own cells
    job = (out / "session.sbatch").read_text()
    assert "#SBATCH --ntasks=4" in job and "#SBATCH --partition=short" in job
    assert "#SBATCH --time=00:10:00" in job and "mpirun -n 4 %s session.py" % PYTHON in job

    # Run from elsewhere: the data file is found beside the script; the gather is saved here.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = _mpirun(out / "session.py", run_dir, tmp_path / "rank-output")
    assert sorted(lines) == sorted(s.rstrip("\n") for s in session)
    assert len(lines) == 4
    saved = np.load(run_dir / ("gather-%d-part.npy" % last_n(rc)))
    assert saved.tolist() == gathered.tolist() == (np.arange(10.0) ** 2).tolist()


# -- the magics ------------------------------------------------------------------------------




def test_pxhistory_magic(ip, capsys, rc):
    before = last_n(rc)
    run(ip, capsys, "%px magic_v = 6 * 7")
    run(ip, capsys, "%%px --targets 0,2\nmagic_w = magic_v + 1")
    result, _ = run(ip, capsys, "%px magic_v / 0")
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    _, out = run(ip, capsys, "%pxhistory -n 3")
    lines = out.splitlines()
    assert len(lines) == 3, out
    n = before + 1
    assert re.fullmatch(r"\[%d\] all ok \(\d+\.\d\d s\): magic_v = 6 \* 7" % n, lines[0]), out
    assert re.fullmatch(r"\[%d\] 0,2 ok \(\d+\.\d\d s\): magic_w = magic_v \+ 1" % (n + 1), lines[1]), out
    assert re.fullmatch(r"\[%d\] all ZeroDivisionError \(\d+\.\d\d s\): magic_v / 0" % (n + 2), lines[2]), out
    _, out = run(ip, capsys, "%pxhistory --errors -n 1")
    assert out.splitlines() == [lines[2]]
    # IPython's own %history (this shell's input) is still there.
    assert type(ip.find_line_magic("history").__self__).__name__ == "HistoryMagics"
    result, out = run(ip, capsys, "%pxhistory --bogus")
    assert "unrecognized arguments: --bogus" in out


def test_export_magic(ip, capsys, rc, tmp_path):
    rc.restart(timeout=BOUND)
    run(ip, capsys, "%px from mpi4py import MPI; exported = MPI.COMM_WORLD.rank + 1")
    _, session = run(ip, capsys, "%px print('exported', exported)")
    path = tmp_path / "fromipython.py"
    _, out = run(ip, capsys, "%%export %s --sbatch --pbs --python %s" % (path, PYTHON))
    assert out.splitlines() == [
        "wrote %s (2 entries; run it with mpirun -n 4 python3 %s)" % (path, path),
        "wrote %s (sbatch %s)" % (path.with_suffix(".sbatch"), path.with_suffix(".sbatch")),
        "wrote %s (qsub %s)" % (path.with_suffix(".pbs"), path.with_suffix(".pbs")),
    ]
    assert "mpirun -n 4 %s fromipython.py" % PYTHON in path.with_suffix(".pbs").read_text()
    lines = _mpirun(path, tmp_path, tmp_path / "rank-output")
    assert sorted(lines) == ["exported %d" % r for r in range(1, 5)]
    assert sorted(re.sub(r"^\[stdout:\d\] ", "", line) for line in session.splitlines()) == sorted(lines)


def test_restart_replay_and_replay_magics(ip, capsys, rc):
    run(ip, capsys, "%restart")
    run(ip, capsys, "%px import math")
    run(ip, capsys, "%%px\ndef magic_half(x):\n    return x / 2\nhalf = magic_half(math.pi * 2)")
    _, out = run(ip, capsys, "%restart --replay")
    lines = out.splitlines()
    assert lines[0] == "[px] restarting the MPI world (its variables are lost)..."
    assert re.fullmatch(r"\[px\] the MPI world is ready: 4 engines in \d+\.\d\d s", lines[1]), out
    assert lines[2] == "[px] replaying the session before the restart..."
    assert re.fullmatch(r"replayed 2 of the session's entries \(\[\d+\]\.\.\[\d+\]\)", lines[3]), out
    assert len(lines) == 4, out
    _, out = run(ip, capsys, "%px print(round(half, 4), magic_half(3))")
    assert out.splitlines() == ["[stdout:%d] 3.1416 1.5" % i for i in range(4)]

    # A plain %restart offers the replay; %replay runs the session before it again.
    _, out = run(ip, capsys, "%restart")
    assert out.splitlines()[-1] == "[px] " + mpx.magics.REPLAY_NOTE
    result, out = run(ip, capsys, "%px half")
    assert isinstance(result.error_in_exec, mpx.CompositeError)
    _, out = run(ip, capsys, "%replay")
    assert out.splitlines()[0] == "[px] replaying the session before the restart..."
    assert "replayed 3 of the session's entries" in out, out  # the replay was part of that session
    _, out = run(ip, capsys, "%px print(half)")
    assert out.splitlines() == ["[stdout:%d] 3.141592653589793" % i for i in range(4)]
