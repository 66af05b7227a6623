"""The public transformations: jit's signature handling, grad/vjp composed with jit, make_ir and
its numpy rendering. Results are compared with numpy running the same code."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import tracejit as tj
from tracejit import pytree
from tracejit.ir.interpret import evaluate


# ---- jit: signatures, retracing, pytrees, dtypes -----------------------------------------------
def counting(fun):
    """fun plus a counter of how often Python runs its body (= how often it is traced)."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        return fun(*args, **kwargs)

    wrapper.__name__ = fun.__name__
    wrapper.__wrapped__ = fun
    return wrapper, calls


def test_retrace_only_on_new_shapes_and_dtypes():
    fun, calls = counting(lambda x: np.tanh(x) * 2.0)
    f = tj.jit(fun)
    for shape in [(3,), (3,), (4,), (3,)]:
        x = np.linspace(-1, 1, shape[0]).astype(np.float32)
        out = f(x)
        np.testing.assert_allclose(out, np.tanh(x) * 2.0, rtol=1e-6)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert len(calls) == 2
    f(np.ones(3, np.float64))
    assert len(calls) == 3


def test_static_argnums_and_argnames():
    fun, calls = counting(lambda x, n, scale=1.0: sum(x ** k for k in range(n)) * scale)
    f = tj.jit(fun, static_argnums=1, static_argnames="scale")
    x = np.array([0.5, 2.0], np.float32)
    for n, scale in [(2, 1.0), (3, 1.0), (3, 1.0), (3, 2.0)]:
        got = f(x, n, scale=scale)
        np.testing.assert_allclose(got, sum(x ** k for k in range(n)) * scale, rtol=1e-6)
    assert len(calls) == 3  # three distinct static signatures, each traced once

    @tj.jit(static_argnums=(1,))
    def power_sum(x, k):
        return np.sum(x ** k)

    assert power_sum(x, 2) == pytest.approx(np.sum(x ** 2))


def test_pytrees_in_and_out():
    @tj.jit
    def f(tree):
        a, (b, c) = tree["a"], tree["pair"]
        return {"sum": a + b, "list": [a * c, None], "tuple": (c,)}

    tree = {"a": np.ones(3, np.float32), "pair": (np.arange(3, dtype=np.float32), np.float32(2.0))}
    out = f(tree)
    assert sorted(out) == ["list", "sum", "tuple"] and out["list"][1] is None
    np.testing.assert_array_equal(out["sum"], tree["a"] + tree["pair"][0])
    np.testing.assert_array_equal(out["list"][0], tree["a"] * 2.0)
    assert out["tuple"][0].dtype == np.float32


# A namedtuple is a node, as in JAX: its fields are flattened and it comes back as its own class.
Adam = namedtuple("Adam", "m v")
Other = namedtuple("Other", "m v")


def test_namedtuples_in_and_out_keep_their_class():
    @tj.jit
    def step(state, g):
        m = 0.9 * state.m + 0.1 * g
        return Adam(m, state.v + g * g), {"norm": Other(np.sqrt(np.sum(m * m)), None)}

    state = Adam(np.ones(3, np.float32), np.zeros(3, np.float32))
    g = np.arange(3, dtype=np.float32)
    for _ in range(2):  # the second call runs from the signature cache
        new, extra = step(state, g)
        assert type(new) is Adam and type(extra["norm"]) is Other and extra["norm"].v is None
        np.testing.assert_array_equal(new.m, 0.9 * state.m + np.float32(0.1) * g)
        np.testing.assert_array_equal(new.v, state.v + g * g)
        np.testing.assert_allclose(extra["norm"].m, np.linalg.norm(new.m), rtol=1e-6)


def test_namedtuple_input_names_and_gradients():
    def loss(state, x):
        return np.sum(np.tanh(x @ state.m) * state.v)

    state = Adam(np.full((2, 2), 0.5), np.array([1.0, -2.0]))
    x = np.array([[1.0, 2.0]])
    assert "%state_m:f64[2,2]" in tj.jit(loss).lower(state, x).ir
    grads = tj.jit(tj.grad(loss))(state, x)
    assert type(grads) is Adam
    eps = 1e-6
    for field in Adam._fields:
        for i in np.ndindex(getattr(state, field).shape):
            up, down = (state._replace(**{field: getattr(state, field).copy()}) for _ in range(2))
            getattr(up, field)[i] += eps
            getattr(down, field)[i] -= eps
            numeric = (loss(up, x) - loss(down, x)) / (2 * eps)
            np.testing.assert_allclose(getattr(grads, field)[i], numeric, rtol=1e-6, atol=1e-9)


def test_a_namedtuple_is_not_a_tuple_of_the_same_leaves():
    fun, calls = counting(lambda t: t[0] + t[1])
    f = tj.jit(fun)
    a, b = np.ones(2, np.float32), np.full(2, 3.0, np.float32)
    for tree in [(a, b), Adam(a, b), Other(a, b), (a, b), Adam(a, b)]:
        np.testing.assert_array_equal(f(tree), a + b)
    assert len(calls) == 3  # tuple, Adam and Other: three structures, each traced once


PYTREES = [
    {"a": np.ones(2), "b": (np.zeros(1), None, [1.0, 2])},
    ({"a": np.ones(2)}, [np.zeros(3)], 0.5),
    [None, (), {}, np.float32(1)],
    {"a": {"b": {"c": np.ones(1)}}},
    Adam(np.ones(2), [Other(None, 1.0)]),
]


@pytest.mark.parametrize("tree", PYTREES)
def test_flatten_as_matches_flatten_on_the_same_structure(tree):
    leaves, treedef = pytree.flatten(tree)
    again = pytree.flatten_as(tree, treedef)
    assert again is not None and len(again) == len(leaves) and all(a is b for a, b in zip(again, leaves))


@pytest.mark.parametrize("tree, other", [
    ({"a": np.ones(2)}, {"b": np.ones(2)}),          # other key
    ({"a": np.ones(2)}, {"a": np.ones(2), "b": 1}),   # extra key
    ((np.ones(2), 1), [np.ones(2), 1]),               # tuple vs list
    ((np.ones(2), 1), (np.ones(2),)),                 # length
    ((np.ones(2), None), (np.ones(2), np.ones(1))),   # None vs leaf
    ((np.ones(2), np.ones(1)), (np.ones(2), (np.ones(1),))),  # leaf vs subtree
    (Adam(np.ones(2), 1), (np.ones(2), 1)),           # namedtuple vs tuple
    ((np.ones(2), 1), Adam(np.ones(2), 1)),           # tuple vs namedtuple
    (Adam(np.ones(2), 1), Other(np.ones(2), 1)),      # another namedtuple class
    (np.ones(2), Adam(np.ones(2), 1)),                # leaf vs namedtuple
])
def test_flatten_as_refuses_another_structure(tree, other):
    assert pytree.flatten_as(other, pytree.flatten(tree)[1]) is None


def test_a_changed_argument_structure_retraces_with_the_new_one():
    f = tj.jit(lambda t: sum(v.sum() for v in t.values()) if isinstance(t, dict) else t[0].sum())
    a, b = np.ones(3, np.float32), np.full(2, 2.0, np.float32)
    assert f({"a": a, "b": b}) == 7.0
    assert f({"a": a, "c": b}) == 7.0
    assert f({"a": a}) == 3.0
    assert f((b,)) == 4.0
    assert f({"a": a, "b": b}) == 7.0


@pytest.mark.parametrize("other", [0.5, 2, np.float32(0.5), np.float64(0.5), np.array(0.5)])
def test_dtypes_follow_numpy_promotion(other):
    x = np.linspace(0, 1, 4).astype(np.float32)
    f = tj.jit(lambda x, s: x * s + 1.0)
    got, want = f(x, other), x * other + 1.0
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("k", [2**31, -2**31 - 1, 2**40, -2**62])
def test_a_python_int_out_of_bounds_for_the_int32_it_meets_is_numpys_overflow_error(k):
    x = np.arange(3, dtype=np.int32)
    f = tj.jit(lambda x, k: x * 2 + k)
    np.testing.assert_array_equal(f(x, 7), x * 2 + 7)  # compiled with an int: k is an input, not a constant
    with pytest.raises(OverflowError) as numpy_error:
        x * 2 + k
    with pytest.raises(OverflowError) as ours:
        f(x, k)
    assert str(ours.value) == str(numpy_error.value)


def test_python_ints_that_fit_run_and_wider_arrays_take_any_int64():
    x32, x64 = np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int64)
    f = tj.jit(lambda x, k: x + k)
    for k in (2**31 - 1, -2**31):
        got = f(x32, k)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, x32 + k)
    np.testing.assert_array_equal(f(x64, 2**62), x64 + 2**62)
    np.testing.assert_array_equal(f(np.ones(2, np.float32), 2**40), np.ones(2, np.float32) + 2**40)


INT_LITERAL_OPS = {
    "x == k": lambda x, k: x == k, "x != k": lambda x, k: x != k, "x < k": lambda x, k: x < k,
    "x >= k": lambda x, k: x >= k, "k < x": lambda x, k: k < x,
    "np.greater_equal(k, x)": lambda x, k: np.greater_equal(k, x),
    "x + k": lambda x, k: x + k, "x * k": lambda x, k: x * k, "x // k": lambda x, k: x // k,
    "np.maximum(x, k)": lambda x, k: np.maximum(x, k), "np.where(x > 2, x, k)": lambda x, k: np.where(x > 2, x, k),
}
INT_LITERAL_ARRAYS = {"int32": np.arange(5, dtype=np.int32), "int64": np.arange(5, dtype=np.int64),
                      "float32": np.arange(5, dtype=np.float32), "bool": np.arange(5) > 2}


def _numpy_outcome(fn, *args):
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except OverflowError as exc:
        return exc


@pytest.mark.parametrize("k", [2**31, -2**31 - 1, 2**40, 2**63, -2**63 - 1, 2**70])
@pytest.mark.parametrize("op", INT_LITERAL_OPS)
@pytest.mark.parametrize("array", INT_LITERAL_ARRAYS)
def test_a_python_int_literal_beyond_the_dtype_is_what_numpy_makes_of_it(array, op, k):
    """In traced code, `int32_array < 2**40` is numpy's exact answer (all True), `int32_array + 2**40`
    numpy's OverflowError, and np.where(c, int32_array, 2**40) wraps as numpy's does. Before, the
    literal was cast to int32 and wrapped around everywhere: silent wrong results."""
    x, fn = INT_LITERAL_ARRAYS[array], INT_LITERAL_OPS[op]
    want = _numpy_outcome(fn, x, k)
    if isinstance(want, OverflowError):
        with pytest.raises(OverflowError) as ours:
            tj.jit(lambda x: fn(x, k))(x)
        if -2**63 <= k < 2**63:
            assert str(want) in str(ours.value)  # numpy's message, then the user's line
        else:  # numpy: "Python int too large to convert to C long"; ufuncs say which dtype
            assert str(want) in str(ours.value) or f"Python integer {k} out of bounds" in str(ours.value)
        return
    got = tj.jit(lambda x: fn(x, k))(x)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k", [3, 2**31, -2**31 - 1, 2**40, 2**62])
def test_an_int_argument_compares_with_int32_arrays_exactly(k):
    """A Python int argument meets an int32 array in a comparison in int64, so an int beyond
    int32 gets numpy's answer instead of an OverflowError, on the Python and the C call path."""
    x = np.arange(-2, 5, dtype=np.int32)
    f = tj.jit(lambda x, k: (x < k, k == x, x >= k))
    for _ in range(2):
        for got, want in zip(f(x, k), (x < k, k == x, x >= k)):
            np.testing.assert_array_equal(got, want)


def test_lower_shows_ir():
    lowered = tj.jit(lambda x: np.exp(x) + np.exp(x)).lower(np.ones(3, np.float32))
    assert "exp" in lowered.ir and "def " in lowered.ir


# ---- the API.md training step --------------------------------------------------------------------
@tj.jit
def train_step(params, x, y, lr):
    def loss_fn(p):
        h = np.tanh(x @ p["W1"] + p["b1"])
        logits = h @ p["W2"] + p["b2"]
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        return -logp[np.arange(x.shape[0]), y].mean()

    loss, grads = tj.value_and_grad(loss_fn)(params)
    return {k: params[k] - lr * grads[k] for k in params}, loss


def mlp_problem():
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((8, 16)) / np.sqrt(8), "b1": np.zeros(16),
              "W2": rng.standard_normal((16, 4)) / 4.0, "b2": np.zeros(4)}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    x = rng.standard_normal((32, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    return params, x, y


def test_api_example_train_step_matches_eager_grad_and_learns():
    params, x, y = mlp_problem()
    new_params, loss = train_step(params, x, y, 0.5)
    assert loss.dtype == np.float32 and all(v.dtype == np.float32 for v in new_params.values())

    def loss_fn(p):
        h = np.tanh(x @ p["W1"] + p["b1"])
        logits = h @ p["W2"] + p["b2"]
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        return -logp[np.arange(x.shape[0]), y].mean()

    np.testing.assert_allclose(loss, loss_fn(params), rtol=1e-5)
    grads = tj.grad(loss_fn)(params)
    for k in params:
        np.testing.assert_allclose(new_params[k], params[k] - np.float32(0.5) * grads[k], rtol=1e-5, atol=1e-6)
    losses = [loss]
    for _ in range(30):
        params, loss = train_step(params, x, y, 0.5)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]


def test_value_and_grad_with_static_argument_inside_jit():
    @tj.jit(static_argnums=2)
    def f(w, x, squared):
        loss = (lambda w: np.sum((x @ w) ** 2)) if squared else (lambda w: np.sum(np.abs(x @ w)))
        return tj.value_and_grad(loss)(w)

    rng = np.random.default_rng(1)
    w, x = rng.standard_normal(3), rng.standard_normal((4, 3))
    value, g = f(w, x, True)
    np.testing.assert_allclose(value, np.sum((x @ w) ** 2), rtol=1e-12)
    np.testing.assert_allclose(g, 2 * x.T @ (x @ w), rtol=1e-12)
    _, g = f(w, x, False)
    np.testing.assert_allclose(g, x.T @ np.sign(x @ w), rtol=1e-12)


# ---- make_ir and the numpy rendering ---------------------------------------------------------
def w4_like_loss(params, x, y):
    h = x
    for i in (1, 2):
        h = np.tanh(h @ params[f"W{i}"] + params[f"b{i}"])
    logits = h @ params["W3"] + params["b3"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), y].mean()


def w4_like_inputs():
    rng = np.random.default_rng(2)
    sizes = (6, 5, 5, 3)
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
        params[f"b{i}"] = rng.standard_normal(n).astype(np.float32) * 0.1
    return params, rng.standard_normal((7, 6)).astype(np.float32), rng.integers(0, 3, 7)


def test_make_ir_prints_the_joint_graph():
    params, x, y = w4_like_inputs()
    ir = tj.make_ir(tj.value_and_grad(w4_like_loss))(params, x, y)
    text = str(ir)
    assert text.startswith("def value_and_grad_w4_like_loss(%params_W1:f32[6,5]")
    # the label pick's gradient (scatter_add) is compiled as a select (passes/index_rewrites.py)
    assert "%ct_params_W1:f32[6,5]" in text and "where" in text and "matmul" in text
    assert repr(ir) == text and ir.graph.outputs[1].name == "ct_params_W1"
    forward = str(tj.make_ir(w4_like_loss)(params, x, y))
    assert "ct_" not in forward


def _run_python(ir, leaves):
    namespace = {}
    exec(compile(ir.python(), "<make_ir>", "exec"), namespace)
    return namespace[ir.graph.name](*leaves)


def test_python_rendering_runs_and_matches_the_interpreter():
    params, x, y = w4_like_inputs()
    ir = tj.make_ir(tj.value_and_grad(w4_like_loss))(params, x, y)
    leaves = pytree.flatten((params, x, y))[0]
    source = ir.python()
    assert "np.tanh(" in source and "ct_params_W1 = " in source and source.count("\n    ") >= len(ir.graph.nodes)
    for got, want in zip(_run_python(ir, leaves), evaluate(ir.graph, leaves)):
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_python_rendering_of_shape_ops_and_constants():
    def f(x, w):
        z = np.concatenate([x[::-1, 1:], x[:, :1] * 2.0], axis=1)
        big = np.linspace(0, 1, 40).reshape(8, 5)
        g = np.where(z > 0, z, 0.1 * z).T @ w + big[:3].sum()
        return np.sum(np.maximum(g, -1.0) ** 3) + x[np.array([0, 2, 2])].prod()

    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    ir = tj.make_ir(tj.grad(f, argnums=(0, 1)))(x, w)
    for got, want in zip(_run_python(ir, [x, w]), evaluate(ir.graph, [x, w])):
        np.testing.assert_array_equal(got, want)


def test_make_ir_without_passes_keeps_the_duplicates():
    def f(x):
        return np.exp(x) + np.exp(x)

    x = np.ones(3, np.float32)
    assert str(tj.make_ir(f, optimize=False)(x)).count("exp") == 2
    assert str(tj.make_ir(f)(x)).count("exp") == 1


def test_python_rendering_of_control_flow_and_its_gradient():
    def f(xs, w):
        carry, ys = tj.scan(lambda c, x: (np.tanh(c * x + w), c * x), xs[0], xs[1:])
        z = tj.cond(np.sum(carry) > 0, lambda a: np.sin(a) * w, lambda a: a ** 2 + w, carry)
        n = tj.while_loop(lambda c: np.sum(c) < 10, lambda c: c * 2.0, np.abs(z) + 0.1)
        return np.sum(ys) + np.sum(z) + np.sum(n)

    def g(xs, w):
        carry, ys = tj.scan(lambda c, x: (np.tanh(c * x + w), c * x), xs[0], xs[1:], reverse=True)
        return np.sum(ys) + tj.cond(w > 0, lambda c: np.sum(c * w), lambda c: np.sum(c), carry)

    xs, w = np.linspace(0.1, 1, 15).reshape(5, 3), np.float64(0.3)
    for fun in (f, tj.grad(g, argnums=(0, 1))):
        ir = tj.make_ir(fun)(xs, w)
        assert "def scan_body" in ir.python()
        got = _run_python(ir, [xs, w])
        for a, b in zip(got if isinstance(got, tuple) else [got], evaluate(ir.graph, [xs, w])):
            np.testing.assert_array_equal(a, b)
