"""tj.cond, tj.fori_loop, tj.while_loop and tj.scan against the same computation written with plain
Python branches and loops in numpy: values (eager and jitted), gradients against central finite
differences (float64), errors, the IR's regions and the passes inside them, and the generated C.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import tracejit as tj
from tracejit.autodiff.vjp import NotDifferentiableError, vjp_graph
from tracejit.ir.verify import verify
from tracejit.passes.pipeline import optimize
from tracejit.trace import trace
from tracejit.trace.control_flow import ControlFlowError


# ---- helpers --------------------------------------------------------------------------------------
def numerical_grad(fun, args, argnum, eps=1e-6):
    """Central differences of the scalar fun(*args) with respect to args[argnum] (float64)."""
    args = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in args]
    x = args[argnum]
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        for sign in (1, -1):
            shifted = x.copy()
            shifted[idx] += sign * eps
            grad[idx] += sign * float(fun(*args[:argnum], shifted, *args[argnum + 1:])) / (2 * eps)
    return grad


def check_grads(fun, reference, args, argnums=(0,), rtol=1e-6, atol=1e-8):
    """tj.grad(fun) eagerly and jitted == finite differences of the numpy reference."""
    eager = tj.grad(fun, argnums=argnums)(*args)
    jitted = tj.jit(tj.grad(fun, argnums=argnums))(*args)
    for n, got, got_jit in zip(argnums, eager, jitted):
        want = numerical_grad(reference, args, n)
        assert got.dtype == args[n].dtype and got.shape == args[n].shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"gradient of argument {n}")
        np.testing.assert_allclose(got_jit, got, rtol=1e-12, atol=1e-12, err_msg=f"jitted gradient {n}")


def assert_same(got, want, rtol=1e-12):
    """Same pytree of arrays: values, dtype and shape."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for key in want:
            assert_same(got[key], want[key], rtol)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w, rtol)
    else:
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12 if want.dtype == np.float64 else 1e-6)


def both(fun, *args):
    """fun run eagerly and jitted."""
    return fun(*args), tj.jit(fun)(*args)


@pytest.fixture
def x3(rng):
    return rng.standard_normal(3)


# ---- cond -----------------------------------------------------------------------------------------
def branchy(x, y):
    return tj.cond(x.sum() > 0, lambda a, b: np.sin(a) * b, lambda a, b: a - y * 2.0, x, y)


def branchy_ref(x, y):
    return np.sin(x) * y if x.sum() > 0 else x - y * 2.0


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cond_matches_python_branch(rng, sign, dtype):
    x, y = (sign * np.abs(rng.standard_normal(4))).astype(dtype), rng.standard_normal(4).astype(dtype)
    for got in both(branchy, x, y):
        assert_same(got, branchy_ref(x, y), rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_cond_predicate_forms_and_pytrees(x3):
    ops = {"a": x3, "b": (2.0, np.arange(3))}
    true_fun = lambda o: (o["a"] * o["b"][0], o["b"][1] + 1)
    false_fun = lambda o: (o["a"] - o["b"][0], o["b"][1] * 2)
    for pred in (True, 0, np.float64(0.5), np.array(-1.0)):
        want = true_fun(ops) if pred else false_fun(ops)
        assert_same(tj.cond(pred, true_fun, false_fun, ops), want)
        assert_same(tj.jit(lambda p, o: tj.cond(p, true_fun, false_fun, o))(pred, ops), want)


def test_cond_weak_branch_output_takes_the_other_dtype():
    x = np.arange(3, dtype=np.float32)
    got = tj.jit(lambda x: tj.cond(x[0] > 0, lambda a: a.sum(), lambda a: 0.0, x))(x)
    assert got.dtype == np.float32 and got == 0.0


def test_cond_mismatched_branches_name_the_output(x3):
    with pytest.raises(ControlFlowError, match=r"true_fun returns f32\[3\] at output \[1\], false_fun returns f64\[3\]"):
        tj.cond(True, lambda a: (a, a.astype(np.float32)), lambda a: (a, a), x3)
    with pytest.raises(ControlFlowError, match=r"true_fun returns f64\[3\] at output \[0\], false_fun returns f64\[\]"):
        tj.jit(lambda x: tj.cond(x[0] > 0, lambda a: (a,), lambda a: (a.sum(),), x))(x3)
    with pytest.raises(ControlFlowError, match="same structure"):
        tj.cond(True, lambda a: a, lambda a: (a, a), x3)
    with pytest.raises(tj.ShapeError, match="scalar"):
        tj.jit(lambda x: tj.cond(x > 0, lambda a: a, lambda a: -a, x))(x3)
    with pytest.raises(ControlFlowError, match="test_control_flow.py"):
        tj.cond(True, lambda a: a, lambda a: a.astype(np.float32), x3)


@pytest.mark.parametrize("sign", [1, -1])
def test_cond_gradient_is_the_taken_branch(rng, sign):
    x, y = sign * np.abs(rng.standard_normal(3)), rng.standard_normal(3)
    check_grads(lambda x, y: branchy(x, y).sum(), lambda x, y: branchy_ref(x, y).sum(), [x, y], argnums=(0, 1))


def test_cond_gradient_with_several_outputs_and_an_unused_one(x3):
    def fun(x):
        a, b, n = tj.cond(x[0] > 0, lambda v: (v * v, np.exp(v), 1), lambda v: (v, v * 3.0, 2), x)
        return (a * 2.0).sum()  # b and n carry no cotangent
    ref = lambda x: ((x * x if x[0] > 0 else x) * 2.0).sum()
    check_grads(fun, ref, [x3])
    check_grads(fun, ref, [-x3])


def test_tracer_conversion_error_names_the_control_flow_functions(x3):
    def python_if(x):
        if x.sum() > 0:
            return x
        return -x
    with pytest.raises(tj.TracerConversionError) as info:
        tj.jit(python_if)(x3)
    for name in ("np.where", "tj.cond", "tj.while_loop", "tj.fori_loop"):
        assert name in str(info.value)
    assert "test_control_flow.py" in str(info.value)


# ---- fori_loop ------------------------------------------------------------------------------------
def fori_fun(x, w):
    return tj.fori_loop(2, 9, lambda i, c: np.tanh(c * w) + i * 0.01, x)


def fori_ref(x, w):
    c = x
    for i in range(2, 9):
        c = np.tanh(c * w) + i * 0.01
    return c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fori_loop_matches_python_loop(rng, dtype):
    x, w = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    for got in both(fori_fun, x, w):
        assert_same(got, fori_ref(x, w), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_fori_loop_pytree_carry_and_empty_range(x3):
    body = lambda i, c: {"s": c["s"] + c["v"] * i, "v": c["v"] * 0.5}
    init = {"s": np.zeros(3), "v": x3}
    want = dict(init)
    for i in range(4):
        want = body(i, want)
    assert_same(tj.jit(lambda init: tj.fori_loop(0, 4, body, init))(init), want)
    assert_same(tj.fori_loop(5, 3, body, init), init)  # upper < lower: no step


def test_namedtuple_carry_through_fori_loop_and_cond_keeps_its_class(x3):
    from collections import namedtuple
    Carry = namedtuple("Carry", "x n")

    def fun(x):
        c = tj.fori_loop(0, 3, lambda i, c: Carry(c.x * 2.0, c.n + 1.0), Carry(x, 0.0))
        return tj.cond(np.sum(x) > 0, lambda c: Carry(c.x, c.n), lambda c: Carry(-c.x, -c.n), c)

    for x in (x3, -x3):
        got = tj.jit(fun)(x)
        assert type(got) is Carry
        want = Carry(x * 8.0, 3.0) if np.sum(x) > 0 else Carry(-x * 8.0, -3.0)
        assert_same(tuple(got), tuple(want))
    np.testing.assert_array_equal(tj.jit(tj.grad(lambda x: np.sum(fun(x).x)))(x3), np.full(3, 8.0 * np.sign(np.sum(x3))))


def test_fori_loop_with_traced_bound_is_a_while_loop(x3):
    fun = tj.jit(lambda n, x: tj.fori_loop(0, n, lambda i, c: c * 1.5 + i, x))
    for n in (0, 1, 7):
        want = x3
        for i in range(n):
            want = want * 1.5 + i
        assert_same(fun(np.int64(n), x3), want)
    assert "while" in tj.make_ir(lambda n, x: tj.fori_loop(0, n, lambda i, c: c + i, x))(np.int64(3), x3).__str__()


def test_fori_loop_gradient(rng):
    x, w = rng.standard_normal(4), rng.standard_normal(4)
    check_grads(lambda x, w: fori_fun(x, w).sum(), lambda x, w: fori_ref(x, w).sum(), [x, w], argnums=(0, 1))


def test_fori_loop_gradient_of_gradient(x3):
    fun = lambda x: tj.fori_loop(0, 4, lambda i, c: np.sin(c) * x, x).sum()
    ref_grad = lambda x: tj.grad(fun)(x).sum()

    def ref(x):
        c = x
        for _ in range(4):
            c = np.sin(c) * x
        return c.sum()

    got = tj.grad(lambda x: tj.grad(fun)(x).sum())(x3)
    want = numerical_grad(lambda x: numerical_grad(ref, [x], 0, eps=1e-4).sum(), [x3], 0, eps=1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tj.jit(tj.grad(ref_grad))(x3), got, rtol=1e-12)


def test_loop_carry_types(x3):
    with pytest.raises(ControlFlowError, match=r"body_fun returns f32\[3\] at carry \[1\].*is f64\[3\]"):
        tj.fori_loop(0, 3, lambda i, c: (c[0], c[1].astype(np.float32)), (x3, x3))
    with pytest.raises(ControlFlowError, match="structure"):
        tj.while_loop(lambda c: c[0] < 3, lambda c: c[0], (0, x3))
    # a Python-scalar init takes the dtype the body gives it, as in JAX
    got = tj.fori_loop(0, 3, lambda i, c: c + np.float32(1.5), 0.0)
    assert got.dtype == np.float32 and got == 4.5
    got = tj.jit(lambda x: tj.fori_loop(0, 3, lambda i, c: c * x, 1.0))(np.float32(2.0))
    assert got.dtype == np.float32 and got == 8.0


# ---- while_loop -----------------------------------------------------------------------------------
def newton_sqrt(a, tol=1e-12):
    """sqrt(a) by Newton's iteration to a tolerance: the trip count depends on a."""
    def not_done(state):
        x, _ = state
        return np.abs(x * x - a) > tol * a
    def step(state):
        x, n = state
        return 0.5 * (x + a / x), n + 1
    return tj.while_loop(not_done, step, (a, 0))


def newton_ref(a, tol=1e-12):
    x, n = a, 0
    while np.abs(x * x - a) > tol * a:
        x, n = 0.5 * (x + a / x), n + 1
    return x, n


def test_while_loop_trip_count_depends_on_the_data():
    jitted = tj.jit(newton_sqrt)
    counts = set()
    for a in (np.float64(2.0), np.float64(1e6), np.float64(0.25), np.float64(1.0)):
        want_x, want_n = newton_ref(a)
        for x, n in (newton_sqrt(a), jitted(a)):
            assert_same(x, want_x)
            assert int(n) == want_n
        counts.add(want_n)
    assert len(counts) > 2


def test_while_loop_pytree_and_captured_values(rng):
    w = rng.standard_normal(3)
    fun = lambda x: tj.while_loop(lambda c: c["k"] < 5, lambda c: {"k": c["k"] + 1, "v": c["v"] * w + 1.0},
                                  {"k": 0, "v": x})
    want = {"k": 0, "v": np.ones(3)}
    while want["k"] < 5:
        want = {"k": want["k"] + 1, "v": want["v"] * w + 1.0}
    for got in both(fun, np.ones(3)):
        assert int(got["k"]) == 5
        assert_same(got["v"], want["v"])


def test_while_loop_gradient_is_a_clear_error():
    with pytest.raises(NotDifferentiableError, match="tj.while_loop is forward-only.*tj.fori_loop.*tj.scan"):
        tj.grad(lambda a: newton_sqrt(a)[0])(np.float64(2.0))
    # no gradient asked through the loop: fine
    np.testing.assert_allclose(tj.grad(lambda a: a * newton_sqrt(np.float64(4.0))[0])(np.float64(3.0)), 2.0)


# ---- scan ----------------------------------------------------------------------------------------
def rnn_step(params, h, x):
    return np.tanh(h @ params["W"] + x @ params["U"] + params["b"])


def rnn_loss_scan(params, h0, xs):
    def step(h, x):
        h = rnn_step(params, h, x)
        return h, (h * h).sum()
    h, ys = tj.scan(step, h0, xs)
    return ys.sum() + h.sum()


def rnn_loss_unrolled(params, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = rnn_step(params, h, x)
        total = total + (h * h).sum()
    return total + h.sum()


def rnn_problem(rng, steps=50, hidden=6, features=3, dtype=np.float64):
    params = {"W": rng.standard_normal((hidden, hidden)) * 0.4, "U": rng.standard_normal((features, hidden)),
              "b": rng.standard_normal(hidden) * 0.1}
    params = {k: v.astype(dtype) for k, v in params.items()}
    return params, np.zeros((2, hidden), dtype), rng.standard_normal((steps, 2, features)).astype(dtype)


def test_rnn_of_50_steps_gradient_matches_the_unrolled_version(rng):
    params, h0, xs = rnn_problem(rng)
    want_loss, want = tj.value_and_grad(rnn_loss_unrolled)(params, h0, xs)
    for loss, grads in (tj.value_and_grad(rnn_loss_scan)(params, h0, xs),
                        tj.jit(tj.value_and_grad(rnn_loss_scan))(params, h0, xs)):
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
        for k in params:
            np.testing.assert_allclose(grads[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    # and the unrolled gradient is right: finite differences of plain numpy on a few entries
    fd = numerical_grad(lambda b: rnn_loss_unrolled(dict(params, b=b), h0, xs), [params["b"]], 0)
    np.testing.assert_allclose(want["b"], fd, rtol=1e-6)


def test_scan_pullback_reads_the_forward_results_instead_of_recomputing_them(rng):
    """tanh's derivative needs tanh's result: the backward scan reads it from the saved carries
    (shifted one step), so its body has no tanh and only the three backward matmuls."""
    params, h0, xs = rnn_problem(rng, steps=5)
    graph = tj.make_ir(tj.grad(rnn_loss_scan))(params, h0, xs).graph
    backward = [n for n in graph.nodes if n.prim.name == "scan"][-1].params["body"]
    names = [n.prim.name for n in backward.nodes]
    assert "tanh" not in names and names.count("matmul") == 3


def test_rnn_trains_in_float32(rng):
    params, h0, xs = rnn_problem(rng, steps=20, dtype=np.float32)

    @tj.jit
    def train_step(params, h0, xs):
        loss, grads = tj.value_and_grad(lambda p: rnn_loss_scan(p, h0, xs) / 20.0)(params)
        return {k: params[k] - 0.05 * grads[k] for k in params}, loss

    losses = []
    for _ in range(10):
        params, loss = train_step(params, h0, xs)
        assert params["W"].dtype == np.float32 and loss.dtype == np.float32
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def scan_fun(c0, xs, w):
    def f(carry, x):
        a, b = carry["a"], carry["b"]
        return {"a": a * x["u"] + np.sin(b) * w, "b": b * 0.5 + a}, (a * 2.0, (x["v"] * a[:, None]).sum())
    return tj.scan(f, c0, xs, reverse=True)


def scan_ref(c0, xs, w):
    a, b = c0["a"], c0["b"]
    n = len(xs["u"])
    y0, y1 = [None] * n, [None] * n
    for t in reversed(range(n)):
        y0[t], y1[t] = a * 2.0, (xs["v"][t] * a[:, None]).sum()
        a, b = a * xs["u"][t] + np.sin(b) * w, b * 0.5 + a
    return {"a": a, "b": b}, (np.stack(y0), np.array(y1))


@pytest.fixture
def scan_args(rng):
    c0 = {"a": rng.standard_normal(2), "b": rng.standard_normal(2)}
    xs = {"u": rng.standard_normal((5, 2)), "v": rng.standard_normal((5, 2, 3))}
    return c0, xs, rng.standard_normal(2)


def test_scan_pytrees_reverse(scan_args):
    for got in both(scan_fun, *scan_args):
        assert_same(got, scan_ref(*scan_args))


def test_scan_vjp_with_cotangents_on_carry_and_ys(scan_args, rng):
    """Every output gets a random cotangent; each input's gradient against finite differences."""
    out = scan_ref(*scan_args)
    leaves = [out[0]["a"], out[0]["b"], out[1][0], out[1][1]]
    cts = [rng.standard_normal(np.shape(v)) for v in leaves]
    ct_tree = ({"a": cts[0], "b": cts[1]}, (cts[2], cts[3]))

    def dot(out):
        return sum((np.asarray(v) * c).sum() for v, c in zip([out[0]["a"], out[0]["b"], out[1][0], out[1][1]], cts))

    _, vjp_fn = tj.vjp(scan_fun, *scan_args)
    g_c0, g_xs, g_w = vjp_fn(ct_tree)
    c0, xs, w = scan_args
    np.testing.assert_allclose(g_w, numerical_grad(lambda w: dot(scan_ref(c0, xs, w)), [w], 0), rtol=1e-6)
    np.testing.assert_allclose(g_c0["b"], numerical_grad(lambda b: dot(scan_ref(dict(c0, b=b), xs, w)), [c0["b"]], 0),
                               rtol=1e-6)
    np.testing.assert_allclose(g_xs["v"], numerical_grad(lambda v: dot(scan_ref(c0, dict(xs, v=v), w)), [xs["v"]], 0),
                               rtol=1e-6, atol=1e-8)


def test_scan_without_xs_and_python_scalars():
    def f(carry, _):
        n, s = carry
        return (n + 1, s + n * 0.5), n * n
    (n, s), ys = tj.scan(f, (0, 0.0), None, length=6)
    assert int(n) == 6 and float(s) == 7.5
    assert_same(ys, np.arange(6) ** 2)
    with pytest.raises(tj.ShapeError, match="length="):
        tj.scan(f, (0, 0.0), None)
    with pytest.raises(tj.ShapeError, match="disagree"):
        tj.scan(lambda c, x: (c, x), 0.0, (np.ones(3), np.ones(4)))
    with pytest.raises(ControlFlowError, match="pair"):
        tj.scan(lambda c, x: c, 0.0, np.ones(3))


# ---- nesting ------------------------------------------------------------------------------------
def nested(x, w):
    inner = lambda a: tj.fori_loop(0, 3, lambda i, c: np.sin(c) * w + i, a)
    return tj.cond(x[0] > 0, inner, lambda a: a * w, x)


def nested_ref(x, w):
    if x[0] > 0:
        c = x
        for i in range(3):
            c = np.sin(c) * w + i
        return c
    return x * w


@pytest.mark.parametrize("sign", [1, -1])
def test_fori_inside_cond(rng, sign):
    x, w = rng.standard_normal(3), rng.standard_normal(3)
    x[0] = sign * abs(x[0])
    for got in both(nested, x, w):
        assert_same(got, nested_ref(x, w))
    check_grads(lambda x, w: nested(x, w).sum(), lambda x, w: nested_ref(x, w).sum(), [x, w], argnums=(0, 1))


def test_cond_inside_scan_inside_grad(rng):
    xs, w = rng.standard_normal((6, 3)), rng.standard_normal(3)

    def fun(w):
        step = lambda c, x: (tj.cond(x.sum() > 0, lambda c: c * w + x, lambda c: np.cos(c), c), None)
        return tj.scan(step, np.ones(3), xs)[0].sum()

    def ref(w):
        c = np.ones(3)
        for x in xs:
            c = c * w + x if x.sum() > 0 else np.cos(c)
        return c.sum()

    check_grads(fun, ref, [w])


# ---- the IR and the passes ---------------------------------------------------------------------
def test_ir_prints_regions_indented_under_their_node(x3):
    text = str(tj.make_ir(nested)(x3, x3))
    lines = text.splitlines()
    cond_line = next(i for i, l in enumerate(lines) if " = cond " in l)
    indent = lambda line: len(line) - len(line.lstrip())
    label = lines[cond_line + 1]
    assert label.strip() == "true_branch:" and indent(label) > indent(lines[cond_line])
    assert "def " in lines[cond_line + 2] and indent(lines[cond_line + 2]) > indent(label)
    scan_line = next(i for i, l in enumerate(lines) if " = scan[" in l)
    assert indent(lines[scan_line]) > indent(lines[cond_line]) and "test_control_flow.py" in lines[scan_line]
    assert "false_branch:" in text and "body:" in text


def test_joint_graphs_verify_before_and_after_the_passes(rng):
    params, h0, xs = rnn_problem(rng, steps=4)
    for fun, args in ((rnn_loss_scan, (params, h0, xs)), (lambda x, w: nested(x, w).sum(), (xs[0, 0], xs[1, 0]))):
        traced = trace(fun, args)
        joint = vjp_graph(traced.graph, [0, 1])
        verify(joint)
        verify(optimize(joint, verify_each=True))


def test_dce_drops_saved_carries_and_unused_outputs_but_keeps_carries(x3):
    """The front end stacks each step's carry for a gradient; without one DCE drops the stack, and
    an unused carry stays (the next step reads it) while an unused cond output goes."""
    def fun(x):
        (a, b), ys = tj.scan(lambda c, t: ((c[0] * 2.0, c[1] + c[0]), c[0].sum()), (x, x), None, length=4)
        p, q = tj.cond(x[0] > 0, lambda v: (v + 1.0, np.exp(v)), lambda v: (v, v), x)
        return b + p
    raw = tj.make_ir(fun, optimize=False)(x3).graph
    opt = tj.make_ir(fun)(x3).graph
    raw_scan, opt_scan = [next(n for n in g.nodes if n.prim.name == "scan") for g in (raw, opt)]
    assert len(raw_scan.outputs) == 2 + 1 + 2 and len(opt_scan.outputs) == 2  # carries kept, ys dropped
    opt_cond = next(n for n in opt.nodes if n.prim.name == "cond")
    assert len(opt_cond.outputs) == 1
    assert "exp" not in str(opt_cond.params["true_branch"])
    assert_same(fun(x3), tj.jit(fun)(x3))


def test_cse_works_inside_regions_and_never_across_them(x3):
    def fun(x):
        y = np.sin(x)  # outside: must not be merged with the identical node inside the body
        body = lambda i, c: np.sin(x) * np.sin(x) + c
        return tj.fori_loop(0, 3, body, y)
    graph = tj.make_ir(fun)(x3).graph
    assert [n.prim.name for n in graph.nodes].count("sin") == 1
    body = next(n for n in graph.nodes if n.prim.name == "scan").params["body"]
    assert [n.prim.name for n in body.nodes].count("sin") == 1  # the two sin(x) inside became one
    verify(graph)
    assert_same(tj.jit(fun)(x3), np.sin(x3) * np.sin(x3) * 3 + np.sin(x3))


# ---- jitted == eager on tricky programs --------------------------------------------------------
_r = np.random.default_rng(7)
X3, XS, XS3, BIG, W3 = _r.standard_normal(3), _r.standard_normal((4, 3)), _r.standard_normal((4, 2, 3)), \
    _r.standard_normal((100, 3)), np.array([1.0, 2.0, 3.0])
TRICKY = {
    "zero_steps": (lambda x: tj.scan(lambda c, y: (c + y, c * 2), x, np.ones((0, 3))), (X3,)),
    "transposed_xs": (lambda m: tj.scan(lambda c, y: (c + y, y.sum()), np.zeros(4), m.T), (XS,)),
    "sliced_xs": (lambda m: tj.scan(lambda c, y: (c * y, c), np.ones(2), m[1:, :2]), (XS,)),
    "big_constant": (lambda x: tj.fori_loop(0, 5, lambda i, c: c + (BIG * i).sum(), x.sum()), (X3,)),
    "scan_in_scan": (lambda x: tj.scan(lambda c, xx: (tj.scan(lambda d, y: (d * y + 1.0, d), c, xx)[0], c.sum()),
                                       x, XS3), (X3,)),
    "while_in_scan": (lambda x: tj.scan(lambda c, y: (tj.while_loop(lambda d: d.sum() < 10, lambda d: d * 2 + y, c), c),
                                        np.abs(x) + 0.1, np.abs(XS)), (X3,)),
    "cond_in_while": (lambda x: tj.while_loop(lambda s: s[0] < 6, lambda s: (
        s[0] + 1, tj.cond(s[0] < 3, lambda v: v * 2, lambda v: v - 1, s[1])), (0, x)), (X3,)),
    "int_bool_carries": (lambda x: tj.fori_loop(0, 4, lambda i, c: (c[0] + i, ~c[1], c[2] * 1.5), (0, True, x)), (X3,)),
    "branch_returns_operand": (lambda x: tj.cond(x[0] > 0, lambda a: (a, 1.0), lambda a: (a * 2, 2.0), x), (X3,)),
    "same_function_both_branches": (lambda x: tj.cond(x[0] > 0, np.sin, np.sin, x), (X3,)),
    "output_twice": (lambda x: (lambda r: (r, r, r * 2))(tj.fori_loop(0, 3, lambda i, c: c * 2, x)), (X3,)),
    "constant_in_branch_and_pullback": (tj.value_and_grad(
        lambda x: tj.cond(x[0] > 0, lambda a: (np.sin(a) * W3).sum(), lambda a: (a * W3 * W3).sum(), x)), (X3,)),
    "reverse_scan_grads": (tj.grad(lambda x, xs: tj.scan(lambda c, y: (np.cos(c) * y, c.sum()), x, xs,
                                                           reverse=True)[1].sum(), argnums=(0, 1)), (X3, XS)),
    "int_carry_grad": (tj.grad(lambda xs: tj.scan(lambda c, x: (c + 1, np.sin(x) * c), 0, xs)[1].sum()), (XS[:, 0],)),
    "one_step_reverse_grad": (tj.grad(lambda w: tj.scan(lambda c, x: (np.tanh(c * w), None), np.ones(3), None,
                                                        length=1, reverse=True)[0].sum()), (X3,)),
    "second_order_scan": (tj.grad(lambda x: tj.grad(lambda y: tj.scan(
        lambda c, t: (np.sin(c) * y, c), y, None, length=3)[0].sum())(x).sum()), (X3,)),
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_jitted_c_matches_the_interpreter(name):
    fun, args = TRICKY[name]
    assert_same(tj.jit(fun)(*args), fun(*args))


def test_big_constants_leave_the_loop_body():
    graph = tj.make_ir(TRICKY["big_constant"][0])(X3).graph
    body = next(n for n in graph.nodes if n.prim.name == "scan").params["body"]
    assert not [n for n in body.nodes if n.prim.name == "constant" and n.out.size > 64]
    assert [n for n in graph.nodes if n.prim.name == "constant" and n.out.shape == BIG.shape]


# ---- the generated C ----------------------------------------------------------------------------
def fori_source(steps: int, x) -> str:
    return tj.jit(lambda x: tj.fori_loop(0, steps, lambda i, c: np.sin(c) * 0.5 + i, x)).lower(x).c_source


def test_fori_loop_of_1000_steps_is_one_loop_in_c(x3):
    """One C loop whatever the trip count: the source (so the compile) does not grow with it."""
    small, big = fori_source(10, x3), fori_source(1000, x3)
    assert big.count("for (int64_t t = 0; t < 1000; t++)") == 1
    assert len(re.findall(r"\b(for|while) \(", big)) == len(re.findall(r"\b(for|while) \(", small))
    assert big.count("sin") == small.count("sin") > 0
    # the same C but for the trip count (in the loop and its comment)
    assert big == small.replace("t < 10;", "t < 1000;").replace("over 10 steps", "over 1000 steps")
    want = x3
    for i in range(1000):
        want = np.sin(want) * 0.5 + i
    assert_same(tj.jit(lambda x: tj.fori_loop(0, 1000, lambda i, c: np.sin(c) * 0.5 + i, x))(x3), want)


def test_loop_carries_are_swapped_not_copied(x3):
    src = fori_source(7, x3)
    loop = src[src.index("for (int64_t t = 0; t < 7; t++)"):]
    loop = loop[:loop.index("\n    }\n")]
    assert "memcpy" not in loop and re.search(r"(\w+)_cur = (\w+)_next; \2_next = ", loop)
    # an odd trip count starts on the output buffer, so the last step lands there
    assert re.search(r"_next = v\w*_buf;", src) and "memcpy" in src  # (only for a zero-step guard)


def test_cond_and_while_are_if_else_and_a_c_loop(x3):
    cond_src = tj.jit(branchy).lower(x3, x3).c_source
    assert re.search(r"if \(\*\w+\) \{\n\s+/\* true_branch \*/", cond_src) and "} else {" in cond_src
    while_src = tj.jit(newton_sqrt).lower(np.float64(2.0)).c_source
    assert "for (;;) {" in while_src and re.search(r"if \(!\w+\) break;", while_src)


CONTROL_PROGRAMS = {
    "cond": (branchy, (np.ones(3), np.ones(3))),
    "fori_in_cond": (nested, (np.ones(3), np.ones(3))),
    "while": (newton_sqrt, (np.float64(2.0),)),
    "rnn_grad": (tj.grad(rnn_loss_scan), rnn_problem(np.random.default_rng(0), steps=3)),
    "scan_reverse": (scan_fun, ({"a": np.ones(2), "b": np.ones(2)}, {"u": np.ones((3, 2)), "v": np.ones((3, 2, 3))},
                                np.ones(2))),
}


@pytest.mark.parametrize("name", sorted(CONTROL_PROGRAMS))
def test_control_flow_c_compiles_with_wall_werror(name, tmp_path):
    from tracejit.compile.toolchain import compile_shared, default_flags

    fun, args = CONTROL_PROGRAMS[name]
    source = tj.jit(fun).lower(*args).c_source
    assert "interpreted" not in source and "int tj_main(" in source
    compile_shared(source, tmp_path, "tj_test", flags=default_flags() + ["-Wall", "-Wextra", "-Werror",
                                                                         "-Wno-unused-parameter"])
