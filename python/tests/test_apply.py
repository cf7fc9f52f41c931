"""apply/map of Python functions, and every numpy dtype bit-exactly through push/pull,
scatter/gather and apply arguments/results."""
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
    # Result arrays left on the engines are dropped by the next call.
    dv.apply_sync(lambda: np.zeros(2))
    dv.apply_sync(lambda: None)
    left = dv.apply_sync(lambda: sorted(k for k in __import__("__main__").__dict__ if k.startswith("__mpx_r")))
    assert left == [[]] * 4


def test_engine_died_on_its_own_cluster(tmp_path):
    with mpx.Cluster(n=2, cwd=str(tmp_path)) as rc2:
        with pytest.raises(mpx.EngineDied) as info:
            rc2[1].execute("import os\nos._exit(3)", block=True)
        assert info.value.engine_id == 1
