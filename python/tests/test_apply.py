"""apply/map of Python functions, and every numpy dtype bit-exactly through push/pull,
scatter/gather and apply arguments/results."""
import os
import time

import numpy as np
import pytest

import mpx
from mpx._arrays import WIRE_DTYPES

DTYPES = sorted(WIRE_DTYPES)


def sample(dtype, shape=(5, 3)):
    """Arbitrary bits of `dtype` (NaNs and odd payloads included for floats), bools 0/1."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "b":
        return (np.arange(n) % 3 == 0).reshape(shape)
    raw = np.random.default_rng(7).integers(0, 256, n * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_bit_exactly(dv, rc, dtype):
    x = sample(dtype)
    dv.push({"x": x})
    for got in dv.pull("x"):
        assert same_bits(got, x)
    dv.scatter("xs", x)
    assert same_bits(dv.gather("xs"), x)
    # Through apply: the array is an argument (mpx array) and comes back as a result.
    back = rc[1].apply_sync(lambda a: a, x)
    assert same_bits(back, x)
    # Big-endian and non-contiguous inputs arrive with the same values.
    if np.dtype(dtype).itemsize > 1:
        rc[0]["be"] = x.astype(np.dtype(dtype).newbyteorder(">"))
        assert same_bits(rc[0]["be"], x)
    rc[0]["t"] = x.T
    assert same_bits(rc[0]["t"], np.ascontiguousarray(x.T))


def test_apply_closure_args_kwargs(dv, rc):
    k = 7

    def scaled(x, offset=0):
        return x * k + offset

    assert dv.apply_sync(scaled, 2, offset=1) == [15] * 4
    assert rc[3].apply_sync(lambda: "hello") == "hello"
    ar = rc[::2].apply_async(scaled, 1)
    assert isinstance(ar, mpx.AsyncResult)
    assert ar.get(30) == [7, 7]
    v = rc[:]
    v.block = True
    assert v.apply(len, [1, 2, 3]) == [3] * 4


def test_apply_function_using_numpy_and_mpi4py(dv):
    def rank_sum(a):
        from mpi4py import MPI
        import numpy as np

        comm = MPI.COMM_WORLD
        local = a * (comm.rank + 1)
        total = np.empty_like(local)
        comm.Allreduce(local, total, op=MPI.SUM)
        return comm.rank, total, {"nested": [local]}

    a = np.arange(4.0)
    results = dv.apply_sync(rank_sum, a)
    assert [r[0] for r in results] == [0, 1, 2, 3]
    for rank, total, extra in results:
        assert np.array_equal(total, a * 10)
        assert np.array_equal(extra["nested"][0], a * (rank + 1))


def test_apply_of_function_from_engine_module(dv):
    # Functions importable on the engines travel by reference.
    dv.execute("import helpers")
    assert dv.apply_sync(lambda x: __import__("helpers").triple(x), 5) == [15] * 4


def test_apply_sees_pushed_globals_via_main(dv):
    dv.push({"shared_factor": 4})

    def use_main(x):
        import __main__

        return x * __main__.shared_factor

    assert dv.apply_sync(use_main, 2) == [8] * 4


def test_map(dv, rc):
    assert dv.map_sync(lambda x: x * x, range(10)) == [x * x for x in range(10)]
    assert rc[[1, 3]].map_sync(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    ar = rc[:].map_async(str, range(3))
    assert ar.get(30) == ["0", "1", "2"]


def test_apply_errors(dv, rc):
    def fails(x):
        raise RuntimeError("failed with %s" % x)

    with pytest.raises(mpx.RemoteError) as info:
        rc[1].apply_sync(fails, 3)
    err = info.value
    assert (err.ename, err.evalue, err.engine_id) == ("RuntimeError", "failed with 3", 1)
    assert "in fails" in err.traceback
    assert "mpx_apply" not in err.traceback
    with pytest.raises(mpx.CompositeError) as many:
        dv.apply_sync(fails, 4)
    assert sorted(e.engine_id for e in many.value.errors) == [0, 1, 2, 3]


#: The names mpx's helper left in an engine's namespace (there should be none); a lambda, so
#: that it is pickled by value (the engines cannot import this module).
mpx_names = lambda: sorted(k for k in __import__("__main__").__dict__ if k.startswith("__mpx"))  # noqa: E731


def test_results_travel_in_the_reply(dv, rc):
    """A result with several arrays (every dtype, views, big-endian, 0-d, empty) inside nested
    objects comes back whole, in the reply itself: nothing is left on the engines."""

    def make(rank_offset):
        import numpy as np
        from mpi4py import MPI

        base = np.arange(12.0).reshape(3, 4) + MPI.COMM_WORLD.rank + rank_offset
        return {
            "rank": MPI.COMM_WORLD.rank,
            "base": base,
            "view": base[:, 1],  # non-contiguous
            "same": [base, base],  # one array, twice
            "big_endian": np.arange(5, dtype=">i4"),
            "zero_d": np.array(1.5, np.float32),
            "empty": np.zeros((0, 3), np.int16),
            "flags": np.array([True, False, True]),
            "text": "not an array",
            "objects": np.array(["a", "b"]),  # not a wire dtype: pickled
        }

    results = dv.apply_sync(make, 10)
    for r in results:
        base = np.arange(12.0).reshape(3, 4) + r["rank"] + 10
        assert np.array_equal(r["base"], base)
        assert np.array_equal(r["view"], base[:, 1])
        assert r["same"][0] is r["same"][1] and np.array_equal(r["same"][0], base)
        assert r["big_endian"].tolist() == list(range(5))
        assert r["zero_d"].shape == () and r["zero_d"] == 1.5
        assert r["empty"].shape == (0, 3) and r["empty"].dtype == np.int16
        assert r["flags"].tolist() == [True, False, True]
        assert r["text"] == "not an array" and r["objects"].tolist() == ["a", "b"]
        # Arrays of the client's own (writable, over the reply's bytes).
        r["base"][0, 0] = -1.0
    assert [r["rank"] for r in results] == [0, 1, 2, 3]
    assert dv.apply_sync(mpx_names) == [[]] * 4
    # map and pull too.
    assert [a.tolist() for a in dv.map_sync(lambda n: np.arange(n), [1, 2, 3])] == [[0], [0, 1], [0, 1, 2]]
    dv.execute("import numpy as np\nkept = np.arange(4) * 2", block=True)
    assert [a.tolist() for a in dv.pull("kept")] == [[0, 2, 4, 6]] * 4
    assert dv.apply_sync(mpx_names) == [[]] * 4


def test_a_pulled_array_is_what_it_was_when_pulled(rc):
    """An array bound to a name is copied into the reply: a cell that changes it right after
    does not change what the client gets."""
    e = rc[2]
    e.execute("import numpy as np\nbig = np.ones(1 << 22)", block=True)  # 32 MiB
    ar = e.pull("big", block=False)
    e.execute("big[:] = -1", block=True)
    got = ar.get(60)
    assert got.shape == (1 << 22,) and (got == 1).all()
    assert e.apply_sync(lambda: float(__import__("__main__").big[0])) == -1.0


def test_a_result_with_more_arrays_than_a_frame_has_buffers(rc):
    """Past about a thousand arrays the smallest share one buffer of the reply."""
    out = rc[1].apply_sync(lambda: [np.full(i % 7, i, dtype=np.int64) for i in range(1500)] + [np.ones(1 << 16)])
    assert len(out) == 1501
    for i, a in enumerate(out[:1500]):
        assert a.dtype == np.int64 and a.tolist() == [i] * (i % 7)
    assert out[-1].shape == (1 << 16,) and out[-1].sum() == 1 << 16


def test_a_function_returning_the_engine_marker_sends_buffers(rc):
    """The engine's out-of-band return, seen from the raw client: an apply of a function that
    returns mpx_engine.Returned answers with its payload and arrays, not a displayed value."""
    rc[0].execute(
        "import numpy as np\nfrom mpx_engine import Returned\n"
        "def give():\n    return Returned(b'payload', [np.arange(3, dtype=np.uint16), np.eye(2)])",
        block=True,
    )
    raw = rc._raw.apply([0], "give", [])
    [r] = raw.get(30)
    raw.forget()
    assert r["error"] is None and r["value"] is None
    payload, buffers = r["returned"]
    assert payload == b"payload"
    arrays = [np.asarray(b) for b in buffers]
    assert arrays[0].tolist() == [0, 1, 2] and arrays[0].dtype == np.uint16
    assert np.array_equal(arrays[1], np.eye(2))


def test_engine_died_on_its_own_cluster(tmp_path):
    cluster = mpx.Cluster(n=2, cwd=str(tmp_path))
    with cluster as rc2:
        with pytest.raises(mpx.EngineDied) as info:
            rc2[1].execute("import os\nos._exit(3)", block=True)
        assert info.value.engine_id == 1
        # Without --restart the cluster ends with its world. Leaving the block after that (here
        # always; by chance before, when the controller ended before the stop reached it) is
        # no error: the cluster is stopped already.
        pid = cluster.controller_pid
        assert pid is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the controller did not end with its world")
