"""Fixtures: one real 4-rank cluster for the session (engines run in a scratch directory), with
its own MPX_HOME; the `mpx` binary from the workspace's target/ unless MPX_BIN says otherwise."""
import os
import pathlib
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
os.environ["MPX_HOME"] = tempfile.mkdtemp(prefix="mpx-pytest-home-")
if "MPX_BIN" not in os.environ:
    for profile in ("debug", "release"):
        exe = ROOT / "target" / profile / "mpx"
        if exe.is_file():
            os.environ["MPX_BIN"] = str(exe)
            break

import mpx  # noqa: E402  (after MPX_HOME is set)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A running 4-engine Python cluster, stopped at the end of the session."""
    workdir = tmp_path_factory.mktemp("engines")
    (workdir / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    c = mpx.Cluster(n=4, cwd=str(workdir))
    c.start_and_connect()
    yield c
    c.stop()


@pytest.fixture
def rc(cluster):
    """The session cluster's client."""
    return cluster.client


@pytest.fixture
def dv(rc):
    """A blocking view of all engines."""
    v = rc[:]
    v.block = True
    return v


@pytest.fixture
def ip(rc):
    """An IPython shell with the mpx magics, blocking on every engine, output not grouped."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mpx")
    rc.activate()
    shell.run_line_magic("pxconfig", "--targets all --block --no-group-outputs --nostream")
    return shell


def run(ip, capsys, cell):
    """Runs `cell` in the shell: its result and what it printed (stdout then stderr)."""
    result = ip.run_cell(cell)
    out = capsys.readouterr()
    return result, out.out + out.err


def names_ranks(message, ranks):
    """Whether a stuck message names exactly these ranks as blocked: ``ranks 1-3 are blocked
    ...``, or in parts when they are at different places (engines number their cells
    separately, so ``<cell-N>`` can differ): ``ranks 1-2 are blocked ... and rank 3 is ...``."""
    import re

    named = set()
    for spec in re.findall(r"ranks? ([\d, -]+?) (?:is|are) blocked", message.split(" waiting for ")[0]):
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            named.update(range(int(lo), int(hi or lo) + 1))
    return named == set(ranks)


def pytest_sessionfinish(session, exitstatus):
    """Stops any cluster a failed test left running under this session's MPX_HOME (by the pids
    in its connection files, through `mpx cluster stop`), then removes MPX_HOME."""
    import shutil
    import subprocess

    home = os.environ["MPX_HOME"]
    if any(name.endswith(".json") for name in os.listdir(home)):
        subprocess.run([mpx.find_mpx(), "cluster", "stop", "--all"], capture_output=True, timeout=120)
    shutil.rmtree(home, ignore_errors=True)
