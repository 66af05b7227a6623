"""Tracing plain numpy code: protocols, pytrees, static arguments, promotion, and the errors."""
import os

import numpy as np
import pytest

import tracejit as tj
from tracejit.ir.interpret import evaluate
from tracejit.trace import trace

THIS_FILE = os.path.basename(__file__)


def traced_graph(fun, *args):
    return trace(fun, args).graph


def run_interpreted(fun, *args):
    traced = trace(fun, args)
    leaves = [np.asarray(a) for a in _leaves(args)]
    return evaluate(traced.graph, leaves)


def _leaves(tree):
    from tracejit import pytree

    return pytree.flatten(tree)[0]


# ---- numpy protocols record nodes ----------------------------------------------------------
@pytest.mark.parametrize(
    "fun, prims",
    [
        (lambda x: np.tanh(x), {"tanh"}),  # __array_ufunc__
        (lambda x: np.sum(x, axis=1), {"sum"}),  # __array_function__
        (lambda x: x.sum(), {"sum"}),  # method
        (lambda x: x @ x.T, {"matmul", "transpose"}),  # operators and properties
        (lambda x: 2.0 - x, {"subtract", "constant"}),  # reflected operator
        (lambda x: np.where(x > 0, x, 0.0), {"where", "greater"}),
        (lambda x: x[1:, ::2], {"slice"}),
        (lambda x: x[np.arange(3), np.array([0, 1, 2])], {"gather"}),
        (lambda x: x.reshape(-1), {"reshape"}),
        (lambda x: np.maximum.reduce(x, axis=0), {"max"}),
    ],
)
def test_protocols_record_primitives(fun, prims):
    graph = traced_graph(fun, np.ones((3, 4), np.float32))
    recorded = {node.prim.name for node in graph.nodes}
    assert prims <= recorded, recorded


def test_traced_values_match_numpy():
    def f(x, y):
        h = np.tanh(x @ y + 1.0)
        return (h - h.mean(axis=0, keepdims=True)) / (h.std(axis=0) + 1e-5), h.max(), np.argmax(h, axis=1)

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    for got, want in zip(run_interpreted(f, x, y), f(x, y)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)


def test_source_lines_are_recorded():
    graph = traced_graph(lambda x: np.exp(x), np.ones(3))
    (node,) = [n for n in graph.nodes if n.prim.name == "exp"]
    assert node.loc.startswith(THIS_FILE + ":")


# ---- promotion: numpy 2 / NEP 50 -----------------------------------------------------------
@pytest.mark.parametrize(
    "fun, arg",
    [
        (lambda x: x * 0.5, np.ones(3, np.float32)),  # Python float does not widen float32
        (lambda x: x * np.float64(0.5), np.ones(3, np.float32)),  # numpy float64 does
        (lambda x: x + 1, np.ones(3, np.int32)),
        (lambda x: x / 2, np.ones(3, np.int32)),  # true division of ints is float64
        (lambda x: np.exp(x), np.ones(3, np.int64)),
        (lambda x: x > 0.5, np.ones(3, np.float32)),
        (lambda x: x.sum(), np.ones(3, np.int32)),  # int32 sums in int64
        (lambda x: x.mean(), np.ones(3, np.int32)),
        (lambda x: (x > 0) & (x < 2), np.ones(3, np.float32)),
        (lambda x: x.astype(np.float64) * x, np.ones(3, np.float32)),
    ],
)
def test_promotion_matches_numpy(fun, arg):
    (got,) = run_interpreted(fun, arg)
    want = np.asarray(fun(arg))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_weak_python_scalar_argument_keeps_float32():
    step = tj.jit(lambda w, lr: w - lr * w)
    out = step(np.ones(4, np.float32), 0.1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.float32(0.9) * np.ones(4, np.float32), rtol=1e-6)


# ---- pytrees and static arguments ----------------------------------------------------------
def test_pytrees_in_and_out():
    @tj.jit
    def f(params, xs):
        return {"sum": params["a"] + xs[0], "pair": (params["b"] * 2, None), "list": [xs[1]]}

    params = {"b": np.arange(3.0), "a": np.ones(3)}
    out = f(params, (np.full(3, 2.0), np.zeros(2, np.float32)))
    np.testing.assert_array_equal(out["sum"], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(out["pair"][0], [0.0, 2.0, 4.0])
    assert out["pair"][1] is None
    assert isinstance(out["list"], list) and out["list"][0].dtype == np.float32


def test_static_argnums_and_argnames():
    calls = []

    @tj.jit(static_argnums=1, static_argnames="mode")
    def f(x, n, mode="sum"):
        calls.append(n)
        y = x
        for _ in range(n):  # Python control flow on a static value runs at trace time
            y = y * 2
        return y.sum() if mode == "sum" else y.max()

    x = np.arange(4.0)
    assert f(x, 3) == 48.0
    assert f(x, 3) == 48.0 and len(calls) == 1  # cached
    assert f(x, 2, mode="max") == 12.0 and len(calls) == 2


def test_new_shape_retraces():
    f = tj.jit(lambda x: x * 2)
    assert f(np.ones(3)).shape == (3,)
    assert f(np.ones((2, 5))).shape == (2, 5)


def test_inputs_are_not_modified():
    x = np.arange(6.0).reshape(2, 3)
    before = x.copy()
    tj.jit(lambda a: a * 3 + 1)(x)
    np.testing.assert_array_equal(x, before)


def test_non_contiguous_inputs():
    x = np.arange(24.0).reshape(4, 6)
    f = lambda a: np.exp(a / 10).sum(axis=0)  # noqa: E731
    for view in (x.T, x[:, ::2], x[::-1]):
        np.testing.assert_allclose(tj.jit(f)(view), f(view), rtol=1e-12)


# ---- errors --------------------------------------------------------------------------------
def test_unsupported_numpy_function_names_it_and_the_line():
    def f(x):
        return np.unique(x)  # this line is named in the error

    with pytest.raises(tj.UnsupportedOperation) as info:
        tj.jit(f)(np.ones(3))
    message = str(info.value)
    assert "unique" in message
    assert THIS_FILE in message and "np.unique(x)" in message


def test_an_ndarray_method_we_do_not_trace_names_itself_and_the_line():
    def f(x):
        return x.argsort()  # this line is named in the error

    with pytest.raises(tj.UnsupportedOperation) as info:
        tj.jit(f)(np.ones(3))
    message = str(info.value)
    assert "ndarray.argsort" in message and THIS_FILE in message and "x.argsort()" in message
    with pytest.raises(AttributeError, match="no attribute 'not_a_numpy_name'"):
        tj.jit(lambda x: x.not_a_numpy_name)(np.ones(3))


@pytest.mark.parametrize(
    "body",
    [
        lambda x: x if x.sum() > 0 else -x,  # if
        lambda x: float(x.sum()),
        lambda x: int(x[0]),
        lambda x: bool(x.any() if hasattr(x, "any") else x[0]),
    ],
)
def test_python_control_flow_on_traced_values(body):
    with pytest.raises(tj.TracerConversionError) as info:
        tj.jit(body)(np.ones(3))
    message = str(info.value)
    assert THIS_FILE in message
    for alternative in ("np.where", "tj.cond", "tj.while_loop", "tj.fori_loop"):
        assert alternative in message


def test_while_on_traced_value_names_line():
    def f(x):
        while x.sum() < 10:  # the loop condition needs a concrete value
            x = x * 2
        return x

    with pytest.raises(tj.TracerConversionError, match="while x.sum"):
        tj.jit(f)(np.ones(3))


def test_assignment_into_traced_array_is_unsupported():
    def f(x):
        x[0] = 1.0
        return x

    with pytest.raises(tj.UnsupportedOperation, match="__setitem__"):
        tj.jit(f)(np.ones(3))


def test_boolean_mask_is_unsupported_with_hint():
    with pytest.raises(tj.UnsupportedOperation, match="np.where"):
        tj.jit(lambda x: x[x > 0])(np.ones(3))


def test_shape_error_names_user_line():
    def f(x, y):
        return x + y  # shapes (3,) and (4,)

    with pytest.raises(tj.ShapeError) as info:
        tj.jit(f)(np.ones(3), np.ones(4))
    assert "cannot be broadcast" in str(info.value) and "x + y" in str(info.value)


def test_escaped_tracer_is_reported():
    leaked = []

    @tj.jit
    def f(x):
        leaked.append(x)
        return x

    f(np.ones(2))
    with pytest.raises(tj.TracejitError, match="escaped"):
        tj.jit(lambda y: y + leaked[0])(np.ones(2))


def test_unsupported_dtype_is_named():
    with pytest.raises(tj.DTypeError, match="complex128"):
        tj.jit(lambda x: x * 2)(np.ones(3, np.complex128))
