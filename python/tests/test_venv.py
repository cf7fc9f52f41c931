"""Engines in the user's own environment (issue 23): run by scripts/test.sh's second pass, in a
plain venv without system packages (scripts/plain-venv.sh) whose `mpx` command starts engines as
`python -m mpx.engine` of that venv. The rest of the suite runs in that pass too."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mpx

pytestmark = pytest.mark.skipif(
    os.environ.get("MPX_TEST_ENGINES") != "python",
    reason="the in-interpreter engines' pass of scripts/test.sh (MPX_TEST_ENGINES=python)",
)


def test_this_pass_runs_a_plain_venv_and_its_mpx_command():
    # The premise of the other tests: no system site-packages, and MPX_BIN is this venv's script.
    assert sys.prefix != sys.base_prefix
    assert not any(p.startswith("/usr/lib/python3/dist-packages") for p in sys.path)
    assert os.environ["MPX_BIN"] == os.path.join(sys.prefix, "bin", "mpx")
    assert not np.__file__.startswith("/usr/lib/")


def test_engines_run_this_venv_with_its_numpy(dv):
    dv.execute("import sys, numpy, os; here = (sys.prefix, numpy.__version__, numpy.__file__, os.getpid())")
    seen = dv.pull("here")
    assert len(seen) == 4
    for prefix, version, numpy_file, _ in seen:
        assert prefix == sys.prefix
        assert version == np.__version__
        assert numpy_file.startswith(sys.prefix)
    # Each engine is a python of this venv running mpx.engine.
    for _, _, _, pid in seen:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().decode().split("\0")
        assert os.path.dirname(cmdline[0]) == os.path.join(sys.prefix, "bin")
        assert cmdline[1:3] == ["-m", "mpx.engine"]


def test_engines_import_a_package_only_this_venv_has(dv):
    system = subprocess.run(["/usr/bin/python3", "-c", "import mpx_venv_only"], capture_output=True)
    assert system.returncode != 0, "the package must not be installed system-wide"
    dv.execute("import mpx_venv_only; where_from = mpx_venv_only.PREFIX")
    assert dv.pull("where_from") == [sys.prefix] * 4


def test_seed_psum_session(dv):
    dv.execute(
        "from mpi4py import MPI\nimport numpy as np\n"
        "def psum(a):\n"
        "    locsum = np.sum(a)\n"
        "    rcvBuf = np.array(0.0, 'd')\n"
        "    MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)\n"
        "    return rcvBuf\n"
    )
    dv.scatter("a", np.arange(16, dtype=float))
    dv.execute("totalsum = psum(a)")
    assert [float(t) for t in dv.pull("totalsum")] == [120.0] * 4


def test_apply_sends_a_lambda_and_a_closure(dv):
    assert dv.apply_sync(lambda k: k * 2, 21) == [42] * 4
    offset = 100

    def shifted(x):
        return x + offset

    assert dv.apply_sync(shifted, 1) == [101] * 4


def test_where_names_an_mpi_call_and_ctrl_c_frees_it(rc):
    import time

    view = rc[:]
    # Rank 0 waits in a receive nobody sends: named by `where`, freed by an interrupt.
    ar = view.execute(
        "from mpi4py import MPI\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    MPI.COMM_WORLD.recv(source=1, tag=77)\n",
        block=False,
    )
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = str(rc.where())
        if "Mprobe" in text or "Recv" in text:
            break
        time.sleep(0.2)
    assert "Mprobe" in text or "Recv" in text, text
    rc.interrupt()
    with pytest.raises(mpx.RemoteError) as info:
        ar.get(timeout=30)
    assert "interrupted" in str(info.value).lower() or "KeyboardInterrupt" in str(info.value)
    # The world goes on.
    assert rc[:].apply_sync(lambda: 7) == [7] * 4
