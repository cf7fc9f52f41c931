""":class:`Cluster`: start and stop an mpx cluster from Python (as ``ipp.Cluster``)."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from .client import Client

#: A path as the standard library takes it.
StrPath = Union[str, os.PathLike[str]]

_counter = itertools.count(1)


def find_mpx(explicit: Optional[StrPath] = None) -> str:
    """The ``mpx`` executable: ``explicit``, ``$MPX_BIN``, ``mpx`` on PATH, or a
    ``target/{release,debug}/mpx`` of the checkout this package or the current directory is in."""
    for candidate in (explicit, os.environ.get("MPX_BIN")):
        if candidate:
            return str(candidate)
    found = shutil.which("mpx")
    if found:
        return found
    for base in [Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents]:
        for profile in ("release", "debug"):
            exe = base / "target" / profile / "mpx"
            if exe.is_file() and os.access(exe, os.X_OK):
                return str(exe)
    raise FileNotFoundError(
        "cannot find the mpx executable: build it (cargo build --release --bins) and put "
        "target/release on PATH, or set MPX_BIN"
    )


class Cluster:
    """An mpx cluster of ``n`` engines (one ``mpirun`` job), started with
    ``mpx cluster start --daemonize`` and stopped with ``mpx cluster stop``.

    ``with mpx.Cluster(n=4) as rc:`` starts it, yields a connected :class:`Client`, and stops
    it (engines, mpirun, controller) on leaving. The engines run in ``cwd`` (default: the
    current directory), so cells import the modules there.
    """

    def __init__(
        self,
        n: int = 4,
        kernel: str = "python",
        cluster_id: Optional[str] = None,
        cwd: Optional[StrPath] = None,
        timeout: float = 120,
        mpx: Optional[StrPath] = None,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.n = n
        self.kernel = kernel
        self.cluster_id: str = cluster_id or "py-%d-%d" % (os.getpid(), next(_counter))
        self.cwd = cwd
        self.timeout = timeout
        self.mpx = find_mpx(mpx)
        self.args = list(args)
        self.env = env
        self.client: Optional[Client] = None
        self.controller_pid: Optional[int] = None

    def _run(self, *args: str, timeout: float) -> str:
        proc = subprocess.run(
            [self.mpx, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError("`mpx %s` failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr))
        return proc.stdout

    def start(self) -> Cluster:
        """Starts the cluster; returns once all engines registered."""
        args = ["cluster", "start", "-n", str(self.n), "--kernel", self.kernel,
                "--cluster-id", self.cluster_id, "--daemonize", "--timeout", str(self.timeout)]
        if self.args:
            args += ["--", *self.args]
        self._run(*args, timeout=self.timeout + 30)
        return self

    def connect(self) -> Client:
        """A :class:`Client` of this cluster (kept as ``self.client``)."""
        self.client = Client(cluster_id=self.cluster_id)
        self.controller_pid = self.client.info().get("controller_pid")
        return self.client

    def start_and_connect(self) -> Client:
        """``start()`` then ``connect()``."""
        self.start()
        return self.connect()

    def pids(self) -> list[int]:
        """Process ids of the engines, mpirun and the controller (while running)."""
        info = (self.client or Client(cluster_id=self.cluster_id)).info()
        pids = [e["pid"] for e in info.get("engines", []) if e.get("pid")]
        pids += [info[k] for k in ("mpirun_pid", "controller_pid") if info.get(k)]
        return pids

    def stop(self) -> None:
        """Stops engines, mpirun and controller; returns once the controller exited. A cluster
        that already ended on its own (its world went down after a rank died, as clusters
        started without ``--restart`` do) is stopped already: no error then."""
        if self.client is not None:
            self.client.close()
            self.client = None
        try:
            self._run("cluster", "stop", "--cluster-id", self.cluster_id, timeout=60)
        except RuntimeError:
            if not self._ended(wait=10.0):
                raise

    def _ended(self, wait: float) -> bool:
        """Whether the controller this object connected to has exited, waiting up to ``wait``
        seconds (it removes its connection file just before it exits)."""
        pid = self.controller_pid
        if pid is None:
            return False
        deadline = time.monotonic() + wait
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def __enter__(self) -> Client:
        self.start()
        try:
            return self.connect()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<mpx.Cluster %s: n=%d, kernel=%s>" % (self.cluster_id, self.n, self.kernel)
