"""Load-balanced tasks from Python: apply on one engine, map in order and as completed, chunks,
imap's bound, a task's error, numpy results; TaskResult and MapResult as
concurrent.futures.Futures."""
import concurrent.futures
import threading
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


def test_task_results_travel_in_the_reply(rc):
    """A task's result with several arrays in nested objects comes back whole, and leaves
    nothing on its engine."""
    lb = rc.load_balanced_view()

    def make(n):
        import numpy as np

        a = np.arange(n, dtype=np.int32)
        return {"a": a, "pair": (a[::2], np.eye(n)), "n": n}

    for n, r in zip([2, 3, 4], lb.map_sync(make, [2, 3, 4])):
        assert r["n"] == n and r["a"].tolist() == list(range(n))
        assert r["pair"][0].tolist() == list(range(0, n, 2)) and np.array_equal(r["pair"][1], np.eye(n))
    r = lb.apply_async(make, 5).result(60)
    assert r["a"].tolist() == list(range(5))
    left = rc[:].apply_sync(lambda: sorted(k for k in __import__("__main__").__dict__ if k.startswith("__mpx")))
    assert left == [[]] * len(rc.ids)


def test_task_results_are_futures(rc):
    lb = rc.load_balanced_view()
    slow = lb.apply_async(lambda: __import__("time").sleep(1.0) or "slow")
    assert isinstance(slow, concurrent.futures.Future)
    # Sent already: running, and not to be cancelled.
    assert slow.running() and not slow.done() and not slow.ready()
    assert not slow.cancel() and not slow.cancelled()
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        slow.exception(timeout=0.05)
    ended = threading.Event()
    seen = []
    slow.add_done_callback(lambda f: (seen.append((f, f.engine_id)), ended.set()))
    quick = [lb.apply_async(lambda i=i: i * i) for i in range(3)]
    values = [f.result() for f in concurrent.futures.as_completed(quick + [slow], timeout=60)]
    assert sorted(values, key=str) == [0, 1, 4, "slow"]
    assert ended.wait(10) and seen == [(slow, slow.engine_id)] and slow.engine_id in rc.ids
    assert slow.done() and not slow.running() and slow.exception() is None and slow.get() == "slow"
    # A callback added once done runs at once.
    late = []
    slow.add_done_callback(late.append)
    assert late == [slow]
    # The result's arrays are pulled before the Future is done.
    arrays = lb.apply_async(lambda: np.arange(3.0))
    done, _ = concurrent.futures.wait([arrays], timeout=60)
    assert done == {arrays} and arrays.result(0).tolist() == [0.0, 1.0, 2.0]


def test_a_task_future_fails_with_the_error_and_calls_back_unreferenced(rc):
    lb = rc.load_balanced_view()
    bad = lb.apply_async(lambda: 1 / 0)
    error = bad.exception(timeout=60)
    assert isinstance(error, mpx.RemoteError) and error.ename == "ZeroDivisionError"
    with pytest.raises(mpx.RemoteError):
        bad.result()
    assert bad.engine_id in rc.ids and bad.metadata["attempts"] == 1 and bad.attempts == 1
    # Nobody keeps the TaskResult: its callback runs all the same.
    got = []
    called = threading.Event()
    lb.apply_async(lambda: 7).add_done_callback(lambda f: (got.append(f.result()), called.set()))
    assert called.wait(60) and got == [7]


def test_closing_the_client_fails_its_running_task_futures(cluster):
    client = mpx.Client(cluster_id=cluster.cluster_id)
    task = client.load_balanced_view().apply_async(lambda: __import__("time").sleep(0.5))
    client.close()
    assert isinstance(task.exception(timeout=10), ConnectionError)


def test_map_results_are_futures(rc):
    lb = rc.load_balanced_view()

    def slow_id(i):
        import time

        time.sleep(0.1)
        return i

    m = lb.map_async(slow_id, range(8))
    assert isinstance(m, concurrent.futures.Future)
    assert m.running() and not m.cancel() and not m.cancelled()
    with pytest.raises(TimeoutError):
        m.result(timeout=0.01)
    called = threading.Event()
    m.add_done_callback(lambda f: called.set())
    ar = rc[:].execute("x = 1")
    done, _ = concurrent.futures.wait([m, ar], timeout=60)
    assert done == {m, ar}
    assert m.result() == list(range(8)) and m.exception() is None and m.done() and m.ready()
    assert called.wait(10) and list(m) == list(range(8))

    def fail_at_2(i):
        if i == 2:
            raise ValueError("bad item %d" % i)
        return i

    failing = lb.map_async(fail_at_2, range(4))
    error = failing.exception(timeout=60)
    assert isinstance(error, mpx.RemoteError) and "bad item 2" in error.evalue
    with pytest.raises(mpx.RemoteError):
        failing.get()
    it = iter(failing)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(mpx.RemoteError):
        next(it)
