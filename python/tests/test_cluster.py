"""mpx.Cluster as a context manager: starts a real cluster and leaves no process behind."""
import os
import time

import mpx


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def test_cluster_context_manager_leaves_no_process(tmp_path):
    cluster = mpx.Cluster(n=4, kernel="python", cwd=str(tmp_path))
    with cluster as rc:
        assert rc.ids == [0, 1, 2, 3]
        pids = cluster.pids()
        assert len(pids) >= 5  # 4 engines, mpirun, controller
        assert all(alive(p) for p in pids)
        assert rc[:].apply_sync(lambda: os.getpid()) == pids[:4]
        conn = rc.connection_file
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "processes left behind"
    assert not os.path.exists(conn)


def test_cluster_with_rhai_kernel(tmp_path):
    with mpx.Cluster(n=2, kernel="rhai", cwd=str(tmp_path)) as rc:
        ar = rc[:].execute("40 + 2", block=True)
        assert [r.execute_result for r in ar.get()] == ["42", "42"]
