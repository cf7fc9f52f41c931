"""Load-balanced tasks from Python: apply on one engine, map in order and as completed, chunks,
imap's bound, a task's error, numpy results."""
import time

import numpy as np
import pytest

import mpx


def test_apply_runs_on_one_engine(rc):
    lb = rc.load_balanced_view()
    assert lb.apply_sync(lambda x, y: x * y, 6, 7) == 42
    ar = lb.apply_async(lambda: __import__("os").getpid())
    pid = ar.get(60)
    assert ar.engine_id in rc.ids and ar.attempts == 1
    assert pid == rc.info()["engines"][ar.engine_id]["pid"]


def test_map_in_order_as_completed_and_in_chunks(rc):
    lb = rc.load_balanced_view()

    def slow_square(i):
        import time

        time.sleep((12 - i) * 0.02)
        return i * i

    assert lb.map_sync(slow_square, range(12)) == [i * i for i in range(12)]
    unordered = lb.map_sync(slow_square, range(12), ordered=False)
    assert sorted(unordered) == [i * i for i in range(12)] and unordered != sorted(unordered)
    assert lb.map_sync(lambda a, b: a + b, range(10), range(10, 20), chunksize=3) == [
        a + b for a, b in zip(range(10), range(10, 20))
    ]
    # Async: a MapResult filled in the background.
    m = lb.map_async(lambda x: -x, range(5))
    assert m.get(60) == [0, -1, -2, -3, -4] and m.ready()


def test_imap_bound_and_targets(rc):
    lb = rc.load_balanced_view(targets=[1, 2])
    pids = {e["id"]: e["pid"] for e in rc.info()["engines"]}
    got = list(lb.imap(lambda _: __import__("os").getpid(), range(8), max_outstanding=2))
    assert set(got) <= {pids[1], pids[2]}


def test_a_task_error_raises_at_its_turn_and_numpy_results_come_back(rc):
    lb = rc.load_balanced_view()

    def f(i):
        if i == 2:
            raise ValueError("bad item %d" % i)
        return i

    it = lb.imap(f, range(4))
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(mpx.RemoteError) as e:
        next(it)
    assert e.value.ename == "ValueError" and "bad item 2" in e.value.evalue
    arrays = lb.map_sync(lambda n: np.arange(n, dtype=np.float64), [3, 5])
    assert [a.tolist() for a in arrays] == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]]
