"""Reliability: unusual inputs at call time, IEEE specials, empty arrays, no writes to inputs and
no aliasing of outputs; and the disk cache under many processes and threads, damaged entries,
killed builds, unsafe permissions, read-only and full folders -- all with libraries that
`tj.jit` itself produced.

Results are compared with numpy running the same code. Anything that must not happen in the test
process (a second process, a library this process must not have mapped before it is damaged)
runs in a subprocess.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import tracejit as tj
from tracejit import pytree
from tracejit.compile import cache
from tracejit.compile.cache import CacheWarning
from tracejit.errors import CacheError, DTypeError, ShapeError
from probes import builds_logged

REPO = Path(__file__).resolve().parent.parent
F32, F64 = np.float32, np.float64


def counting(fun):
    """fun plus a list that grows each time Python runs its body (= each trace)."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        return fun(*args, **kwargs)

    return wrapper, calls


def leaves_of(tree) -> list:
    return pytree.flatten(tree)[0]


def assert_same_as_numpy(got, want, rtol=1e-6, atol=0.0):
    """Same pytree, and per leaf the same shape, dtype and values (NaN where numpy has NaN)."""
    got_leaves, got_tree = pytree.flatten(got)
    want_leaves, want_tree = pytree.flatten(want)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        g, w = np.asarray(g), np.asarray(w)
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)


# ================================================================ inputs at call time
def mlp(params, x):
    return np.tanh(x @ params["W1"] + params["b1"]).sum(axis=1)


def mlp_params(rng, dtype=F32, n_in=3, n_hidden=4):
    return {"W1": rng.standard_normal((n_in, n_hidden)).astype(dtype), "b1": rng.standard_normal(n_hidden).astype(dtype)}


@pytest.mark.parametrize("change", ["dtype", "shape", "rank", "structure", "python-scalar"])
def test_a_changed_signature_retraces_and_is_right(rng, change):
    fun, calls = counting(lambda params, x, scale: mlp(params, x) * scale)
    f = tj.jit(fun)
    params, x = mlp_params(rng), rng.standard_normal((2, 3)).astype(F32)
    assert_same_as_numpy(f(params, x, 2.0), fun(params, x, 2.0), rtol=1e-5)
    if change == "dtype":
        params = {k: v.astype(F64) for k, v in params.items()}
    elif change == "shape":
        x = rng.standard_normal((5, 3)).astype(F32)
    elif change == "rank":
        x = rng.standard_normal((2, 5, 3)).astype(F32)
    elif change == "structure":
        params = {**params, "unused": [np.ones(2, F32), None]}
    new_scale = 3 if change == "python-scalar" else 2.0
    n_traces = len(calls)
    assert_same_as_numpy(f(params, x, new_scale), fun(params, x, new_scale), rtol=1e-5)
    assert len(calls) == n_traces + 2  # once by tj.jit, once by the reference call
    assert_same_as_numpy(f(params, x, new_scale), fun(params, x, new_scale), rtol=1e-5)
    assert len(calls) == n_traces + 3  # the new signature is cached


def test_retrace_log_names_the_argument_path(rng, caplog):
    f = tj.jit(mlp)
    params, x = mlp_params(rng), rng.standard_normal((2, 3)).astype(F32)
    f(params, x)
    with caplog.at_level(logging.INFO, logger="tracejit"):
        f({**params, "W1": params["W1"].astype(F64)}, x)
    assert "params['W1']" in caplog.text and "float64" in caplog.text


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i8"])
def test_byte_swapped_dtypes_compute_in_the_native_dtype(dtype):
    """Any byte order is read; the answer is numpy's, whether the signature is new or the same as
    an earlier call's."""
    x = np.arange(12).reshape(3, 4).astype(dtype)
    fun = lambda x: x * 3 + x.sum(axis=0)  # noqa: E731
    native = x.astype(np.dtype(dtype).newbyteorder("="))
    f = tj.jit(fun)
    assert_same_as_numpy(f(x), fun(native))
    g = tj.jit(fun)
    g(native)  # compiled for the native dtype first: the same signature key must still work
    assert_same_as_numpy(g(x), fun(native))


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.uint8, np.int16, np.uint16])
def test_narrow_dtypes_are_widened_where_numpy_widens_and_refused_where_it_would_not(dtype):
    """Narrow arguments are computed in int32 / float32. Where numpy's result is a wider dtype
    (mixed with float32, converted, compared) the answers are numpy's; where numpy's result keeps
    the narrow dtype (x * 3 wraps around in uint8, x.sum() of uint8 is uint64) it is a DTypeError,
    through reshapes, transposes and indexing too. Before, both were computed widened."""
    x = np.arange(12).reshape(3, 4).astype(dtype)
    ones = np.ones(4, np.float32)
    for fun in (lambda x: x.astype(np.float32) * 3 + x.astype(np.int64).sum(axis=0), lambda x: x + ones,
                lambda x: (x > 3, x.T[0] == 2, x.astype(np.float64).mean(axis=1))):
        assert_same_as_numpy(tj.jit(fun)(x), fun(x))
    for fun in (lambda x: x * 3, lambda x: x.T + x.T, lambda x: x[0] - 1, lambda x: np.max(x.reshape(-1)),
                lambda x: np.where(x > 3, x, x), lambda x: np.concatenate([x, x]),
                lambda x: x.astype(np.int32).astype(dtype), lambda x: np.tril(x), lambda x: np.pad(x, 1),
                lambda x: np.zeros_like(x) + x, lambda x: np.full_like(x, 7) * x) + \
            ((lambda x: x.mean(axis=0), lambda x: x.std()) if dtype == np.float16 else ()):
        with np.errstate(all="ignore"):
            assert fun(x).dtype == np.dtype(dtype)  # numpy keeps the narrow dtype here
        with pytest.raises(DTypeError, match="a dtype tracejit does not compute in"):
            tj.jit(fun)(x)
    cumulative = lambda x: np.cumsum(x, axis=1)  # noqa: E731 - uint8 -> uint64, int8 -> int64 in numpy
    if cumulative(x).dtype in (np.int64, np.float64):
        assert_same_as_numpy(tj.jit(cumulative)(x), cumulative(x))
    else:
        with pytest.raises(DTypeError, match="np.cumsum of"):
            tj.jit(cumulative)(x)


def test_pad_converts_its_constant_as_numpy_does():
    """numpy's pad raises for 2**40 into int32 and truncates 2.7; so does the traced one."""
    x = np.arange(4, dtype=np.int32)
    for value in (2.7, -3, 0):
        padded = tj.jit(lambda x: np.pad(x, 1, constant_values=value))(x)
        assert_same_as_numpy(padded, np.pad(x, 1, constant_values=value))
    with pytest.raises(OverflowError):
        tj.jit(lambda x: np.pad(x, 1, constant_values=2**40))(x)


@pytest.mark.parametrize("leaf, what", [
    (np.ones(3, np.complex64), "complex64"), ("text", "<U4"), (object(), "object"), ({1, 2}, "object"),
])
def test_an_unsupported_leaf_names_its_path(leaf, what):
    f = tj.jit(lambda params, x: params["W"] * x)
    with pytest.raises(DTypeError) as info:
        f({"W": np.ones(3, F32), "bad": leaf}, np.ones(3, F32))
    assert "params['bad']" in str(info.value) and what in str(info.value)


@pytest.mark.parametrize("layout", ["transposed", "negative-strides", "step-2", "broadcast-view", "read-only",
                                    "unaligned", "fortran", "0-d", "numpy-scalar", "list-of-scalars"])
def test_any_memory_layout_gives_numpy_s_answer(rng, layout):
    base = rng.standard_normal((6, 6)).astype(F32)
    x = {
        "transposed": base.T,
        "negative-strides": base[::-1, ::-1],
        "step-2": base[::2, 1::2],
        "broadcast-view": np.broadcast_to(base[0], (6, 6)),
        "read-only": np.frombuffer(base.tobytes(), F32).reshape(6, 6),
        "unaligned": np.frombuffer(b"\0" + base.tobytes(), F32, count=36, offset=1).reshape(6, 6),
        "fortran": np.asfortranarray(base),
        "0-d": np.array(1.5, F32),
        "numpy-scalar": F32(1.5),
        "list-of-scalars": [F32(1.5), F32(-2.0)],
    }[layout]
    fun = lambda x: pytree.tree_map(lambda v: np.tanh(v) * 2 + v.sum(), x)  # noqa: E731
    f = tj.jit(fun)
    for _ in range(2):  # the first call traces; the second goes through the compiled fast path
        assert_same_as_numpy(f(x), fun(x), rtol=1e-5, atol=1e-6)


# ---- calling a compiled Executable (Lowered.compile()) directly with wrong arguments -------
@pytest.fixture
def mlp_executable(rng):
    params, x = mlp_params(rng), rng.standard_normal((2, 3)).astype(F32)
    return tj.jit(mlp).lower(params, x).compile(), params, x


def test_executable_takes_the_flattened_leaves(mlp_executable):
    exe, params, x = mlp_executable
    (out,) = exe(params["W1"], params["b1"], x)
    assert_same_as_numpy(out, mlp(params, x), rtol=1e-5)


@pytest.mark.parametrize("wrong, error, expected", [
    ("dtype", TypeError, ["params['W1']", "float64", "float32"]),
    ("shape", ValueError, ["params['W1']", "(3, 5)", "(3, 4)"]),
    ("rank", ValueError, ["x", "(2, 1, 3)", "(2, 3)"]),
    ("too-few", TypeError, ["3", "params['W1'], params['b1'], x", "missing"]),
    ("too-many", TypeError, ["3", "params['W1'], params['b1'], x", "4"]),
    ("pytree", TypeError, ["3", "params['W1'], params['b1'], x"]),
    ("dict-leaf", TypeError, ["params['b1']", "dict", "float32[4]"]),
    ("string-leaf", TypeError, ["x", "str", "float32[2, 3]"]),
])
def test_executable_errors_name_the_argument_and_what_was_expected(mlp_executable, wrong, error, expected):
    exe, params, x = mlp_executable
    W1, b1 = params["W1"], params["b1"]
    args = {
        "dtype": (W1.astype(F64), b1, x),
        "shape": (np.ones((3, 5), F32), b1, x),
        "rank": (W1, b1, x[:, None, :]),
        "too-few": (W1, b1),
        "too-many": (W1, b1, x, x),
        "pytree": (params, x),
        "dict-leaf": (W1, {"b": b1}, x),
        "string-leaf": (W1, b1, "x"),
    }[wrong]
    with pytest.raises(error) as info:
        exe(*args)
    for text in expected:
        assert text in str(info.value), str(info.value)


def test_python_int_too_big_for_int64_is_a_clear_error():
    f = tj.jit(lambda n, x: x * n)
    x = np.ones(2, np.int64)
    np.testing.assert_array_equal(f(3, x), x * 3)
    with pytest.raises((TypeError, ValueError, OverflowError)) as info:
        f(2 ** 70, x)
    assert "n" in str(info.value) and "int64" in str(info.value)


# ================================================================ NaN, inf, signed zeros
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e-3])


def special_arrays(dtype, shape=(37, 19), seed=0):
    """Two arrays long enough for the vector loops and their tails, with NaN, +-inf and +-0
    sprinkled over random positions (several per row and column)."""
    r = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        a = r.standard_normal(shape).astype(dtype)
        a.ravel()[r.integers(0, a.size, a.size // 6)] = r.choice(SPECIALS, a.size // 6)
        out.append(a)
    return out


def assert_ieee_equal(got, want, rtol):
    """Same dtype and shape, NaN exactly where numpy has NaN, inf with the same sign, the sign of
    zeros kept, other values within rtol (transcendentals differ from numpy by a few ulp)."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg="+inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg="-inf positions")
    if want.dtype.kind == "f":
        zeros = want == 0
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg="signed zeros")
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


IEEE_BINARY = {
    "maximum": np.maximum, "minimum": np.minimum, "add": np.add, "subtract": np.subtract,
    "multiply": np.multiply, "divide": np.divide, "power": lambda a, b: np.abs(a) ** b,
    "compare": lambda a, b: (a < b, a >= b, a == b, a != b), "where": lambda a, b: np.where(a > b, a, b),
}
IEEE_UNARY = {
    "max-axis0": lambda a: a.max(axis=0), "max-axis1": lambda a: a.max(axis=1), "min-all": lambda a: a.min(),
    "max-keepdims-sub": lambda a: a - a.max(axis=1, keepdims=True), "argmax": lambda a: a.argmax(axis=0),
    "argmin": lambda a: a.argmin(axis=1), "sum": lambda a: a.sum(axis=0), "mean": lambda a: a.mean(axis=1),
    "log-of-negative": lambda a: np.log(a - 0.5), "reciprocal": lambda a: 1 / a, "zero-over-zero": lambda a: a / (a * 0),
    "exp-overflow": lambda a: np.exp(a * 200), "tanh": lambda a: np.tanh(a * np.inf), "sqrt": np.sqrt,
    "abs-negative": lambda a: (np.abs(a), -a), "sign": np.sign, "clip": lambda a: np.clip(a, -0.5, 0.5),
    "softmax": lambda a: np.exp(a - a.max(axis=1, keepdims=True)) / np.exp(a - a.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True),
    "logsumexp": lambda a: np.log(np.exp(a).sum(axis=1)), "matmul": lambda a: a @ a.T[:, :5],
    "relu": lambda a: np.maximum(a, 0), "square": np.square, "log1p": lambda a: np.log1p(a - 1.5),
}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", sorted(IEEE_BINARY) + sorted(IEEE_UNARY))
def test_nan_inf_and_signed_zeros_propagate_as_in_numpy(dtype, name):
    a, b = special_arrays(dtype)
    fun, args = (IEEE_BINARY[name], (a, b)) if name in IEEE_BINARY else (IEEE_UNARY[name], (a,))
    with np.errstate(all="ignore"):
        want = fun(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of the compiled code
        got = tj.jit(fun)(*args)
    rtol = 1e-5 if dtype == F32 else 1e-12
    if name in ("sum", "mean", "matmul", "logsumexp", "softmax"):
        rtol = 1e-4 if dtype == F32 else 1e-10  # summation order differs from numpy's pairwise sum
    for g, w in zip(leaves_of(got), leaves_of(want)):
        assert_ieee_equal(g, w, rtol)


# ================================================================ empty arrays, zero-size axes
EMPTY_CASES = {
    "sum-over-empty-axis": (lambda x: x.sum(axis=0), [(0, 3)]),
    "sum-keeping-empty-axis": (lambda x: x.sum(axis=1), [(0, 3)]),
    "sum-all-empty": (lambda x: x.sum(), [(0, 3)]),
    "sum-middle-axis": (lambda x: x.sum(axis=1), [(2, 0, 3)]),
    "mean-of-empty-is-nan": (lambda x: x.mean(axis=0), [(0, 3)]),
    "mean-all-empty": (lambda x: x.mean(), [(4, 0)]),
    "var-of-empty": (lambda x: x.var(axis=0), [(0, 3)]),
    "max-over-nonempty-axis": (lambda x: x.max(axis=1), [(0, 3)]),
    "elementwise": (lambda x: np.exp(x) * 2 + 1, [(0, 3)]),
    "broadcast": (lambda x, y: x + y, [(0, 3), (3,)]),
    "matmul-empty-k": (lambda x, y: x @ y, [(4, 0), (0, 5)]),
    "matmul-empty-m": (lambda x, y: x @ y, [(0, 3), (3, 5)]),
    "matmul-empty-n": (lambda x, y: x @ y, [(2, 3), (3, 0)]),
    "reshape-transpose": (lambda x: x.reshape(3, 0).T, [(0, 3)]),
    "empty-slice": (lambda x: x[2:2] * 2, [(5,)]),
    "concatenate": (lambda x, y: np.concatenate([x, y]), [(0, 3), (2, 3)]),
    "softmax-rows": (lambda x: np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1), [(0, 3)]),
    "grad-of-sum": (tj.grad(lambda x: (x ** 2).sum()), [(0, 3)]),
    "grad-of-mean-rows": (tj.grad(lambda x: (x ** 2).sum(axis=1).mean()), [(0, 3)]),
}


@pytest.mark.parametrize("name", sorted(EMPTY_CASES))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_empty_arrays_and_zero_size_axes(name, dtype):
    fun, shapes = EMPTY_CASES[name]
    args = [np.ones(s, dtype) for s in shapes]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "mean of empty slice"
        want = fun(*args)
    assert_same_as_numpy(tj.jit(fun)(*args), want)


def test_empty_gathers():
    x, none = np.ones((4, 3), F32), np.zeros(0, np.int64)
    for fun, args in [(lambda x, i: x[i], (x, none)), (lambda x, i: x[np.arange(0), i], (np.ones((0, 3), F32), none))]:
        assert_same_as_numpy(tj.jit(fun)(*args), fun(*args))


@pytest.mark.parametrize("fun", [lambda x: x.max(axis=0), lambda x: x.argmax(axis=0), lambda x: x.min()],
                         ids=["max", "argmax", "min"])
def test_a_reduction_without_identity_over_an_empty_axis_raises_like_numpy(fun):
    x = np.ones((0, 3), F32)
    with pytest.raises(ValueError):
        fun(x)
    with pytest.raises(ShapeError, match="zero-size"):  # ShapeError is a ValueError, as numpy's
        tj.jit(fun)(x)


# ================================================================ inputs never written, no aliasing
BIG = np.arange(3000.0, dtype=F32).reshape(30, 100)  # large enough to be a hidden constant


def _train_step(params, x):
    loss, grads = tj.value_and_grad(lambda p: (np.tanh(x @ p["W1"] + p["b1"]) ** 2).mean())(params)
    return {k: params[k] - 0.1 * grads[k] for k in params}, loss


ALIAS_PROGRAMS = {
    "identity": lambda p, x: x,
    "pair": lambda p, x: (x, x),
    "reshape": lambda p, x: x.reshape(-1),
    "transpose-twice": lambda p, x: x.T.T,
    "reverse-twice": lambda p, x: x[::-1][::-1],
    "slice": lambda p, x: x[1:],
    "broadcast": lambda p, x: np.broadcast_to(x, (2,) + x.shape),
    "same-expression-twice": lambda p, x: (x * 2, x * 2),
    "plus-zero-times-one": lambda p, x: (x + 0, x * 1, x.astype(x.dtype)),
    "dict-of-inputs": lambda p, x: {"a": p["W1"], "b": p["W1"], "c": p},
    "hidden-constant": lambda p, x: (x, BIG, BIG[:, :3]),
    "python-constants": lambda p, x: (np.float32(1.0), 2.0, x),
    "train-step": _train_step,
    "grad-of-sum": lambda p, x: tj.grad(lambda x: x.sum())(x),
}


def _alias_inputs(rng):
    return mlp_params(rng, n_in=4, n_hidden=3), rng.standard_normal((5, 4)).astype(F32)


def _digest(arrays) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays]


@pytest.mark.parametrize("name", sorted(ALIAS_PROGRAMS))
def test_inputs_are_never_written_and_outputs_never_alias(rng, name):
    fun = tj.jit(ALIAS_PROGRAMS[name])
    params, x = _alias_inputs(rng)
    inputs = leaves_of((params, x)) + [BIG]
    before = _digest(inputs)
    first = [np.asarray(o) for o in leaves_of(fun(params, x))]
    second = [np.asarray(o) for o in leaves_of(fun(params, x))]
    assert _digest(inputs) == before
    for n, out in enumerate(first):
        others = inputs + first[:n] + second  # nor the next call's outputs (no buffer reuse)
        assert not any(np.shares_memory(out, other) for other in others), n
        assert out.flags.writeable
    expected = [o.copy() for o in second]
    for out in first + second:  # writing to outputs changes neither the inputs nor later results
        out[...] = 7
    assert _digest(inputs) == before
    for got, want in zip(leaves_of(fun(params, x)), expected):
        np.testing.assert_array_equal(got, want)


# ================================================================ the disk cache, with real tj.jit libraries
# The same source defines the step in child processes and in this one: a tiny tanh MLP trained
# with value_and_grad, and a small second function (so a cache holds two different libraries).
STEP_CODE = textwrap.dedent("""
    import numpy as np
    import tracejit as tj

    def loss_fn(p, x, y):
        h = np.tanh(x @ p["W1"] + p["b1"])
        logits = h @ p["W2"] + p["b2"]
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        return -logp[np.arange(x.shape[0]), y].mean()

    def train_step(p, x, y, lr):
        loss, grads = tj.value_and_grad(loss_fn)(p, x, y)
        return {k: p[k] - lr * grads[k] for k in p}, loss

    def other(x):
        return np.exp(-x * x).sum(axis=0)

    def step_inputs(seed=0):
        r = np.random.default_rng(seed)
        p = {"W1": (r.standard_normal((5, 8)) * 0.5).astype(np.float32), "b1": np.zeros(8, np.float32),
             "W2": (r.standard_normal((8, 3)) * 0.5).astype(np.float32), "b2": np.zeros(3, np.float32)}
        return p, r.standard_normal((6, 5)).astype(np.float32), r.integers(0, 3, 6), 0.1
""")
STEP = {}
exec(STEP_CODE, STEP)

# A child: run the step (and `other`) once, print results, the cache counts and the library paths.
CHILD = STEP_CODE + textwrap.dedent("""
    import json, os, sys, time, warnings
    from tracejit.compile import cache
    start = float(os.environ.get("TJ_TEST_START_AT", "0"))
    time.sleep(max(0.0, start - time.time()))  # children started together begin together
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = tj.jit(train_step)
        args = step_inputs()
        new_params, loss = step(*args)
        exe = step.lower(*args).compile()
        other_path = str(tj.jit(other).lower(args[1]).compile().library.path)
    print(json.dumps({"loss": float(loss), "params": {k: v.tolist() for k, v in new_params.items()},
                      "stats": cache.stats, "step_lib": str(exe.library.path), "other_lib": other_path,
                      "warnings": [str(w.message) for w in caught]}))
""")


def numpy_train_step(p, x, y, lr):
    """The step's loss and update by hand in numpy: the reference every run is checked against."""
    h = np.tanh(x @ p["W1"] + p["b1"])
    logits = h @ p["W2"] + p["b2"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = -np.log(prob[rows, y]).mean()
    dlogits = prob.copy()
    dlogits[rows, y] -= 1
    dlogits /= x.shape[0]
    dh = dlogits @ p["W2"].T * (1 - h * h)
    grads = {"W2": h.T @ dlogits, "b2": dlogits.sum(axis=0), "W1": x.T @ dh, "b1": dh.sum(axis=0)}
    return {k: p[k] - lr * grads[k] for k in p}, loss


EXPECTED_PARAMS, EXPECTED_LOSS = numpy_train_step(*STEP["step_inputs"]())


def assert_step_result(params, loss):
    assert abs(float(loss) - EXPECTED_LOSS) <= 1e-5 * abs(EXPECTED_LOSS)
    for k, want in EXPECTED_PARAMS.items():
        got = np.asarray(params[k])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=k)


def run_step_here():
    """The step jitted in this process (a new Jitted, nothing remembered in memory)."""
    cache._loaded.clear()
    params, loss = tj.jit(STEP["train_step"])(*STEP["step_inputs"]())
    assert_step_result(params, loss)
    assert params["W1"].dtype == np.float32 and np.asarray(loss).dtype == np.float32


def child_env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    return {k: v for k, v in env.items() if v is not None}


def start_children(n: int, **extra_env) -> list[subprocess.Popen]:
    """n children started at once, released together a moment later."""
    env = child_env(**{"TJ_TEST_START_AT": str(time.time() + 1.0), **extra_env})
    return [subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(n)]


def finish_child(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert_step_result(result["params"], result["loss"])
    return result


def run_child(**extra_env) -> dict:
    return finish_child(start_children(1, TJ_TEST_START_AT="0", **extra_env)[0])


@pytest.fixture(autouse=True)
def fresh_cache_state():
    """Forget libraries loaded and counts made by earlier tests (the cache folder is per test)."""
    cache._loaded.clear()
    cache._fallback_roots.clear()
    cache.stats.update(dict.fromkeys(cache.stats, 0))


def cache_dir() -> Path:
    return Path(os.environ["TRACEJIT_CACHE_DIR"])


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory) -> tuple[Path, dict]:
    """A cache folder filled once by a child process (the step and `other`): tests copy it."""
    root = tmp_path_factory.mktemp("filled") / "cache"
    return root, run_child(TRACEJIT_CACHE_DIR=str(root), TRACEJIT_CC=None)


@pytest.fixture
def copied_cache(filled_cache) -> tuple[Path, Path]:
    """This test's cache: a fresh copy (new inodes, so nothing of it is mapped in this process).
    Returns (entry of the step's library, entry of the other library)."""
    source, result = filled_cache
    shutil.copytree(source, cache_dir(), symlinks=True)
    moved = lambda path: cache_dir() / Path(path).parent.relative_to(source)  # noqa: E731
    return moved(result["step_lib"]), moved(result["other_lib"])


# ---- many processes, many threads
def test_processes_started_at_once_on_an_empty_cache_compile_once(logging_cc):
    procs = start_children(6)
    results = [finish_child(p) for p in procs]  # each checks its numbers against numpy
    assert builds_logged(logging_cc) == 2  # the step and `other`, once each
    assert sum(r["stats"]["compiles"] for r in results) == 2
    assert len({r["step_lib"] for r in results}) == 1
    assert not any(r["warnings"] for r in results)


def test_threads_sharing_one_jitted_function_on_an_empty_cache(logging_cc):
    step = tj.jit(STEP["train_step"])
    barrier = threading.Barrier(8)
    results, errors = [], []

    def work():
        try:
            barrier.wait()
            for _ in range(3):
                results.append(step(*STEP["step_inputs"]()))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 24
    for params, loss in results:
        assert_step_result(params, loss)
    assert builds_logged(logging_cc) == 1


# ---- damaged entries
def _truncate_half(entry, other):
    so = entry / "lib.so"
    so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])


def _truncate_empty(entry, other):
    (entry / "lib.so").write_bytes(b"")


def _flip_bytes(entry, other):
    data = bytearray((entry / "lib.so").read_bytes())
    for i in range(4096, len(data), 1021):
        data[i] ^= 0x5A
    (entry / "lib.so").write_bytes(bytes(data))


def _swap_with_other_library(entry, other):
    """A valid library, but of another program: only the checksum can tell."""
    shutil.copyfile(other / "lib.so", entry / "lib.so")


def _rewrite_meta(**changes):
    def damage(entry, other):
        meta = json.loads((entry / "meta.json").read_text())
        meta.update(changes)
        (entry / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return damage


DAMAGES = {
    "lib-truncated-half": _truncate_half,
    "lib-truncated-empty": _truncate_empty,
    "lib-bytes-flipped": _flip_bytes,
    "lib-of-another-program": _swap_with_other_library,
    "lib-missing": lambda entry, other: (entry / "lib.so").unlink(),
    "meta-garbage": lambda entry, other: (entry / "meta.json").write_text("{not json"),
    "meta-empty": lambda entry, other: (entry / "meta.json").write_text(""),
    "meta-a-list": lambda entry, other: (entry / "meta.json").write_text("[1, 2]"),
    "meta-no-checksum": _rewrite_meta(checksum=None),
    "meta-wrong-checksum": _rewrite_meta(checksum="0" * 64),
    "meta-other-version": _rewrite_meta(version="0.0.1-stale"),
    "meta-missing": lambda entry, other: (entry / "meta.json").unlink(),
    "source-missing": lambda entry, other: (entry / "source.c").unlink(),
    "entry-emptied": lambda entry, other: [p.unlink() for p in entry.iterdir()],
    "entry-is-a-file": lambda entry, other: (shutil.rmtree(entry), entry.write_bytes(b"junk")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_entry_is_detected_removed_and_rebuilt_with_a_warning(copied_cache, damage):
    entry, other = copied_cache
    DAMAGES[damage](entry, other)
    with pytest.warns(CacheWarning, match=re.escape(str(entry))):
        run_step_here()
    assert cache.stats["compiles"] == 1
    assert cache._problem(entry) is None  # repaired in place
    cache.stats.update(dict.fromkeys(cache.stats, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_step_here()  # and now a plain disk hit
    assert cache.stats["compiles"] == 0 and cache.stats["disk_hits"] == 1


def test_an_intact_copy_is_a_disk_hit_without_warnings(copied_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_step_here()
    assert cache.stats == {"compiles": 0, "disk_hits": 1, "memory_hits": 0}


def test_processes_started_at_once_on_a_damaged_entry_repair_it_once(copied_cache):
    entry, other = copied_cache
    _swap_with_other_library(entry, other)
    results = [finish_child(p) for p in start_children(4)]
    assert sum(r["stats"]["compiles"] for r in results) == 1  # (a logging compiler would change the key)
    warned = [w for r in results for w in r["warnings"] if "broken" in w]
    assert len(warned) == 1 and str(entry) in warned[0]
    assert cache._problem(entry) is None


def test_damaged_toolchain_facts_are_probed_again(copied_cache):
    (cache_dir() / "toolchain.json").write_text("{garbage")
    from tracejit.compile import toolchain

    toolchain._probes.clear()
    run_step_here()
    assert cache.stats["compiles"] == 0
    assert isinstance(json.loads((cache_dir() / "toolchain.json").read_text()), dict)


def test_a_build_killed_halfway_leaves_nothing_that_gets_loaded(tmp_path):
    """A child is SIGKILLed while its compiler is writing the library; the next process builds
    a sound entry (the lock died with the child) and loads nothing half-written."""
    marker = tmp_path / "compiling"
    slow_cc = tmp_path / "slowcc"
    slow_cc.write_text(f'#!/bin/sh\ncase "$*" in *build-*) gcc "$@"; touch {marker}; sleep 60;; '
                       f'*) exec gcc "$@";; esac\n')
    slow_cc.chmod(0o755)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=child_env(TRACEJIT_CC=str(slow_cc)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the child never reached its compiler"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert cache.list_entries(cache_dir()) == []  # nothing was published
    assert any((cache_dir() / "tmp").iterdir())  # only the dead child's scratch folder
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_step_here()
    assert cache.stats["compiles"] == 1
    assert [cache._problem(e.path) for e in cache.list_entries(cache_dir())] == [None]


# ---- permissions and ownership
@pytest.mark.parametrize("target, mode", [("root", 0o770), ("root", 0o707), ("bucket", 0o777), ("entry", 0o720),
                                          ("entry", 0o702), ("lib", 0o620), ("lib", 0o606)])
def test_a_cache_path_others_can_write_is_refused_naming_it(copied_cache, target, mode):
    entry, _ = copied_cache
    path = {"root": cache_dir(), "bucket": entry.parent, "entry": entry, "lib": entry / "lib.so"}[target]
    path.chmod(mode)
    with pytest.raises(CacheError, match=re.escape(str(path))) as info:
        run_step_here()
    assert "chmod go-w" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
@pytest.mark.parametrize("target", ["root", "entry", "lib"])
def test_a_cache_path_owned_by_another_user_is_refused(copied_cache, target):
    """Mode 0o700 does not help when the owner is someone else: that user can write it."""
    entry, _ = copied_cache
    path = {"root": cache_dir(), "entry": entry, "lib": entry / "lib.so"}[target]
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(CacheError, match=re.escape(str(path))):
        run_step_here()


def test_a_new_cache_is_private(tmp_path):
    run_step_here()
    root = cache_dir()
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0 or path.suffix == ".lock" and mode & 0o022 == 0, (path, oct(mode))


# ---- names on disk never come from user text
def test_file_names_and_c_source_do_not_take_user_text(tmp_path):
    """Function names and dict keys end up in the C source (as comments and identifiers) but
    never as code, and never in a path of the cache."""
    def fun(p):
        return np.tanh(p["a */ b"]) + p["W-1\n#define x 0"] * p["ü"] + p["../../etc"]

    fun.__name__ = "evil */ } /* ../../x"  # as code, the brace would not compile
    p = {k: np.full(3, n + 1.0, F32) for n, k in enumerate(["a */ b", "W-1\n#define x 0", "ü", "../../etc"])}
    np.testing.assert_allclose(tj.jit(fun)(p), fun(p), rtol=1e-6)
    names = {path.name for path in cache_dir().rglob("*")}
    allowed = re.compile(r"^([0-9a-f]{2}|[0-9a-f]{64}(\.lock)?|lib\.so|source\.c|meta\.json|tmp|locks|toolchain\.json"
                         r"|programs|program\.json|hidden-\d+\.bin|usage\.json|usage\.lock)$")
    assert all(allowed.match(n) for n in names), sorted(n for n in names if not allowed.match(n))


# ---- eviction, read-only and full folders
def test_size_cap_evicts_least_recently_used_jit_libraries(copied_cache, monkeypatch):
    entry, other = copied_cache
    os.utime(other, (1, 1))  # `other` is the least recently used
    sizes = {e.path: e.size for e in cache.list_entries(cache_dir())}  # each with its programs
    monkeypatch.setenv("TRACEJIT_CACHE_MAX_BYTES", str(sizes[entry] + sizes[other] + 1))
    f = tj.jit(lambda x: np.sin(x) * 3)
    x = np.linspace(-1, 1, 7).astype(F32)
    np.testing.assert_allclose(f(x), np.sin(x) * 3, rtol=1e-6)
    assert entry.exists() and not other.exists()
    cache.stats.update(dict.fromkeys(cache.stats, 0))
    run_step_here()  # the survivor still loads
    assert cache.stats["compiles"] == 0


def scale_by_table(x):
    return x * TABLE  # TABLE is large: it is passed by pointer and stored in the program entry


TABLE = np.random.default_rng(3).standard_normal(100_000).astype(F32)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_size_cap_counts_program_entries_with_their_library(monkeypatch):
    x = np.ones(TABLE.size, F32)
    np.testing.assert_array_equal(tj.jit(scale_by_table)(x), scale_by_table(x))
    (entry,) = cache.list_entries(cache_dir())
    program_bytes = folder_bytes(cache_dir() / "programs")
    assert program_bytes > TABLE.nbytes
    assert entry.size == cache._entry_size(entry.path) + program_bytes
    assert cache.info()["bytes"] == entry.size
    # a cap that the first library fills with its program: the next build evicts both
    monkeypatch.setenv("TRACEJIT_CACHE_MAX_BYTES", str(entry.size))
    os.utime(entry.path, (1, 1))
    np.testing.assert_allclose(tj.jit(lambda x: np.sin(x) * 3)(x[:7]), np.sin(x[:7]) * 3, rtol=1e-6)
    assert not entry.path.exists()
    assert folder_bytes(cache_dir() / "programs") < TABLE.nbytes  # the table's program went with it


def _unshare_available() -> str | None:
    """Why mounting a private tmpfs is impossible here (None if it works)."""
    if shutil.which("unshare") is None:
        return "the unshare command is missing"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a private namespace ({probe.stderr.strip()})"


def run_child_on_tmpfs(tmp_path, size: str, setup: str = "") -> dict:
    """A child whose cache folder is a fresh tmpfs of `size` (after `setup`, a shell line)."""
    why = _unshare_available()
    if why:
        pytest.skip(why)
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    shell = (f"mount -t tmpfs -o size={size},mode=700 tmpfs {mount} && {setup} "
             f"{sys.executable} {script}")
    out = subprocess.run(["unshare", "-m", "sh", "-c", shell], env=child_env(TRACEJIT_CACHE_DIR=str(mount / "cache")),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert_step_result(result["params"], result["loss"])
    return result


def test_a_read_only_cache_folder_falls_back_to_a_temporary_one(tmp_path):
    mount = tmp_path / "mnt"
    fill = f"{sys.executable} {tmp_path / 'child.py'} > /dev/null && mount -o remount,ro {mount} &&"
    result = run_child_on_tmpfs(tmp_path, "64m", setup=fill)
    assert any("cannot write" in w for w in result["warnings"]), result["warnings"]
    assert not result["step_lib"].startswith(str(mount))


def test_a_full_cache_folder_falls_back_to_a_temporary_one(tmp_path):
    result = run_child_on_tmpfs(tmp_path, "8k")  # room for folders, not for a library
    assert any("using" in w for w in result["warnings"]), result["warnings"]
    assert not result["step_lib"].startswith(str(tmp_path / "mnt"))
