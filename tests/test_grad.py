"""Reverse-mode derivatives (IR to IR) against central finite differences computed by numpy.

CASES has gradient cases for every primitive with a VJP rule, ZERO_CASES one for every
piecewise-constant (zero_vjp) primitive; test_every_primitive_has_a_case fails when a primitive is
added without one. Each case runs tj.vjp on a non-scalar output with a random cotangent, so vjp of
non-scalar outputs is covered everywhere; float64 tightly, float32 with looser tolerances.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import tracejit as tj
from tracejit.autodiff.vjp import NotDifferentiableError, vjp_graph
from tracejit.ir.builder import GraphBuilder
from tracejit.ir.verify import verify
from tracejit.ops.registry import PRIMITIVES, Aval, Kind, Primitive
from tracejit.passes.pipeline import optimize
from tracejit.trace import trace


# ---- the checker ----------------------------------------------------------------------------
def numerical_vjp(fun, args, wrt, ct, eps):
    """Central differences of sum(fun(*args) * ct) with respect to args[i], i in wrt (float64)."""
    args = [np.array(a, dtype=np.float64) if i in wrt else a for i, a in enumerate(args)]

    def loss(*xs):
        return float(np.sum(np.asarray(fun(*xs), dtype=np.float64) * ct))

    grads = []
    for i in wrt:
        g = np.zeros_like(args[i])
        for idx in np.ndindex(args[i].shape):
            plus, minus = [a.copy() if j == i else a for j, a in enumerate(args)], None
            minus = [a.copy() if j == i else a for j, a in enumerate(args)]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (loss(*plus) - loss(*minus)) / (2 * eps)
        grads.append(g)
    return grads


def check_vjp(fun, args, wrt, *, dtype, rtol, atol, eps, seed=0):
    args = [a.astype(dtype) if i in wrt else a for i, a in enumerate(args)]
    want_out = fun(*args)
    out, vjp_fn = tj.vjp(fun, *args)
    np.testing.assert_allclose(out, want_out, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)
    ct = np.random.default_rng(seed).standard_normal(np.shape(want_out)).astype(np.asarray(want_out).dtype)
    grads = vjp_fn(ct)
    assert isinstance(grads, tuple) and len(grads) == len(args)
    want = numerical_vjp(fun, [np.asarray(a, np.float64) if i in wrt else a for i, a in enumerate(args)], wrt,
                         ct.astype(np.float64), eps)
    for i, w in zip(wrt, want):
        assert isinstance(grads[i], np.ndarray) and grads[i].dtype == dtype and grads[i].shape == args[i].shape
        np.testing.assert_allclose(grads[i], w, rtol=rtol, atol=atol, err_msg=f"gradient of argument {i}")


# ---- cases ----------------------------------------------------------------------------------
@dataclass
class Case:
    fun: object
    make: object  # rng -> tuple of args
    wrt: tuple = (0,)
    eps: float = 1e-6
    rtol: float = 1e-5  # float64 tolerance
    f32: bool = True  # also check in float32
    label: str = field(default="")


def normal(*shape):
    return lambda r: r.standard_normal(shape)


def positive(*shape):
    return lambda r: r.uniform(0.5, 2.0, shape)


def args(*makers):
    return lambda r: tuple(m(r) if callable(m) else m for m in makers)


def distinct(*shape):
    """Values at least 0.1 apart, so max/min/maximum have no ties within eps."""
    return lambda r: r.permutation(np.prod(shape, dtype=int)).reshape(shape) * 0.1 + r.uniform(-0.02, 0.02, shape)


IDX = np.array([0, 2, 2, 1])  # a repeated index: its cotangents must add up
LABELS = np.array([1, 0, 3])
SCATTER_IDX = np.array([3, 0, 3])


def _scatter_through_grad(w):
    """scatter_add appears as gather's VJP: differentiate a function of that gradient w.r.t. w."""
    x0 = np.linspace(-1.0, 1.0, 4).astype(w.dtype)
    return tj.grad(lambda x: np.sum(np.tanh(x[SCATTER_IDX]) * w))(x0) * np.arange(1, 5)


def _cond_case(x, y):
    return tj.cond(np.sum(x) > 0, lambda a: np.sin(a) * y, lambda a: a ** 2 + y, x)


def _scan_case(xs):
    carry, ys = tj.scan(lambda c, x: (np.tanh(c * x + 0.3), c * x), xs[0], xs[1:])
    return ys + carry


CASES: dict[str, list[Case]] = {
    "exp": [Case(lambda x: np.exp(x), args(normal(3, 4)))],
    "log": [Case(lambda x: np.log(x), args(positive(3, 4)))],
    "log1p": [Case(lambda x: np.log1p(x), args(positive(5)))],
    "expm1": [Case(lambda x: np.expm1(x), args(normal(5)))],
    "sqrt": [Case(lambda x: np.sqrt(x), args(positive(2, 3)))],
    "tanh": [Case(lambda x: np.tanh(x), args(normal(3, 4)))],
    "sinh": [Case(lambda x: np.sinh(x), args(normal(5)))],
    "cosh": [Case(lambda x: np.cosh(x), args(normal(5)))],
    "sin": [Case(lambda x: np.sin(x), args(normal(5)))],
    "cos": [Case(lambda x: np.cos(x), args(normal(5)))],
    "tan": [Case(lambda x: np.tan(x), args(lambda r: r.uniform(-1, 1, 5)))],
    "arctan": [Case(lambda x: np.arctan(x), args(normal(5)))],
    "reciprocal": [Case(lambda x: np.reciprocal(x), args(positive(4)))],
    "exp2": [Case(lambda x: np.exp2(x), args(normal(5)))],
    "log2": [Case(lambda x: np.log2(x), args(positive(5)))],
    "log10": [Case(lambda x: np.log10(x), args(positive(5)))],
    "arcsin": [Case(lambda x: np.arcsin(x), args(lambda r: r.uniform(-0.9, 0.9, 5)))],
    "arccos": [Case(lambda x: np.arccos(x), args(lambda r: r.uniform(-0.9, 0.9, 5)))],
    "arcsinh": [Case(lambda x: np.arcsinh(x), args(normal(5)))],
    "arccosh": [Case(lambda x: np.arccosh(x), args(lambda r: r.uniform(1.2, 3.0, 5)))],
    "arctanh": [Case(lambda x: np.arctanh(x), args(lambda r: r.uniform(-0.8, 0.8, 5)))],
    "cbrt": [Case(lambda x: np.cbrt(x), args(lambda r: r.choice([-1, 1], 5) * r.uniform(0.3, 2, 5)))],
    "arctan2": [Case(lambda y, x: np.arctan2(y, x), args(normal(3, 4), normal(4)), (0, 1))],
    "hypot": [Case(lambda x, y: np.hypot(x, y), args(normal(3, 1), normal(1, 4)), (0, 1))],
    "negative": [Case(lambda x: -x, args(normal(4)))],
    "square": [Case(lambda x: np.square(x), args(normal(2, 3)))],
    "abs": [Case(lambda x: np.abs(x), args(lambda r: r.choice([-1, 1], 6) * r.uniform(0.5, 2, 6)))],
    "add": [
        Case(lambda x, y: x + y, args(normal(3, 4), normal(4)), (0, 1)),
        Case(lambda x, y: x + y, args(normal(3, 1), normal(1, 4)), (0, 1)),
        Case(lambda x, y: x + y, args(normal(2, 3, 4), normal(3, 1)), (0, 1)),
        Case(lambda x, y: x + y, args(normal(), normal(3)), (0, 1)),
        Case(lambda x: x + 2.0, args(normal(3))),
    ],
    "subtract": [
        Case(lambda x, y: x - y, args(normal(3, 4), normal(3, 1)), (0, 1)),
        Case(lambda x, y: x - y, args(normal(1, 4), normal(2, 3, 1)), (0, 1)),
    ],
    "multiply": [
        Case(lambda x, y: x * y, args(normal(3, 4), normal(4)), (0, 1)),
        Case(lambda x, y: x * y, args(normal(2, 1, 4), normal(3, 1)), (0, 1)),
        Case(lambda x: x * x, args(normal(5))),  # the same value used twice accumulates
    ],
    "divide": [
        Case(lambda x, y: x / y, args(normal(3, 4), positive(4)), (0, 1)),
        Case(lambda x, y: x / y, args(normal(3, 1), positive(1, 4)), (0, 1)),
        Case(lambda x: x.mean(axis=0), args(normal(4, 3))),
    ],
    "power": [
        Case(lambda x, y: x ** y, args(positive(3, 4), normal(4)), (0, 1)),
        Case(lambda x: x ** 3.0, args(normal(5))),
        Case(lambda y: 2.0 ** y, args(normal(5))),
        Case(lambda x: x ** 2, args(normal(5))),
    ],
    "maximum": [
        Case(lambda x, y: np.maximum(x, y), args(distinct(3, 4), distinct(4)), (0, 1)),
        Case(lambda x: np.maximum(x, 0.05), args(distinct(6))),
    ],
    "minimum": [Case(lambda x, y: np.minimum(x, y), args(distinct(3, 4), distinct(3, 1)), (0, 1))],
    "cumsum": [
        Case(lambda x: np.cumsum(x, axis=1), args(normal(3, 4))),
        Case(lambda x: np.cumsum(x.T, axis=0) * x.T, args(normal(3, 4))),
        Case(lambda x: np.cumsum(x), args(normal(2, 3))),
    ],
    "fmax": [Case(lambda x, y: np.fmax(x, y), args(distinct(3, 4), distinct(4)), (0, 1))],
    "fmin": [Case(lambda x, y: np.fmin(x, y), args(distinct(3, 4), distinct(3, 1)), (0, 1))],
    "copysign": [Case(lambda x, y: np.copysign(x, y) * x, args(lambda r: r.choice([-1, 1], (3, 4)) * r.uniform(0.5, 2, (3, 4)),
                                                           normal(4)), (0,))],
    # x / y kept within 0.2 of the middle between integers: no jump of // within eps
    "remainder": [Case(lambda x, y: x % y, args(lambda r: (r.integers(-4, 4, (3, 4)) + 0.5 + r.uniform(-0.2, 0.2, (3, 4)))
                                                * np.array([0.7, 1.3, 2.0, 0.9]), np.array([0.7, 1.3, 2.0, 0.9])), (0, 1))],
    "where": [
        Case(lambda x, y: np.where(x > 0, x, y), args(normal(3, 4), normal(4)), (0, 1)),
        Case(lambda x, y: np.where(y > 0, x * 2.0, 0.0), args(normal(3, 1), normal(4)), (0,)),
    ],
    "astype": [
        Case(lambda x: np.sin(x.astype(np.float32)), args(normal(4)), eps=1e-3, rtol=1e-3, f32=False),
        Case(lambda x: (x.astype(np.float32) * 2.0).astype(np.float64), args(normal(4)), eps=1e-3, rtol=1e-3),
        Case(lambda x: x * x.astype(np.int64), args(lambda r: r.uniform(-3, 3, 5) + 0.5)),
    ],
    "sum": [
        Case(lambda x: np.sum(x), args(normal(3, 4))),
        Case(lambda x: np.sum(x, axis=0), args(normal(3, 4))),
        Case(lambda x: x.sum(axis=1, keepdims=True), args(normal(3, 4))),
        Case(lambda x: x.sum(axis=(0, 2)), args(normal(2, 3, 4))),
        Case(lambda x: x.sum(axis=(0, 2), keepdims=True), args(normal(2, 3, 4))),
    ],
    "prod": [
        Case(lambda x: np.prod(x, axis=1), args(positive(3, 4))),
        Case(lambda x: np.prod(x, axis=0), args(np.array([[0.0, 1.5], [2.0, 0.0], [3.0, 0.0]]))),  # 0, 1, 2 zeros
        Case(lambda x: x.prod(), args(normal(4))),
    ],
    "max": [
        Case(lambda x: x.max(axis=1), args(distinct(3, 4))),
        Case(lambda x: x.max(axis=(0, 2), keepdims=True), args(distinct(2, 3, 4))),
        Case(lambda x: np.max(x), args(distinct(5))),
    ],
    "min": [
        Case(lambda x: x.min(axis=0), args(distinct(3, 4))),
        Case(lambda x: np.min(x, axis=-1, keepdims=True), args(distinct(2, 3))),
    ],
    "reshape": [Case(lambda x: x.reshape(2, 6) * np.arange(12.0).reshape(2, 6), args(normal(3, 4)))],
    "transpose": [
        Case(lambda x: x.T, args(normal(3, 4))),
        Case(lambda x: np.transpose(x, (2, 0, 1)), args(normal(2, 3, 4))),
    ],
    "broadcast_to": [
        Case(lambda x: np.broadcast_to(x, (3, 4)), args(normal(4))),
        Case(lambda x: np.broadcast_to(x, (2, 3, 4)), args(normal(3, 1))),
    ],
    "slice": [
        Case(lambda x: x[1:3], args(normal(4, 3))),
        Case(lambda x: x[:, ::2], args(normal(3, 5))),
        Case(lambda x: x[::-1, 1:], args(normal(4, 3))),
        Case(lambda x: x[1:, 2], args(normal(4, 3))),
        Case(lambda x: x[0], args(normal(4, 3))),
        Case(lambda x: x[5:7], args(normal(4))),  # empty
    ],
    "concatenate": [
        Case(lambda x, y: np.concatenate([x, y], axis=1), args(normal(3, 2), normal(3, 4)), (0, 1)),
        Case(lambda x, y: np.stack([x, y, x]), args(normal(3), normal(3)), (0, 1)),
    ],
    "gather": [
        Case(lambda x: x[IDX], args(normal(3, 2))),
        Case(lambda x: x[np.arange(3), LABELS], args(normal(3, 4))),
        Case(lambda x, i: x[np.arange(3), i], args(normal(3, 4), LABELS)),
        Case(lambda x: x[:, IDX], args(normal(2, 3))),
    ],
    "scatter_add": [Case(_scatter_through_grad, args(normal(3)), f32=False)],
    "cond": [
        Case(_cond_case, args(positive(4), normal(4)), (0, 1)),  # true branch
        Case(_cond_case, args(lambda r: -r.uniform(0.5, 2, 4), normal(4)), (0, 1)),  # false branch
    ],
    "scan": [
        Case(_scan_case, args(normal(5, 3))),
        Case(lambda x: tj.fori_loop(0, 3, lambda i, c: np.sin(c) * 1.5 + x, x), args(normal(2, 3))),
    ],
    "matmul": [
        Case(lambda a, b: a @ b, args(normal(3, 4), normal(4, 2)), (0, 1)),
        Case(lambda a, b: a @ b, args(normal(4), normal(4, 2)), (0, 1)),
        Case(lambda a, b: a @ b, args(normal(3, 4), normal(4)), (0, 1)),
        Case(lambda a, b: a @ b, args(normal(4), normal(4)), (0, 1)),
        Case(lambda a, b: a @ b, args(normal(2, 3, 4), normal(4, 2)), (0, 1)),
        Case(lambda a, b: a @ b, args(normal(2, 3, 4), normal(2, 4, 2)), (0, 1)),
        Case(lambda a, b: np.matmul(a, b), args(normal(1, 3, 4), normal(2, 1, 4, 2)), (0, 1)),
        Case(lambda a, b: np.dot(a, b), args(normal(3, 4), normal(4, 2)), (0, 1)),
    ],
}

ZERO_CASES: dict[str, object] = {
    "floor": lambda x: np.floor(x) * x,
    "ceil": lambda x: np.ceil(x) * x,
    "trunc": lambda x: np.trunc(x) * x,
    "rint": lambda x: np.rint(x) * x,
    "floor_divide": lambda x: (x // 0.4) * x,  # x / 0.4 stays away from integers on the test points
    "sign": lambda x: np.sign(x) * x,
    "less": lambda x: np.where(x < 0.3, x, 2 * x),
    "less_equal": lambda x: np.where(x <= 0.3, x, 2 * x),
    "greater": lambda x: np.where(x > 0.3, x, 2 * x),
    "greater_equal": lambda x: np.where(x >= 0.3, x, 2 * x),
    "equal": lambda x: x * (x == 0.3),
    "not_equal": lambda x: x * (x != 0.3),
    "logical_and": lambda x: x * np.logical_and(x > 0, x < 1),
    "logical_xor": lambda x: x * np.logical_xor(x > 0, x < 1),
    "isnan": lambda x: np.where(np.isnan(x), 0.0, x * x),
    "isinf": lambda x: np.where(np.isinf(x), 0.0, x * x),
    "isfinite": lambda x: np.where(np.isfinite(x), x * x, 0.0),
    "logical_or": lambda x: x * np.logical_or(x > 1, x < 0),
    "logical_not": lambda x: x * np.logical_not(x > 0),
    "argmax": lambda x: x * np.argmax(x, axis=1)[:, None],
    "argmin": lambda x: x * np.argmin(x, axis=1)[:, None],
    "constant": lambda x: x * np.array([1.0, 2.0, 3.0]),
    "iota": None,  # the front end writes np.arange as a constant; see test_iota_passes_no_gradient
}

# primitives whose VJP rule refuses with a NotDifferentiableError that says what to do instead
ERROR_CASES: dict[str, object] = {
    "while": (lambda x: tj.while_loop(lambda c: np.sum(c) < 10, lambda c: c * 2.0, x), "fori_loop"),
}

ALL_CASES = [(name, i, case) for name, cases in CASES.items() for i, case in enumerate(cases)]
CASE_IDS = [f"{name}-{i}" for name, i, _ in ALL_CASES]


def _prims_of(fun, arguments) -> set[str]:
    graph = trace(fun, tuple(arguments)).graph
    return {node.prim.name for node in graph.nodes}


def test_every_primitive_has_a_case():
    missing = [name for name, prim in PRIMITIVES.items()
               if (prim.vjp is not None and name not in CASES and name not in ERROR_CASES)
               or (prim.zero_vjp and name not in ZERO_CASES)]
    assert not missing, f"primitives without a gradient test case: {missing}"
    no_rule = [name for name, prim in PRIMITIVES.items() if prim.vjp is None and not prim.zero_vjp]
    assert not no_rule, f"primitives with neither vjp nor zero_vjp: {no_rule}"


@pytest.mark.parametrize("name, i, case", ALL_CASES, ids=CASE_IDS)
def test_vjp_matches_finite_differences_f64(name, i, case):
    arguments = case.make(np.random.default_rng(i))
    assert name in _prims_of(case.fun, arguments), f"case {name}-{i} does not use {name}"
    check_vjp(case.fun, list(arguments), case.wrt, dtype=np.float64, rtol=case.rtol, atol=1e-7, eps=case.eps)


FIRST_CASES = [(name, cases[0]) for name, cases in CASES.items()]


@pytest.mark.parametrize("name, case", FIRST_CASES, ids=[n for n, _ in FIRST_CASES])
def test_joint_graph_verifies_and_jit_agrees_with_eager(name, case):
    """The joint graph passes ir.verify before and after the passes, and the jitted pullback
    (inlined into jit's trace, then compiled) gives the eager result."""
    arguments = list(case.make(np.random.default_rng(0)))
    traced = trace(case.fun, tuple(arguments))
    joint = vjp_graph(traced.graph, list(case.wrt))
    verify(joint)
    verify(optimize(joint))
    out, vjp_fn = tj.vjp(case.fun, *arguments)
    ct = np.random.default_rng(1).standard_normal(np.shape(out))
    pullback = tj.jit(lambda ct, *a: tj.vjp(case.fun, *a)[1](ct))
    try:
        jitted_grads = pullback(ct, *arguments)
    except tj.TracejitError as exc:
        if "cannot compile" not in str(exc):
            raise
        pytest.skip(f"backend: {exc}")
    for eager, jitted in zip(vjp_fn(ct), jitted_grads):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-12)  # libm vs numpy: a few ulp in float32


@pytest.mark.parametrize("name, i, case", [c for c in ALL_CASES if c[2].f32],
                         ids=[i for i, c in zip(CASE_IDS, ALL_CASES) if c[2].f32])
def test_vjp_matches_finite_differences_f32(name, i, case):
    arguments = case.make(np.random.default_rng(i))
    check_vjp(case.fun, list(arguments), case.wrt, dtype=np.float32, rtol=2e-3, atol=2e-4, eps=case.eps)


@pytest.mark.parametrize("name", sorted(k for k, v in ZERO_CASES.items() if v is not None))
def test_piecewise_constant_primitives_pass_no_gradient(name):
    fun = ZERO_CASES[name]
    x = np.array([[-0.7, 0.2, 1.4], [0.9, -1.3, 0.6]])
    assert name in _prims_of(fun, [x])
    out, vjp_fn = tj.vjp(fun, x)
    ct = np.ones_like(out)
    (got,) = vjp_fn(ct)
    (want,) = numerical_vjp(fun, [x], (0,), ct, 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_non_differentiable_primitives_explain_themselves(name):
    fun, advice = ERROR_CASES[name]
    x = np.ones(3)
    assert name in _prims_of(fun, [x])
    with pytest.raises(NotDifferentiableError, match=advice):
        tj.grad(lambda x: np.sum(fun(x)))(x)


def test_iota_passes_no_gradient():
    from tracejit.ir.interpret import evaluate

    b = GraphBuilder()
    x = b.new_input((3,), np.float64, "x")
    ramp = b.emit("astype", b.emit("iota", length=3, dtype=np.dtype(np.int64)), dtype=np.dtype(np.float64))
    graph = b.build([b.emit("sum", b.emit("multiply", x, ramp), axes=(0,))])
    joint = vjp_graph(graph, [0], ones=True)
    assert "iota" in {n.prim.name for n in joint.nodes}
    np.testing.assert_array_equal(evaluate(joint, [np.ones(3)])[1], [0.0, 1.0, 2.0])


# ---- tie rules ------------------------------------------------------------------------------
def test_maximum_tie_gives_half_to_each_operand():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 5.0, 0.0])
    gx, gy = tj.grad(lambda x, y: np.sum(np.maximum(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(gy, [0.5, 1.0, 0.0])
    gx, gy = tj.grad(lambda x, y: np.sum(np.minimum(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.5, 1.0, 0.0])


def test_max_reduction_splits_equally_among_ties():
    x = np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 2.0, 1.0, 2.0]])
    g = tj.grad(lambda x: np.sum(x.max(axis=1) * np.array([3.0, 1.0])))(x)
    np.testing.assert_allclose(g, [[1.0, 0.0, 1.0, 1.0], [0.0, 0.5, 0.0, 0.5]])
    g = tj.grad(lambda x: np.min(x))(np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(g, [0.5, 0.5, 0.0])


def test_tie_counts_are_exact_in_compiled_float32_code():
    """max/min and prod count ties and zeros as integers: the shares are 1/count exactly."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (64, 300)).astype(np.float32)  # many ties per row
    counts = (x == x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True).astype(np.float32)
    g = tj.jit(tj.grad(lambda x: np.sum(x.max(axis=1))))(x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, np.where(x == x.max(axis=1, keepdims=True), np.float32(1) / counts, 0))
    y = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]], np.float32)
    gp = tj.jit(tj.grad(lambda y: np.sum(np.prod(y, axis=1))))(y)
    np.testing.assert_array_equal(gp, [[6.0, 0.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]])


def test_power_at_zero_base_is_finite():
    gx, gy = tj.grad(lambda x, y: np.sum(x ** y), argnums=(0, 1))(np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    np.testing.assert_allclose(gx, [0.0, 12.0])
    np.testing.assert_allclose(gy, [0.0, 8.0 * np.log(2.0)])


# ---- higher order ---------------------------------------------------------------------------
SMOOTH = [
    (lambda x: np.sum(np.tanh(x) ** 3), lambda t: 6 * t * (1 - t * t) ** 2 - 6 * t ** 3 * (1 - t * t)),
    (lambda x: np.sum(np.exp(np.sin(x))), None),
    (lambda x: np.sum(np.log(1.0 + x * x) / (2.0 + np.cos(x))), None),
    (lambda x: np.sum(np.sqrt(x * x + 1.0) * np.arctan(x)), None),
]


@pytest.mark.parametrize("k", range(len(SMOOTH)))
def test_second_derivative_of_scalar_function(k):
    f, analytic = SMOOTH[k]
    ddf = tj.grad(tj.grad(f))
    for x0 in (-0.7, 0.3, 1.2):
        got = ddf(np.float64(x0))
        eps = 1e-5
        df = tj.grad(f)
        want = (df(np.float64(x0 + eps)) - df(np.float64(x0 - eps))) / (2 * eps)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        if analytic is not None:
            np.testing.assert_allclose(got, analytic(np.tanh(x0)), rtol=1e-12)


def test_hessian_vector_product_and_third_derivative():
    f = lambda x: np.sum(np.tanh(x) ** 3 * x[::-1])  # noqa: E731
    rng = np.random.default_rng(1)
    x, v = rng.standard_normal(5), rng.standard_normal(5)
    hvp = tj.grad(lambda x: np.sum(tj.grad(f)(x) * v))(x)
    eps = 1e-6
    want = (tj.grad(f)(x + eps * v) - tj.grad(f)(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hvp, want, rtol=1e-6, atol=1e-8)
    d3 = tj.grad(tj.grad(tj.grad(np.sin)))(np.float64(0.4))
    np.testing.assert_allclose(d3, -np.cos(0.4), rtol=1e-12)


HVP_FUNCTIONS = {
    "slices and concatenate": lambda x: np.sum(np.concatenate([x[1:] * x[:-1], x[::2] ** 3]) / (1.5 + x[:2].prod())),
    "maximum, where, sqrt": lambda x: np.sum(np.where(x > 0, np.sqrt(x * x + 1), np.maximum(x, -0.35) ** 2)),
    "matmul mlp": lambda x: np.sum(np.tanh(x.reshape(2, 3) @ np.linspace(-1, 1, 12).reshape(3, 4)) ** 2),
    "reductions": lambda x: np.sum(x.reshape(2, 3).max(axis=1) * x.reshape(2, 3).sum(axis=0).mean() + np.exp(x).min()),
    "broadcast and transpose": lambda x: np.sum((x.reshape(2, 3).T[:, :, None] * x[:2]) ** 2),
    "gather with repeats": lambda x: np.sum(np.log1p(x[np.array([0, 5, 5, 2])] ** 2) * x[:4]),
}


@pytest.mark.parametrize("label", sorted(HVP_FUNCTIONS))
def test_hessian_vector_products(label):
    """grad of (grad f . v): every primitive that VJP rules emit has a rule of its own."""
    f = HVP_FUNCTIONS[label]
    rng = np.random.default_rng(5)
    x, v = rng.permutation(6) * 0.3 - 0.8 + rng.uniform(-0.05, 0.05, 6), rng.standard_normal(6)
    hvp = tj.grad(lambda x: np.sum(tj.grad(f)(x) * v))(x)
    eps = 1e-6
    want = (tj.grad(f)(x + eps * v) - tj.grad(f)(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hvp, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tj.jit(tj.grad(lambda x: np.sum(tj.grad(f)(x) * v)))(x), hvp, rtol=1e-9, atol=1e-12)


def test_second_derivative_through_softmax_cross_entropy():
    def xent(logits, labels):
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        return -logp[np.arange(logits.shape[0]), labels].mean()

    rng = np.random.default_rng(2)
    logits, labels, v = rng.standard_normal((3, 4)), np.array([0, 3, 1]), rng.standard_normal((3, 4))
    hvp = tj.grad(lambda z: np.sum(tj.grad(xent)(z, labels) * v))(logits)
    eps = 1e-6
    want = (tj.grad(xent)(logits + eps * v, labels) - tj.grad(xent)(logits - eps * v, labels)) / (2 * eps)
    np.testing.assert_allclose(hvp, want, rtol=1e-5, atol=1e-8)


def test_grad_of_grad_with_closed_over_outer_value():
    """The inner function closes over the outer argument: a captured input, constant for the
    inner derivative, differentiated by the outer one."""
    def g(a):
        return tj.grad(lambda x: np.sum(np.sin(a * x)))(np.float64(0.5))

    a0, eps = 1.3, 1e-6
    want = (g(np.float64(a0 + eps)) - g(np.float64(a0 - eps))) / (2 * eps)  # d/da [a cos(a/2)]
    np.testing.assert_allclose(tj.grad(g)(np.float64(a0)), want, rtol=1e-6)
    np.testing.assert_allclose(tj.jit(tj.grad(g))(np.float64(a0)), want, rtol=1e-6)


# ---- the transformations' conventions -------------------------------------------------------
def mlp_loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    return np.mean((logits - y) ** 2)


def mlp_inputs(dtype=np.float32):
    rng = np.random.default_rng(3)
    params = {"W1": rng.standard_normal((4, 5)), "b1": np.zeros(5), "W2": rng.standard_normal((5, 2)),
              "b2": np.zeros(2)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    return params, rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 2)).astype(dtype)


def test_pytree_gradients_mirror_params_with_their_dtype():
    params, x, y = mlp_inputs(np.float32)
    grads = tj.grad(mlp_loss)(params, x, y)
    assert sorted(grads) == sorted(params)
    for k in params:
        assert isinstance(grads[k], np.ndarray) and grads[k].dtype == np.float32 and grads[k].shape == params[k].shape
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    g64 = tj.grad(mlp_loss)(p64, x.astype(np.float64), y.astype(np.float64))
    for k in params:
        np.testing.assert_allclose(grads[k], g64[k], rtol=2e-4, atol=1e-5)
        want = numerical_vjp(lambda w: mlp_loss({**p64, k: w}, x.astype(np.float64), y.astype(np.float64)),
                             [p64[k]], (0,), 1.0, 1e-6)[0]
        np.testing.assert_allclose(g64[k], want, rtol=1e-5, atol=1e-8)


def test_argnums_tuple_and_value_and_grad():
    params, x, y = mlp_inputs(np.float64)
    (value, (gp, gx)) = tj.value_and_grad(mlp_loss, argnums=(0, 1))(params, x, y)
    np.testing.assert_allclose(value, mlp_loss(params, x, y), rtol=1e-12)
    assert sorted(gp) == sorted(params) and gx.shape == x.shape
    want_x = numerical_vjp(lambda x: mlp_loss(params, x, y), [x], (0,), 1.0, 1e-6)[0]
    np.testing.assert_allclose(gx, want_x, rtol=1e-5, atol=1e-8)
    assert np.shape(tj.grad(mlp_loss, argnums=-1)(params, x, y)) == y.shape


def test_has_aux_conventions():
    def f(x):
        return np.sum(x ** 2), {"mean": x.mean(), "n": 3}

    x = np.array([1.0, 2.0, 3.0], np.float32)
    g, aux = tj.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    np.testing.assert_allclose(aux["mean"], 2.0)
    assert int(aux["n"]) == 3
    (value, aux), g = tj.value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(value, 14.0)
    assert value.dtype == np.float32 and g.dtype == np.float32
    out, vjp_fn, aux = tj.vjp(lambda x: (x * 2.0, x.sum()), x, has_aux=True)
    np.testing.assert_allclose(vjp_fn(np.ones(3, np.float32))[0], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(aux, 6.0)


def test_unused_argument_gets_zeros_of_its_dtype():
    x, y = np.ones(3, np.float32), np.ones((2, 2), np.float64)
    gx, gy = tj.grad(lambda x, y: np.sum(x * 3.0), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [3.0, 3.0, 3.0])
    assert gy.dtype == np.float64 and gy.shape == (2, 2) and not gy.any()
    assert tj.grad(lambda x: 1.0)(x).tolist() == [0.0, 0.0, 0.0]


def test_integer_argument_in_argnums_is_a_type_error():
    with pytest.raises(TypeError, match=r"argument 'labels'.*int64.*argnums"):
        tj.grad(lambda x, labels: np.sum(x[labels]), argnums=1)(np.ones(3), np.array([0, 1]))
    with pytest.raises(TypeError, match="bool"):
        tj.grad(lambda m: np.sum(m * 1.0))(np.array([True, False]))
    # inside the function integer values simply carry no gradient
    g = tj.grad(lambda x, labels: np.sum(x[labels] * labels))(np.ones(3), np.array([0, 2, 2]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 4.0])


def test_vjp_gives_integer_primals_zero_gradients():
    out, vjp_fn = tj.vjp(lambda x, i: x[i] * 2.0, np.arange(4.0), np.array([1, 1, 3]))
    gx, gi = vjp_fn(np.ones(3))
    np.testing.assert_array_equal(gx, [0.0, 4.0, 0.0, 2.0])
    assert gi.dtype == np.int64 and not gi.any()


def test_grad_needs_a_scalar_float_output():
    with pytest.raises(TypeError, match="vjp"):
        tj.grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(TypeError, match="has_aux=True"):
        tj.grad(lambda x: (x.sum(), x))(np.ones(3))
    with pytest.raises(TypeError, match="float"):
        tj.grad(lambda x: np.argmax(x))(np.ones(3))


COMPOSITES = {  # numpy functions recorded as several primitives: their gradients, end to end
    "logaddexp": (lambda x, y: np.logaddexp(x, y), args(normal(3, 4), normal(4)), (0, 1)),
    "logaddexp at ties": (lambda x: np.logaddexp(x, x * 1.0), args(normal(5)), (0,)),
    "linalg.norm": (lambda x: np.linalg.norm(x, axis=1), args(normal(3, 4)), (0,)),
    "take_along_axis": (lambda x: np.take_along_axis(x, np.array([[1], [0], [3]]), axis=1) * x, args(normal(3, 4)), (0,)),
    "tril": (lambda x: np.tril(x, -1) * x, args(normal(4, 4)), (0,)),
    "flip": (lambda x: np.flip(x, 0) * x, args(normal(3, 2)), (0,)),
    "roll, tile, pad": (lambda x: np.roll(x, 1, axis=1) * np.tile(x, (1, 1)) + np.pad(x, 1)[1:-1, 1:-1] ** 2,
                        args(normal(3, 4)), (0,)),
    "repeat, diag, trace": (lambda x: np.repeat(x, 2, axis=0)[::2] * np.diag(np.diag(x))[:, :4] + np.trace(x * x),
                            args(normal(4, 4)), (0,)),
    "average with weights": (lambda x, w: np.average(x, axis=1, weights=w), args(normal(3, 4), positive(3, 4)), (0, 1)),
    "einsum": (lambda a, b: np.einsum("bij,bkj->bik", a, b), args(normal(2, 3, 4), normal(2, 5, 4)), (0, 1)),
    "einsum with a summed index": (lambda a, b: np.einsum("ijk,jl->il", a, b), args(normal(2, 3, 4), normal(3, 2)), (0, 1)),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_numpy_functions_against_finite_differences(name):
    fun, make, wrt = COMPOSITES[name]
    check_vjp(fun, list(make(np.random.default_rng(7))), wrt, dtype=np.float64, rtol=1e-5, atol=1e-7, eps=1e-6)


def test_vjp_checks_the_cotangent():
    _, vjp_fn = tj.vjp(lambda x: (x, x.sum()), np.ones(3))
    with pytest.raises(TypeError, match="structure"):
        vjp_fn(np.ones(3))
    with pytest.raises(tj.ShapeError, match="shape"):
        vjp_fn((np.ones(4), 1.0))
    gx, = vjp_fn((np.ones(3), 2.0))
    np.testing.assert_array_equal(gx, [3.0, 3.0, 3.0])


def test_primitive_without_rule_is_named_in_the_error():
    opaque = Primitive("opaque_op", Kind.ELEMENTWISE, lambda x: Aval(x.shape, x.dtype), lambda x: x,
                       c_expr=lambda *a, **k: "x")
    b = GraphBuilder()
    x = b.new_input((3,), np.float64, "x")
    graph = b.build([b.emit(opaque, x, loc="model.py:7")])
    with pytest.raises(NotDifferentiableError, match=r"opaque_op.*model\.py:7"):
        vjp_graph(graph, [0])


# ---- jit and eager agree --------------------------------------------------------------------
def test_jit_of_grad_equals_eager_grad_equals_grad_of_jit():
    params, x, y = mlp_inputs(np.float32)
    eager = tj.grad(mlp_loss)(params, x, y)
    jit_outer = tj.jit(tj.grad(mlp_loss))(params, x, y)
    jit_inner = tj.grad(tj.jit(mlp_loss))(params, x, y)
    for k in params:
        assert jit_outer[k].dtype == np.float32
        np.testing.assert_allclose(jit_outer[k], eager[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jit_inner[k], eager[k], rtol=1e-5, atol=1e-6)


def test_grad_inside_jit_captures_outer_values():
    @tj.jit
    def step(w, x, lr):
        loss, g = tj.value_and_grad(lambda w: np.sum(np.tanh(x @ w) ** 2))(w)
        return w - lr * g, loss

    rng = np.random.default_rng(4)
    w, x = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    new_w, loss = step(w, x, 0.1)
    g = tj.grad(lambda w: np.sum(np.tanh(x @ w) ** 2))(w)
    assert new_w.dtype == np.float32 and loss.dtype == np.float32
    np.testing.assert_allclose(new_w, w - np.float32(0.1) * g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, np.sum(np.tanh(x @ w) ** 2), rtol=1e-5)


def test_vjp_inside_jit():
    @tj.jit
    def pullback(x, ct):
        out, vjp_fn = tj.vjp(lambda x: np.exp(x) * x, x)
        return out, vjp_fn(ct)[0]

    x, ct = np.linspace(-1, 1, 4), np.array([1.0, -2.0, 0.5, 3.0])
    out, g = pullback(x, ct)
    np.testing.assert_allclose(out, np.exp(x) * x, rtol=1e-12)
    np.testing.assert_allclose(g, ct * np.exp(x) * (1 + x), rtol=1e-12)
