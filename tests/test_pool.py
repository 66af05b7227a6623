"""The output pool (csrc/pool.c): large outputs reuse the blocks of dead ones.

Outputs of POOL_MIN_BYTES or more come from a numpy memory handler that keeps the blocks of dead
arrays (up to TRACEJIT_POOL_BYTES) for the next call. Results must not depend on it: each test
compares with numpy, and with the pool off; `pool_stats()` shows whether blocks were reused.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tracejit as tj
import tracejit.runtime.executable  # noqa: F401  (sets the pool's cap from TRACEJIT_POOL_BYTES on import)
from probes import run_threads

try:
    from tracejit import _dispatch
except ImportError:
    _dispatch = None

pytestmark = pytest.mark.skipif(_dispatch is None, reason="tracejit._dispatch was not built (no C compiler)")
MiB = 1 << 20
N = 1 << 18  # float32 elements: 1 MiB, above POOL_MIN_BYTES


@pytest.fixture(autouse=True)
def pool():
    """A 64 MiB pool, empty at the start of each test; the process's cap comes back after it."""
    previous = _dispatch.pool_configure(64 * MiB)
    _dispatch.pool_clear()
    yield _dispatch
    _dispatch.pool_configure(previous)
    _dispatch.pool_clear()


def counts() -> tuple[int, int]:
    stats = _dispatch.pool_stats()
    return stats["hits"], stats["misses"]


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def w1(a, b, c):
    return np.tanh(a * b + c) * 0.5 + np.exp(-a * a)


def inputs(rng, n=N, dtype=np.float32):
    return [rng.standard_normal(n).astype(dtype) for _ in range(3)]


def python_path(jitted, *args):
    """The Python call path of `jitted` for `args` (generated `call`, outputs from pooled_empty)."""
    return jitted.lower(*args).compile()


# ---- results -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_match_numpy_and_do_not_depend_on_the_pool(rng, dtype):
    args = inputs(rng, dtype=dtype)
    f = tj.jit(w1)
    exe = python_path(f, *args)
    want = w1(*args)
    results = []
    for cap in (64 * MiB, 0, 64 * MiB):
        _dispatch.pool_configure(cap)
        for _ in range(3):  # the first call of a size misses, the next ones reuse its block
            for got in (f(*args), exe(*args)[0]):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
                results.append(got.copy())
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def test_several_outputs_of_mixed_sizes_and_a_tuple(rng):
    x = rng.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB

    def f(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True), x.max(axis=1), x * 2

    jitted = tj.jit(f)
    for _ in range(3):
        got, want = jitted(x), f(x)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_pooled_arrays_are_ordinary_arrays():
    a = _dispatch.pooled_empty((N,), np.float32)
    assert type(a) is np.ndarray and a.flags.owndata and a.base is None and a.flags.writeable
    assert address(a) % 64 == 0  # the alignment of the generated code's chunks
    a[:] = np.arange(N)
    a.resize((3 * N,), refcheck=False)  # numpy reallocs through the array's handler
    np.testing.assert_array_equal(a[:N], np.arange(N, dtype=np.float32))
    a.resize((N // 2,), refcheck=False)
    np.testing.assert_array_equal(a, np.arange(N // 2, dtype=np.float32))


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (N,), (4, N // 4)])
@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.float32, np.complex128])
def test_pooled_empty_makes_what_np_empty_makes(shape, dtype):
    got, want = _dispatch.pooled_empty(shape, dtype), np.empty(shape, dtype)
    assert got.shape == want.shape and got.dtype == want.dtype and got.strides == want.strides
    assert got.flags.c_contiguous and got.flags.owndata


def test_pooled_empty_refuses_what_np_empty_refuses():
    for shape in [(-1,), (1 << 62, 1 << 62)]:
        with pytest.raises(ValueError):
            np.empty(shape, np.float32)
        with pytest.raises(ValueError):
            _dispatch.pooled_empty(shape, np.float32)
    with pytest.raises(TypeError):
        _dispatch.pooled_empty((2,), "not a dtype")


# ---- reuse, lifetime -----------------------------------------------------------------------------
def test_the_next_call_reuses_the_block_of_a_dead_output(rng):
    args = inputs(rng)
    f = tj.jit(w1)
    exe = python_path(f, *args)
    for call in (f, lambda *a: exe(*a)[0]):
        first = call(*args)
        where = address(first)
        del first
        hits, misses = counts()
        second = call(*args)
        assert address(second) == where
        assert counts() == (hits + 1, misses)


def test_outputs_the_user_keeps_stay_valid(rng):
    """Live outputs are never handed out again, and live on after the function, the pool's blocks
    and the pool itself are gone."""
    f = tj.jit(lambda x: x * 2 + 1)
    xs = [np.full(N, k, np.float32) for k in range(6)]
    kept = [f(x) for x in xs]
    assert len({address(a) for a in kept}) == len(kept)
    del f
    gc.collect()
    _dispatch.pool_clear()
    _dispatch.pool_configure(0)
    for _ in range(5):  # other allocations of the same size must not reuse their memory
        np.ones(N, np.float32)
    for k, a in enumerate(kept):
        np.testing.assert_array_equal(a, np.full(N, 2 * k + 1, np.float32))
    del kept
    assert _dispatch.pool_stats()["cached_bytes"] == 0  # pool off: the dead blocks were freed


def test_views_keep_the_block_alive(rng):
    f = tj.jit(lambda x: x + 1)
    x = rng.standard_normal(N).astype(np.float32)
    view = f(x)[N // 2:]  # the output dies as an object; its data must not go back to the pool
    again = f(x * 0)
    assert not np.shares_memory(view, again)
    np.testing.assert_array_equal(view, (x + 1)[N // 2:])


# ---- the cap -------------------------------------------------------------------------------------
def test_the_cap_bounds_the_idle_bytes():
    _dispatch.pool_configure(3 * MiB)
    arrays = [_dispatch.pooled_empty((MiB,), np.uint8) for _ in range(5)]
    del arrays
    stats = _dispatch.pool_stats()
    assert stats["cached_bytes"] == 3 * MiB and stats["cached_blocks"] == 3
    big = _dispatch.pooled_empty((4 * MiB,), np.uint8)  # larger than the cap: never kept
    del big
    assert _dispatch.pool_stats()["cached_bytes"] == 3 * MiB
    _dispatch.pool_configure(MiB)  # lowering the cap frees the oldest idle blocks at once
    assert _dispatch.pool_stats()["cached_bytes"] == MiB
    assert _dispatch.pool_clear() == MiB and _dispatch.pool_stats()["cached_blocks"] == 0


def test_the_number_of_idle_blocks_is_capped():
    arrays = [_dispatch.pooled_empty((_dispatch.POOL_MIN_BYTES,), np.uint8)
              for _ in range(_dispatch.POOL_MAX_BLOCKS + 5)]
    del arrays
    assert _dispatch.pool_stats()["cached_blocks"] == _dispatch.POOL_MAX_BLOCKS


def test_a_block_serves_requests_it_exceeds_by_at_most_an_eighth():
    a = _dispatch.pooled_empty((8 * MiB,), np.uint8)
    del a
    hits, misses = counts()
    b = _dispatch.pooled_empty((7 * MiB,), np.uint8)  # 1 MiB to spare is more than 7/8 MiB: a new block
    assert counts() == (hits, misses + 1)
    c = _dispatch.pooled_empty((15 * MiB // 2,), np.uint8)
    assert counts() == (hits + 1, misses + 1)
    del b, c


def test_small_outputs_do_not_use_the_pool():
    f = tj.jit(lambda x: x * 2)
    x = np.ones(1000, np.float32)
    f(x)
    before = counts()
    for _ in range(10):
        f(x)
    _dispatch.pooled_empty((1000,), np.float32)
    assert counts() == before and _dispatch.pool_stats()["cached_bytes"] == 0


def test_zero_turns_the_pool_off(rng):
    _dispatch.pool_configure(0)
    args = inputs(rng)
    f = tj.jit(w1)
    before = counts()
    for _ in range(3):
        np.testing.assert_allclose(f(*args), w1(*args), rtol=1e-5, atol=1e-6)
    assert counts() == before and _dispatch.pool_stats()["cached_bytes"] == 0
    with pytest.raises(ValueError, match=">= 0"):
        _dispatch.pool_configure(-1)


@pytest.mark.parametrize("env, cap", [("0", 0), ("12345678", 12345678), (None, 256 * MiB)])
def test_the_cap_comes_from_TRACEJIT_POOL_BYTES(env, cap):
    child = textwrap.dedent("""
        import numpy as np, tracejit as tj
        from tracejit import _dispatch
        tj.jit(lambda x: x + 1)(np.ones(4))
        print(_dispatch.pool_stats()["max_bytes"])
    """)
    environ = {k: v for k, v in os.environ.items() if k != "TRACEJIT_POOL_BYTES"}
    if env is not None:
        environ["TRACEJIT_POOL_BYTES"] = env
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, env=environ)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == cap


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_a_bad_TRACEJIT_POOL_BYTES_is_named(monkeypatch, value):
    from tracejit import config

    monkeypatch.setenv("TRACEJIT_POOL_BYTES", value)
    with pytest.raises(ValueError, match="TRACEJIT_POOL_BYTES.*byte count >= 0"):
        config.pool_bytes()


# ---- threads, memory, processes ------------------------------------------------------------------
def test_threads_never_share_a_block(rng):
    """Threads allocate and free pooled blocks at once; a block handed to two arrays would show
    as one thread's values in another's array."""
    f = tj.jit(lambda x, k: x * 0 + k)
    x = rng.standard_normal(N).astype(np.float32)

    def work(k):
        for i in range(40):
            keep = [f(x, np.float32(k)), _dispatch.pooled_empty((N + 4096 * (i % 3),), np.float32)]
            keep[1].fill(k)
            for a in keep:
                assert (a[:: 4096] == k).all(), f"thread {k} sees another thread's values"

    errors = run_threads(work, 4)
    assert not errors, errors[0]
    stats = _dispatch.pool_stats()
    assert stats["hits"] > 0 and stats["cached_bytes"] <= 64 * MiB


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_rss_stays_flat_over_many_calls_making_40_mb():
    f = tj.jit(lambda x: x * 2 + 1)
    x = np.ones(10_000_000, np.float32)
    out = None
    for _ in range(3):
        out = f(x)  # the previous output lives until this returns: two blocks in turn
    before = _rss_bytes()
    hits = counts()[0]
    for _ in range(30):
        out = f(x)
    assert _rss_bytes() - before <= 8 * MiB
    assert counts()[0] - hits == 30
    np.testing.assert_array_equal(out[:: 100_000], np.full(100, 3, np.float32))


def _run(child: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(child)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_without_the_extension_outputs_come_from_np_empty():
    proc = _run("""
        import sys
        sys.modules["tracejit._dispatch"] = None  # as if it had not been built: importing it fails
        import numpy as np, tracejit as tj
        from tracejit.runtime import executable
        assert executable._pooled_empty is np.empty
        f = tj.jit(lambda x: x * 2 + 1)
        x = np.arange(1 << 18, dtype=np.float32)
        for _ in range(3):
            np.testing.assert_array_equal(f(x), x * 2 + 1)
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_arrays_dying_at_interpreter_exit_free_into_the_pool():
    """Outputs kept in globals, in cycles and in other threads' locals die during finalization,
    after the module's teardown; the handler is static, so that must be clean."""
    proc = _run("""
        import threading, numpy as np, tracejit as tj
        f = tj.jit(lambda x: (x + 1, x * 2))
        x = np.ones(1 << 20, np.float32)
        KEPT = [f(x) for _ in range(3)]
        class Cycle:
            pass
        c = Cycle(); c.me = c; c.arrays = f(x)
        t = threading.Thread(target=lambda: KEPT.append(f(x)), daemon=True); t.start(); t.join()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_other_threads_use_the_pool():
    proc = _run("""
        import os, threading, numpy as np
        from tracejit import _dispatch
        _dispatch.pool_configure(64 << 20)
        stop = False
        def churn():
            while not stop:
                a = _dispatch.pooled_empty((1 << 20,), np.uint8); a[::4096] = 1; del a
        threads = [threading.Thread(target=churn) for _ in range(2)]
        for t in threads: t.start()
        for _ in range(20):
            pid = os.fork()
            if pid == 0:  # the child: the pool works, and its mutex is not held
                a = _dispatch.pooled_empty((1 << 20,), np.uint8); a[:] = 7; del a
                b = _dispatch.pooled_empty((1 << 20,), np.uint8); b[:] = 8
                os._exit(0 if (b == 8).all() else 1)
            assert os.waitpid(pid, 0)[1] == 0
        stop = True
        for t in threads: t.join()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
