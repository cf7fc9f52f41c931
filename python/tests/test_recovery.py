"""Results engine by engine while others run, ranks stuck in MPI calls, interrupts that free
them (restarting the MPI world when they sat in a collective), and Client.restart(), against
the session's real 4-rank cluster.

Every wait is bounded and polls: the bounds are generous (a loaded 2-core machine runs four
engines here), and what is asserted does not depend on timing: the ranks blocked in the
Barrier cannot leave it before the test interrupts them."""
import threading
import time

import numpy as np
import pytest

import mpx
from conftest import names_ranks

#: Rank 0 fails, the other ranks wait in a Barrier for it forever.
FAILING = "from mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 0: 1/0\nc.Barrier()"
#: Generous bound of every poll (seconds).
BOUND = 60.0


def poll(condition, what, bound=BOUND):
    """Polls ``condition()`` every 20 ms until it is true; fails naming ``what`` after
    ``bound`` seconds. Returns the seconds it took."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > bound:
            pytest.fail("%s: not after %.0f s" % (what, bound))
        time.sleep(0.02)
    return time.monotonic() - t0


def allreduce_on_all(rc):
    """The next cell after a restart: runs on all 4 engines of the new world."""
    ar = rc[:].execute("from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(1)")
    return [r.execute_result for r in ar.get(BOUND)]


def test_stuck_barrier_shows_rank_0_then_interrupt_restarts_the_world(rc):
    ar = rc[:].execute(FAILING)
    took = poll(lambda: 0 in ar.results_so_far(), "engine 0's result")
    so_far = ar.results_so_far()
    assert list(so_far) == [0], "only engine 0 is done: %r" % (so_far,)
    assert isinstance(so_far[0], mpx.RemoteError)
    error = so_far[0]
    assert (error.ename, error.evalue, error.engine_id) == ("ZeroDivisionError", "division by zero", 0)
    assert "<cell-" in so_far[0].traceback
    assert ar.ready_engines() == [0]
    assert not ar.ready() and ar.progress == 1 and len(ar) == 4
    print("engine 0's error after %.2f s" % took)

    poll(lambda: ar.stuck, "the stuck message")
    message = ar.stuck[0]
    assert names_ranks(message, [1, 2, 3]), message
    assert "blocked in Barrier on COMM_WORLD" in message
    assert "waiting for rank 0, which left the cell with ZeroDivisionError" in message
    details = ar.stuck_details[0]
    assert sorted(b["rank"] for b in details["blocked"]) == [1, 2, 3]
    assert [(x["rank"], x["error"]) for x in details["left"]] == [(0, "ZeroDivisionError")]
    # Still stuck: nothing but rank 0 is done.
    assert ar.ready_engines() == [0] and not ar.ready()

    assert ar.interrupt() == [1, 2, 3]
    assert ar.wait(BOUND), "the interrupt did not end the request"
    with pytest.raises(mpx.CompositeError) as info:
        ar.get()
    errors = {e.engine_id: e for e in info.value.errors}
    assert sorted(errors) == [0, 1, 2, 3]
    assert errors[0].ename == "ZeroDivisionError"
    for eid in (1, 2, 3):
        assert errors[eid].ename == "WorldDown"
        assert "the MPI world is being restarted (variables are lost)" in errors[eid].evalue
    assert sorted(ar.results_so_far()) == [0, 1, 2, 3]
    assert ar.ready_engines() == [0, 1, 2, 3] and ar.progress == 4
    assert ar.stuck == [message]  # kept once the request is done
    assert ar.interrupt() == []

    # The next cell waits for the new world and runs on all four engines.
    assert allreduce_on_all(rc) == ["4"] * 4
    # The client noticed the restart: its apply helper is set up again.
    assert rc[:].apply_sync(lambda x: x + 1, 41) == [42] * 4


def test_wait_interactive_shows_progress_and_each_stuck_message_once(rc, capsys):
    ar = rc[:].execute(FAILING)

    def free():
        # Interrupts once the controller said the ranks are stuck (bounded: never hangs).
        t0 = time.monotonic()
        while not ar.stuck and time.monotonic() - t0 < BOUND:
            time.sleep(0.05)
        time.sleep(0.5)  # a few more progress updates with the message already shown
        ar.interrupt()

    freer = threading.Thread(target=free, daemon=True)
    freer.start()
    assert ar.wait_interactive(interval=0.05, timeout=2 * BOUND) is True
    freer.join(BOUND)
    out = capsys.readouterr().out
    stuck = [line for line in out.replace("\r", "\n").splitlines() if line.startswith("mpx: ")]
    assert len(stuck) == 1 and names_ranks(stuck[0], [1, 2, 3]), out
    assert "blocked in Barrier" in stuck[0] and "waiting for rank 0" in stuck[0]
    assert "1/4 engines done after" in out
    assert "\r4/4 engines done after" in out and out.endswith("\n")
    assert allreduce_on_all(rc) == ["4"] * 4


def test_wait_interactive_timeout_returns_false(rc, capsys):
    ar = rc[:].execute("import time\ntime.sleep(0.5 + 0.5 * __import__('mpi4py.MPI').MPI.COMM_WORLD.rank)")
    assert ar.wait_interactive(interval=0.05, timeout=0.2) is False
    assert "engines done after" in capsys.readouterr().out
    assert ar.wait_interactive(interval=0.05, timeout=BOUND) is True
    assert capsys.readouterr().out.rstrip().endswith("4/4 engines done after %d s" % ar.elapsed)


def test_apply_values_engine_by_engine(rc, tmp_path):
    """Engine 0 returns at once; the others wait for a file the test writes once it has seen
    engine 0's value (bounded by BOUND on the engines too)."""
    go = tmp_path / "go"

    def f(path, bound):
        import os
        import time

        import numpy as np
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.rank
        t0 = time.monotonic()
        while rank > 0 and not os.path.exists(path) and time.monotonic() - t0 < bound:
            time.sleep(0.02)
        return np.full(3, rank, dtype=np.int64)

    ar = rc[:].apply_async(f, str(go), BOUND)
    poll(lambda: 0 in ar.results_so_far(), "engine 0's value")
    first = ar.results_so_far()
    assert list(first) == [0] and ar.ready_engines() == [0] and not ar.ready()
    assert np.array_equal(first[0], [0, 0, 0])
    go.write_text("go")
    values = list(ar)  # each engine's value in engine order, as it is done
    assert [v.tolist() for v in values] == [[r] * 3 for r in range(4)]
    # Engine 0's value was pulled once and is the same object in every view of the result.
    assert ar.get()[0] is first[0] and ar.get_dict()[0] is first[0]
    assert sorted(ar.get_dict()) == [0, 1, 2, 3]


def test_client_restart_keeps_ids_and_connection_but_not_variables(rc):
    ids, connection_file = rc.ids, rc.connection_file
    with open(connection_file) as f:
        connection = f.read()
    pids = {e["id"]: e["pid"] for e in rc.info()["engines"]}
    rc[:].execute("restart_probe = 7", block=True)
    assert rc[:].apply_sync(lambda: 1) == [1] * 4  # the apply helper is on the engines

    t0 = time.monotonic()
    assert rc.restart(timeout=BOUND) == ids == [0, 1, 2, 3]
    print("restart took %.2f s" % (time.monotonic() - t0))
    assert rc.ids == ids and rc.connection_file == connection_file
    with open(connection_file) as f:
        assert f.read() == connection
    new_pids = {e["id"]: e["pid"] for e in rc.info()["engines"]}
    assert sorted(new_pids) == ids and not set(new_pids.values()) & set(pids.values())

    with pytest.raises(mpx.CompositeError) as info:
        rc[:].execute("restart_probe", block=True)
    assert [(e.engine_id, e.ename) for e in info.value.errors] == [(i, "NameError") for i in ids]
    # The same client goes on: cells, apply (its helper set up again), push and pull.
    assert allreduce_on_all(rc) == ["4"] * 4
    assert rc[:].apply_sync(lambda x: 2 * x, 21) == [42] * 4
    dv = rc[:]
    dv.block = True
    dv["after"] = np.arange(3)
    assert [a.tolist() for a in dv["after"]] == [[0, 1, 2]] * 4


def test_restart_by_another_client(rc):
    """Another client restarts the world: this one's blocking calls set their apply helper up
    again and go on; a non-blocking one that found it missing says why."""
    assert rc[:].apply_sync(lambda: 1) == [1] * 4
    other = mpx.Client(rc.connection_file)
    other.restart(timeout=BOUND)
    assert rc[:].apply_sync(lambda: 2) == [2] * 4
    other.restart(timeout=BOUND)
    ar = rc[:].apply_async(lambda: 3)
    with pytest.raises(mpx.CompositeError) as info:
        ar.get(BOUND)
    assert "set up again by the next call" in info.value.errors[0].evalue
    assert rc[:].apply_async(lambda: 3).get(BOUND) == [3] * 4
    other.close()
