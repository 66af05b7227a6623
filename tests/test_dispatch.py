"""The C fast path of jitted calls (csrc/dispatch.c -> tracejit._dispatch).

A call whose positional arguments are plain, C-contiguous, aligned ndarrays or Python floats, alone
or in dicts with str keys, tuples and lists, of a signature compiled before, runs in C; every other
call takes the Python path (`Jitted._call_python`) with
its conversions and errors. Each test checks results against numpy and against the Python path,
and which path ran: a spy on `_call_python` counts the calls that reached Python.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import namedtuple

import numpy as np
import pytest

import tracejit as tj
from tracejit.errors import DTypeError
from probes import rss_kb, run_threads

try:
    from tracejit import _dispatch
except ImportError:
    _dispatch = None

needs_c = pytest.mark.skipif(_dispatch is None, reason="tracejit._dispatch was not built (no C compiler at install)")
DTYPES = [np.bool_, np.int32, np.int64, np.float32, np.float64]


class SlowPathSpy:
    """Counts the calls of `jitted` that reach the Python path."""

    def __init__(self, jitted):
        self.calls = 0
        python_path = jitted._call_python

        def spy(*args, **kwargs):
            self.calls += 1
            return python_path(*args, **kwargs)

        jitted._call_python = spy  # the dispatcher looks the method up on the instance


def warm(jitted, *args, **kwargs):
    """Compile and register the signature of the arguments; returns a spy armed after it."""
    jitted(*args, **kwargs)
    return SlowPathSpy(jitted)


def same(got, want):
    """Equal values, dtype, shape and type, through any pytree."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want)
        for k in want:
            same(got[k], want[k])
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w)
    elif want is None:
        assert got is None
    else:
        assert type(got) is np.ndarray, type(got)
        want = np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
        np.testing.assert_array_equal(got, want)


# ---- results ------------------------------------------------------------------------------
@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_runs_in_c_and_matches_numpy_and_the_python_path(dtype, rng):
    if dtype is np.bool_:
        def fun(x, y):
            return x & y, x | ~y
    else:
        def fun(x, y):
            return x * 2 + y, x - y
    x, y = (rng.integers(0, 5, (3, 4)).astype(dtype) for _ in range(2))
    f = tj.jit(fun)
    spy = warm(f, x, y)
    got = f(x, y)
    assert spy.calls == 0
    same(got, fun(x, y))
    same(got, f._call_python(x, y))


@needs_c
def test_several_signatures_each_take_the_fast_path(rng):
    f = tj.jit(lambda x: x * 2 + 1)
    inputs = [rng.standard_normal(s).astype(d) for s, d in
              [((8,), np.float32), ((3,), np.float32), ((2, 3), np.float32), ((8,), np.float64), ((), np.int32)]]
    for x in inputs:
        f(x)
    spy = SlowPathSpy(f)
    for _ in range(3):
        for x in inputs:
            same(f(x), np.asarray(x * 2 + 1))
    assert spy.calls == 0
    assert len(f._fast_entries()) == len(inputs)


@needs_c
def test_the_table_keeps_the_most_recent_signatures_first(rng):
    f = tj.jit(lambda x: x + 1)
    sizes = range(1, _dispatch.TABLE_SIZE + 3)
    with pytest.warns(UserWarning, match="signatures"):  # tracejit warns at the 8th compile
        for n in sizes:
            f(np.zeros(n, np.float32))
    assert len(f._fast_entries()) == _dispatch.TABLE_SIZE
    for n in (3, 1):  # 1 was dropped from the table (least recent): Python path, then back in front
        spy = SlowPathSpy(f)
        same(f(np.full(n, 2, np.float32)), np.full(n, 3, np.float32))
        assert spy.calls == (n == 1)
        first = f._fast_entries()[0]
        assert next(c for c in f._cache.values() if c.fast is first).specs[0].shape == (n,)


@needs_c
def test_outputs_come_back_in_the_users_structure(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    funs = [lambda x: x + 1, lambda x: (x + 1, x * 2), lambda x: [x - 1, x * x, x],
            lambda x: {"a": x + 1, "b": (x * 2, [x - 1])}, lambda x: (x + 1, None), lambda x: ((x + 1,),)]
    for fun in funs:
        f = tj.jit(fun)
        spy = warm(f, x)
        got = f(x)
        assert spy.calls == 0
        same(got, fun(x))
        same(got, f._call_python(x))
        if isinstance(got, tuple) and len(got) == 2 and got[1] is not None:
            assert not np.shares_memory(got[0], got[1])  # fresh outputs on every call
            assert not np.shares_memory(f(x)[0], got[0])


@needs_c
def test_zero_dimensional_arrays_in_and_out():
    f = tj.jit(lambda x, y: (x * y + 1, (x * y).sum()))
    x, y = np.array(3.0, np.float32), np.array(2.0, np.float32)
    spy = warm(f, x, y)
    got = f(x, y)
    assert spy.calls == 0
    assert all(type(g) is np.ndarray and g.shape == () and g.dtype == np.float32 for g in got)
    assert got[0] == 7 and got[1] == 6
    same(got, f._call_python(x, y))


@needs_c
def test_large_constants_and_the_workspace_are_passed(rng):
    """Constants over STATIC_CONSTANT_MAX elements and temporaries are hidden tj_main parameters."""
    c = np.linspace(-1, 1, 3000).astype(np.float32)

    w = rng.standard_normal((3000, 8)).astype(np.float32)

    def fun(x):
        return (np.tanh(x * c) @ w).sum(axis=0)
    x = rng.standard_normal((4, 3000)).astype(np.float32)
    f = tj.jit(fun)
    executable = f.lower(x).compile()
    assert executable.peak_temp_bytes > 0 and len(executable._hidden) > 2  # c and w passed in
    spy = warm(f, x)
    got = f(x)
    assert spy.calls == 0
    np.testing.assert_allclose(got, fun(x), rtol=1e-5, atol=1e-7)
    same(got, f._call_python(x))


# ---- what falls back to the Python path -----------------------------------------------------
@needs_c
def test_programs_with_more_parameters_than_the_dispatcher_calls_keep_the_python_path():
    xs = [np.full(2, n, np.float32) for n in range(_dispatch.MAX_POINTERS)]
    f = tj.jit(lambda *xs: sum(xs[1:], xs[0]))
    for _ in range(2):
        same(f(*xs), sum(xs[1:], xs[0]))
    assert f._fast_entries() == ()


@needs_c
def test_other_shapes_and_dtypes_compile_a_new_signature(rng):
    f = tj.jit(lambda x: x * 2 + 1)
    x = np.arange(8, dtype=np.float32)
    spy = warm(f, x)
    for other in (np.arange(9, dtype=np.float32), np.arange(8, dtype=np.int32), np.arange(8, dtype=np.float64),
                  np.arange(8, dtype=np.longlong)):
        same(f(other), other * 2 + 1)
    assert spy.calls == 4
    with pytest.raises(DTypeError, match="complex"):
        f(np.arange(8, dtype=np.complex64))


@needs_c
def test_argument_errors_are_the_python_paths(rng):
    f = tj.jit(lambda x, y: x + y)
    x = np.arange(4, dtype=np.float32)
    warm(f, x, x)
    for args, kwargs in [((x,), {}), ((x, x, x), {}), ((x,), {"z": x})]:
        with pytest.raises(TypeError) as fast:
            f(*args, **kwargs)
        with pytest.raises(TypeError) as python:
            f._call_python(*args, **kwargs)
        assert str(fast.value) == str(python.value)


@needs_c
def test_bools_take_the_python_path_python_floats_and_ints_run_in_c(rng):
    f = tj.jit(lambda x, y: x + y)
    x = np.arange(4, dtype=np.float32)
    spy = warm(f, x, x)
    same(f(x, 2.0), x + 2.0)  # a weak scalar: float32 result; compiled, then ...
    same(f(x, 2.5), x + 2.5)  # ... in C, any value
    same(f(x, np.array(2.0)), x + np.array(2.0))  # a 0-d float64 array is not weak: float64
    same(f(x, np.array(2.0)), x + np.array(2.0))
    assert spy.calls == 2
    same(f(x, 2), x + 2)  # an int: compiled, then ...
    same(f(x, -7), x + -7)  # ... in C
    same(f(x, True), x + True)  # bools keep numpy's conversion rules in Python
    same(f(x, True), x + True)
    assert spy.calls == 5


@needs_c
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_python_ints_run_in_c_within_what_the_program_converts_them_to(dtype):
    f = tj.jit(lambda x, k: x * k + k)
    x = np.array([1, -2, 3], dtype)
    spy = warm(f, x, 3)
    info = np.iinfo(dtype)
    inside = [0, -1, 2**31 - 1, -2**31, info.max, info.min]
    for k in inside:
        same(f(x, k), x * k + k)
    assert spy.calls == 0
    for k in [info.max + 1, info.min - 1, 2**64]:
        with pytest.raises(OverflowError) as ours:
            f(x, k)
        with pytest.raises(OverflowError):
            x * k + k
        if abs(k) < 2**63:
            assert str(ours.value) == f"Python integer {k} out of bounds for {np.dtype(dtype)}"
    assert spy.calls == 3  # each of those went to the Python path, which raised


Moments = namedtuple("Moments", "m v")
OtherMoments = namedtuple("OtherMoments", "m v")


def momentum_step(w, state, g):
    m = 0.9 * state.m + g
    return w - 0.1 * m, Moments(m, state.v + g * g)


@needs_c
def test_namedtuples_run_in_c_and_come_back_as_their_class(rng):
    w, g = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    state = Moments(np.zeros(5, np.float32), np.ones(5, np.float32))
    f = tj.jit(momentum_step)
    spy = warm(f, w, state, g)
    for _ in range(3):
        new_w, new_state = f(w, state, g)
        assert type(new_state) is Moments
        same(tuple(new_state), tuple(f._call_python(w, state, g)[1]))
        w, state = new_w, new_state
    assert spy.calls == 3  # the spy's own direct calls only


@needs_c
@pytest.mark.parametrize("variant", ["plain tuple", "other namedtuple class", "subclass", "one field more"])
def test_other_tuples_where_a_namedtuple_was_compiled_take_the_python_path(variant, rng):
    w, g = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    state = Moments(np.zeros(5, np.float32), np.ones(5, np.float32))
    f = tj.jit(lambda w, s, g: (w - s[0] * g, s[1] + g))
    spy = warm(f, w, state, g)
    Sub = type("Sub", (Moments,), {})
    changed = {"plain tuple": tuple(state), "other namedtuple class": OtherMoments(*state),
               "subclass": Sub(*state), "one field more": namedtuple("Moments", "m v extra")(*state, g)}[variant]
    got = f(w, changed, g)
    assert spy.calls == 1  # that call took the Python path
    same(got, f._call_python(w, changed, g))


def scaled_sum(x, y, *, scale, params):
    return (x + y) * scale + params["b"][0]


@needs_c
def test_keyword_arguments_run_in_c(rng):
    f = tj.jit(scaled_sum)
    x, y, b = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    spy = warm(f, x, y=y, scale=0.5, params={"b": [b]})
    for scale in (0.5, 2.0):
        got = f(x, params={"b": [b]}, scale=scale, y=y)  # keyword order does not matter
        same(got, f._call_python(x, y=y, scale=scale, params={"b": [b]}))
        np.testing.assert_allclose(got, scaled_sum(x, y, scale=scale, params={"b": [b]}), rtol=1e-6)
    assert spy.calls == 2  # the spy's own direct calls only


@needs_c
@pytest.mark.parametrize("variant", ["positional for keyword", "missing keyword", "extra keyword",
                                     "keyword of another structure", "no keywords"])
def test_calls_with_other_keywords_take_the_python_path(variant, rng):
    f = tj.jit(lambda x, y=None, z=None: x + (0 if y is None else y) + (0 if z is None else z))
    x = rng.standard_normal(3).astype(np.float32)
    spy = warm(f, x, y=x)
    args, kwargs = {"positional for keyword": ((x, x), {}), "missing keyword": ((x,), {}),
                    "extra keyword": ((x,), {"y": x, "z": x}), "keyword of another structure": ((x,), {"y": [x]}),
                    "no keywords": ((x,), {})}[variant]
    try:
        got = f(*args, **kwargs)
    except Exception as fast:  # the Python path's own error, raised the same way
        with pytest.raises(type(fast)) as python:
            f._call_python(*args, **kwargs)
        assert str(python.value) == str(fast)
    else:
        same(got, f._call_python(*args, **kwargs))
    assert spy.calls == 2  # the call above, and the spy's own


PYTHON_FLOATS = [0.0, -0.0, 1e-300, 0.1, -3.5, 1e38, 3.5e38, 1e300, float("inf"), float("-inf"), float("nan")]


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_floats_in_c_round_as_the_python_path_does(dtype):
    """The C path writes a Python float into the program's float64 input exactly as numpy does;
    with float32 arrays the weak scalar is then rounded inside the program, as numpy rounds it."""
    f = tj.jit(lambda x, s: x * s + s)
    x = np.array([1.0, -2.0, 0.5], dtype)
    spy = warm(f, x, 1.0)
    for value in PYTHON_FLOATS:
        with np.errstate(all="ignore"):
            want = f._call_python(x, value)
            same(f(x, value), want)
            same(want, x * value + value)
    assert spy.calls == len(PYTHON_FLOATS)  # only the spy's own direct calls


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_scalars_run_in_c_like_0d_arrays(dtype):
    f = tj.jit(lambda x, s: (x, s, x == s))
    x = np.array([0, 1, 1], dtype)
    spy = warm(f, x, np.array(1, dtype))
    for value in (0, 1):
        scalar = dtype(value)
        assert not isinstance(scalar, np.ndarray)
        same(f(x, scalar), f._call_python(x, np.array(value, dtype)))
    assert spy.calls == 2  # the spy's own direct calls only


def sgd_step(params, x, lr):
    grads = tj.grad(lambda p: np.sum(np.tanh(x @ p["w"] + p["b"]) ** 2))(params)
    return {k: params[k] - lr * grads[k] for k in params}


@needs_c
def test_a_training_step_with_dict_params_and_a_python_float_runs_in_c(rng):
    params = {"w": rng.standard_normal((5, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    x = rng.standard_normal((4, 5)).astype(np.float32)
    f = tj.jit(sgd_step)
    spy = warm(f, params, x, 0.1)
    for _ in range(3):
        new = f(params, x, 0.1)
        same(new, f._call_python(params, x, 0.1))
        params = new
    assert spy.calls == 3  # the spy's own direct calls only


def mlp(layers, x, extra):
    for w, b in layers:
        x = np.tanh(x @ w + b)
    return x * extra["scale"][0], [x.sum(), None]


def mlp_args(rng, n_layers=2):
    layers = [(rng.standard_normal((4, 4)).astype(np.float32), np.zeros(4, np.float32)) for _ in range(n_layers)]
    return layers, rng.standard_normal((3, 4)).astype(np.float32), {"scale": [np.float32(2.0)], "unused": None}


@needs_c
def test_nested_lists_tuples_dicts_and_none_run_in_c(rng):
    f = tj.jit(mlp)
    args = mlp_args(rng)
    spy = warm(f, *args)
    same(f(*args), f._call_python(*args))
    assert spy.calls == 1  # the spy's own direct call only
    np.testing.assert_allclose(f(*args)[0], mlp(*args)[0], rtol=1e-5, atol=1e-6)


@needs_c
@pytest.mark.parametrize("variant", ["one more layer", "tuple for list", "list for tuple", "array for None",
                                     "python int scale"])
def test_other_nestings_take_the_python_path(variant, rng):
    f = tj.jit(mlp)
    layers, x, extra = mlp_args(rng)
    spy = warm(f, layers, x, extra)
    changed = {"one more layer": lambda: (layers + layers[:1], x, extra),
               "tuple for list": lambda: (tuple(layers), x, extra),
               "list for tuple": lambda: ([list(layer) for layer in layers], x, extra),
               "array for None": lambda: (layers, x, {**extra, "unused": x}),
               "python int scale": lambda: (layers, x, {**extra, "scale": [2]})}[variant]()
    got = f(*changed)
    assert spy.calls == 1  # that call took the Python path
    same(got, f._call_python(*changed))
    np.testing.assert_allclose(got[0], mlp(*changed)[0], rtol=1e-5, atol=1e-6)


def add_w(p, x):
    return p["w"] + x


@needs_c
@pytest.mark.parametrize("variant", ["extra key", "missing key", "other key", "nested", "subclass", "list leaf",
                                     "other shape", "int key"])
def test_dicts_of_another_structure_take_the_python_path(variant):
    f = tj.jit(add_w)
    x = np.ones(3, np.float32)
    spy = warm(f, {"w": np.arange(3, dtype=np.float32)}, x)
    w = np.arange(3, dtype=np.float32)
    p = {"extra key": {"w": w, "v": w}, "missing key": {}, "other key": {"v": w}, "nested": {"w": {"a": w}},
         "subclass": type("Params", (dict,), {})(w=w), "list leaf": {"w": [0.0, 1.0, 2.0]},
         "other shape": {"w": np.arange(4, dtype=np.float32)}, "int key": {0: w}}[variant]
    try:
        got = f(p, x)
    except Exception as fast:  # the Python path's own error, raised the same way
        with pytest.raises(type(fast)) as python:
            f._call_python(p, x)
        assert str(python.value) == str(fast)
    else:
        same(got, f._call_python(p, x))
    assert spy.calls == 2  # the call above, and the spy's own


@needs_c
def test_strided_fortran_misaligned_swapped_and_subclassed_inputs_are_converted(rng):
    f = tj.jit(lambda a, b: a @ b + 1)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2)).astype(np.float32)
    spy = warm(f, a, b)
    buffer = np.zeros(a.size * 4 + 1, np.uint8)
    misaligned = np.frombuffer(buffer.data, np.float32, a.size, offset=1).reshape(a.shape)
    misaligned[...] = a
    assert not misaligned.flags.aligned
    wide = np.zeros((3, 8), np.float32)
    wide[:, ::2] = a
    others = [np.asfortranarray(a), wide[:, ::2], misaligned, a.astype(">f4"), a.view(np.matrix)]
    want = a @ b + 1
    for other in others:
        got = f(other, b)
        assert type(got) is np.ndarray
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert spy.calls == len(others)
    readonly = a.copy()
    readonly.flags.writeable = False
    np.testing.assert_allclose(f(readonly, b), want, rtol=1e-6)
    assert spy.calls == len(others)  # read-only is fine for an input


@needs_c
def test_tracers_and_calls_while_tracing_take_the_python_path(rng):
    inner = tj.jit(lambda x: np.tanh(x) * 2)
    x = rng.standard_normal(5)
    c = rng.standard_normal(5)
    spy = warm(inner, c)
    np.testing.assert_allclose(tj.grad(lambda x: inner(x).sum())(x), 2 / np.cosh(x) ** 2, rtol=1e-12)
    np.testing.assert_allclose(tj.jit(lambda x: inner(x) + 1)(x), np.tanh(x) * 2 + 1, rtol=1e-12)
    # concrete arrays inside a trace run the user's function eagerly, exactly as without the C path
    outer = tj.jit(lambda x: x + inner(c))
    np.testing.assert_array_equal(outer(x), x + np.tanh(c) * 2)
    assert spy.calls == 3


@needs_c
def test_gather_bounds_errors_raise_from_the_fast_path():
    f = tj.jit(lambda x, i: x[i])
    x = np.arange(5, dtype=np.float32)
    spy = warm(f, x, np.array([1, 2]))
    for bad, number in [(np.array([1, 7]), "7"), (np.array([-6, 0]), "-6")]:
        with pytest.raises(IndexError, match=f"index {number} is out of bounds for axis 0 with size 5") as fast:
            f(x, bad)
        with pytest.raises(IndexError) as python:
            f._call_python(x, bad)
        assert str(fast.value) == str(python.value)
    same(f(x, np.array([4, -1])), x[[4, -1]])
    assert spy.calls == 2  # only the explicit Python-path calls


# ---- threads, memory, the Lock ----------------------------------------------------------------
def _column_softmax_sums(x):
    return np.exp(x - x.max(axis=0)).sum(axis=1)


@needs_c
@pytest.mark.parametrize("cols", [16, 512])  # 512: 128 KiB of data, a call that releases the GIL
def test_threads_share_one_jitted_function_and_its_workspace(rng, cols):
    f = tj.jit(_column_softmax_sums)
    xs = [rng.standard_normal((64, cols)).astype(np.float32) for _ in range(4)]
    wants = [_column_softmax_sums(x) for x in xs]
    executable = f.lower(xs[0]).compile()
    assert executable.peak_temp_bytes > 0  # a workspace the threads must take turns on
    assert executable._release_gil == (cols == 512)
    f(xs[0])

    def work(k):
        for n in range(200):
            x = xs[(k + n) % 4]
            arg = x if k % 2 == 0 else np.asfortranarray(x)  # odd threads take the Python path
            np.testing.assert_allclose(f(arg), wants[(k + n) % 4], rtol=1e-5, atol=1e-7)

    errors = run_threads(work, 4)
    assert not errors, errors[0]


@needs_c
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc")
def test_100k_fast_calls_do_not_grow_memory():
    x = np.arange(8, dtype=np.float32)
    single = tj.jit(lambda x: x * 2 + 1)
    several = tj.jit(lambda x: (x + 1, [x * 2], {"k": x - 1}))
    gather = tj.jit(lambda x, i: x[i])
    good = np.arange(64) % 8
    bad = np.where(good == 7, 9, good)  # fails after the outputs were allocated: they must be freed

    def calls(n):
        for _ in range(n):
            single(x)
            several(x)
            gather(x, good)
        for _ in range(n // 4):
            try:
                gather(x, bad)
            except IndexError:
                pass
    calls(2_000)
    before = rss_kb()
    calls(100_000)
    after = rss_kb()
    assert after - before <= 2_048, (before, after)  # one leaked 64-byte object per call: ~20 MB


@needs_c
def test_lock_behaves_like_threading_lock():
    lock = _dispatch.Lock()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="unlocked"):
        lock.release()
    taken = []
    lock.acquire()
    thread = threading.Thread(target=lambda: (lock.acquire(), taken.append(1), lock.release()))
    thread.start()
    thread.join(0.05)
    assert not taken  # waiting, without holding the GIL
    lock.release()
    thread.join()
    assert taken == [1]


@needs_c
def test_entry_refuses_bad_keyword_layouts():
    common = dict(main=1, hidden=(), bad_index=1, inputs=[((2,), np.dtype("f4"))], outputs=[], pack="list",
                  on_error=print, lock=None, release_gil=False, owner=None)
    with pytest.raises(TypeError, match="layout"):  # keywords need a positional layout
        _dispatch.Entry(**common, keywords=(_dispatch.LAYOUT_DICT, ("x",), (None,)))
    with pytest.raises(ValueError, match="DICT"):
        _dispatch.Entry(**common, layout=(), keywords=(_dispatch.LAYOUT_TUPLE, (None,)))
    with pytest.raises(ValueError, match="leaves"):
        _dispatch.Entry(**common, layout=(None,), keywords=(_dispatch.LAYOUT_DICT, ("x",), (None,)))
    entry = _dispatch.Entry(**common, layout=(), keywords=(_dispatch.LAYOUT_DICT, ("x",), (None,)))
    assert entry is not None


@needs_c
def test_entry_refuses_bad_specs():
    with pytest.raises(TypeError, match="spec"):
        _dispatch.Entry(main=1, hidden=(), bad_index=1, inputs=[((2,), "f4")], outputs=[], pack="list",
                        on_error=print, lock=None, release_gil=False, owner=None)
    with pytest.raises(ValueError, match="pack"):
        _dispatch.Entry(main=1, hidden=(), bad_index=1, inputs=[], outputs=[], pack="leaf",
                        on_error=print, lock=None, release_gil=False, owner=None)


# ---- without the extension ----------------------------------------------------------------------
def test_without_the_extension_calls_take_the_python_path():
    child = textwrap.dedent("""
        import sys
        sys.modules["tracejit._dispatch"] = None  # as if it had not been built: importing it fails
        import numpy as np, tracejit as tj
        f = tj.jit(lambda x, i: (x * 2 + 1)[i])
        x = np.arange(8, dtype=np.float32)
        assert not hasattr(f, "_fast_entries")
        for _ in range(2):
            np.testing.assert_array_equal(f(x, np.array([0, 7])), np.array([1, 15], np.float32))
        try:
            f(x, np.array([8]))
        except IndexError as e:
            print(e)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "index 8 is out of bounds for axis 0 with size 8" in proc.stdout


@pytest.mark.parametrize("tree", [{"a": 1, "b": [2, (3, None)], "z": ()}, {(1, 2): 5, (0, 1): 6}, {1: 2, 0: [3]},
                                  ((1,),), [[]], None, (None,), {"k": {"j": [4, 5]}}])
def test_the_output_unflattener_builds_what_pytree_unflatten_builds(tree):
    from tracejit import pytree
    from tracejit.api import _unflattener

    _, treedef = pytree.flatten(tree)
    outs = [object() for _ in range(treedef.num_leaves)]
    got, want = _unflattener(treedef)(outs), pytree.unflatten(treedef, outs)
    assert got == want and repr(pytree.flatten(got)[1]) == repr(treedef)
    assert [id(x) for x in pytree.flatten(got)[0]] == [id(x) for x in outs]
