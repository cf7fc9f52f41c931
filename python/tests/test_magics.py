"""The IPython extension in a real IPython: an in-process InteractiveShell (IPython's own
machinery: transformers, magics, tracebacks) and a scripted `ipython` session."""
import os
import re
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

import mpx
from mpx import magics


@pytest.fixture
def ip(rc):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mpx")
    rc.activate()
    shell.run_line_magic("pxconfig", "--targets all --block --no-group-outputs --nostream")
    return shell


def run(ip, capsys, cell):
    result = ip.run_cell(cell)
    out = capsys.readouterr()
    return result, out.out + out.err


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
