"""The training-step rewrites and fusions (W3, W4): each against numpy, the reference
interpreter and finite differences, plus the structure that makes it fast (what is stored).

  rewrite_indexing   x[arange(n), labels] of an elementwise result moves onto the operands;
                     its gradient scatter_add becomes where(column == label, update, 0)
  matmul epilogues   p - lr * (a @ b) runs as a loop after a plain gemm (alpha 1, beta 0), so it
                     rounds as numpy's separate operations do
  sinking            1 - h*h moves from the forward kernel into the backward one
  in place           a matmul epilogue overwrites the product it reads
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import tracejit as tj
from tracejit.ir.interpret import evaluate
from tracejit.ir.verify import verify
from tracejit.passes.fusion import fuse
from tracejit.passes.index_rewrites import rewrite_indexing
from tracejit.passes.pipeline import optimize
from tracejit.passes.simplify import simplify
from tracejit.trace import trace

F32, F64 = np.float32, np.float64


def xent(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def xent_inputs(n=6, k=5, dtype=F64, seed=0, negative=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    if negative:
        labels[::2] -= k  # numpy wraps them
    return rng.standard_normal((n, k)).astype(dtype), labels


def numerical_grad(fun, x, eps=1e-6):
    x = np.array(x, dtype=F64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        g[idx] = (float(fun(plus)) - float(fun(minus))) / (2 * eps)
    return g


def prims(graph) -> list[str]:
    return [n.prim.name for n in graph.nodes]


def optimized(fun, *args):
    return optimize(trace(fun, args).graph, verify_each=True)


def stored_shapes(kernel_graph) -> list[tuple]:
    """Shapes of the temporaries a program stores (not its inputs and outputs)."""
    fixed = set(kernel_graph.graph.inputs) | set(kernel_graph.outputs)
    return [tuple(v.shape) for v in kernel_graph.roots if v not in fixed]


# ---- rewrite_indexing: the scatter of a label pick becomes a select ----------------------------
@pytest.mark.parametrize("negative", [False, True])
def test_xent_gradient_has_no_scatter_and_matches_finite_differences(negative):
    logits, labels = xent_inputs(negative=negative)
    graph = optimized(tj.value_and_grad(xent), logits, labels)
    assert "scatter_add" not in prims(graph) and "where" in prims(graph)
    loss, grad = tj.jit(tj.value_and_grad(xent))(logits, labels)
    np.testing.assert_allclose(loss, xent(logits, labels), rtol=1e-12)
    np.testing.assert_allclose(grad, numerical_grad(lambda z: xent(z, labels), logits), rtol=1e-6, atol=1e-9)
    raw = trace(tj.value_and_grad(xent), (logits, labels)).graph
    for got, want in zip(evaluate(graph, [logits, labels]), evaluate(raw, [logits, labels])):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype, index_dtype", [(F32, np.int64), (F64, np.int32)])
def test_xent_value_and_grad_float32_and_int32_labels_against_the_interpreter(dtype, index_dtype):
    logits, labels = xent_inputs(40, 33, dtype=dtype, seed=3)
    labels = labels.astype(index_dtype)
    raw = trace(tj.value_and_grad(xent), (logits, labels)).graph
    want = evaluate(raw, [logits, labels])
    got = tj.jit(tj.value_and_grad(xent))(logits, labels)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype and np.shape(g) == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-5 if dtype == F32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("fun", [tj.grad(xent), tj.value_and_grad(xent)])
def test_out_of_range_label_still_raises(fun):
    logits, labels = xent_inputs()
    labels[2] = 5  # k == 5
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(fun)(logits, labels)
    labels[2] = -6
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(fun)(logits, labels)


def pick_rows_and_two_columns(x, i, j):
    """x[arange, i, j] over a 4-D x: three indexed axes and a tail axis."""
    return (np.tanh(x) * x[np.arange(x.shape[0]), i, j][:, None, None, :]).sum()


def test_scatter_rewrite_with_three_indices_and_a_tail_axis():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4, 3, 2))
    i, j = rng.integers(0, 4, 5), rng.integers(-3, 3, 5)
    graph = optimized(tj.grad(pick_rows_and_two_columns), x, i, j)
    assert "scatter_add" not in prims(graph) and "logical_and" in prims(graph)
    got = tj.jit(tj.grad(pick_rows_and_two_columns))(x, i, j)
    np.testing.assert_allclose(got, numerical_grad(lambda z: pick_rows_and_two_columns(z, i, j), x),
                               rtol=1e-6, atol=1e-8)


# ---- the one-hot row sum: sum_j where(iota_j == label, v, 0) is v ----------------------------
def shifted_pick(m, x, labels, w):
    """d/dm of this sums the one-hot scatter of w over the columns (the rule's pattern)."""
    return np.sum((x - m)[np.arange(x.shape[0]), labels] * w)


def one_hot_sum_inputs(dtype=F64, n=7, k=6, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)).astype(dtype)
    m = rng.standard_normal((n, 1)).astype(dtype)
    return m, x, rng.integers(-k, k, n), rng.standard_normal(n).astype(dtype)


def one_hot_sum_by_numpy(x, labels, w):
    cols = np.arange(x.shape[1])
    return -np.sum(np.where(cols == (labels % x.shape[1])[:, None], w[:, None], 0), axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_one_hot_row_sum_is_dropped_and_matches_numpy(dtype):
    m, x, labels, w = one_hot_sum_inputs(dtype)
    graph = optimized(tj.grad(shifted_pick), m, x, labels, w)
    producer = graph.producers()
    summed = [producer.get(n.inputs[0]) for n in graph.nodes if n.prim.name == "sum"]
    assert not any(p is not None and p.prim.name == "where" for p in summed), prims(graph)
    got = tj.jit(tj.grad(shifted_pick))(m, x, labels, w)
    assert got.dtype == dtype and got.shape == m.shape
    np.testing.assert_array_equal(got, one_hot_sum_by_numpy(x, labels, w).astype(dtype))
    np.testing.assert_allclose(got, numerical_grad(lambda z: shifted_pick(z, x, labels, w), m), rtol=1e-6)


def test_one_hot_row_sum_keeps_the_sign_of_zero():
    """-0.0 + 0.0 is +0.0: a summed row whose update is -0.0 gives +0.0, so d/dm is -(+0.0)."""
    m, x, labels, w = one_hot_sum_inputs()
    w[::2] = -0.0
    w[1] = 0.0
    got = tj.jit(tj.grad(shifted_pick))(m, x, labels, w)
    want = one_hot_sum_by_numpy(x, labels, w)
    raw = evaluate(trace(tj.grad(shifted_pick), (m, x, labels, w)).graph, [m, x, labels, w])[0]
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(np.signbit(raw), np.signbit(want))
    np.testing.assert_array_equal(got, want)


def picked_by_compare(x, labels, v):
    """A user-written one-hot select: its labels are not bounds-checked, so one out of range
    selects nothing and the row sums to 0 (the rule must not fire)."""
    hit = np.arange(x.shape[1])[None, :] == labels[:, None]
    return np.sum(np.where(hit, v[:, None], 0.0), axis=1) + x.sum(axis=1)


def test_user_written_one_hot_sum_with_labels_out_of_range_matches_numpy():
    rng = np.random.default_rng(6)
    x, v = rng.standard_normal((5, 4)), rng.standard_normal(5)
    labels = np.array([0, 3, 4, -1, 2])
    got = tj.jit(picked_by_compare)(x, labels, v)
    np.testing.assert_array_equal(got, picked_by_compare(x, labels, v))


def repeated_rows(x, rows, cols):
    return (x[rows, cols] ** 2).sum()


def test_scatter_without_one_row_each_is_kept_and_accumulates_duplicates():
    x = np.random.default_rng(5).standard_normal((4, 3))
    rows, cols = np.array([0, 2, 0, 0, 3]), np.array([1, 1, 1, 2, -1])  # (0, 1) three times
    graph = optimized(tj.grad(repeated_rows), x, rows, cols)
    assert "scatter_add" in prims(graph)
    got = tj.jit(tj.grad(repeated_rows))(x, rows, cols)
    np.testing.assert_allclose(got, numerical_grad(lambda z: repeated_rows(z, rows, cols), x), rtol=1e-6, atol=1e-8)


# ---- rewrite_indexing: the gather moves onto the operands --------------------------------------
def test_label_pick_of_log_softmax_stores_no_full_array():
    logits, labels = xent_inputs(64, 50, dtype=F32)
    graph = optimized(tj.value_and_grad(xent), logits, labels)
    gathers = [n for n in graph.nodes if n.prim.name == "gather"]
    assert all(n.out.size <= 64 for n in gathers)  # picks of single elements, not of a log-softmax
    assert (64, 50) not in stored_shapes(fuse(graph))


def broadcast_pick(a, b, c, rows, cols):
    return np.exp(a * b[None, :] - c[:, None])[rows, cols] + a[rows, cols]


def test_gather_through_broadcast_operands_matches_numpy_and_interpreter():
    rng = np.random.default_rng(6)
    a, b, c = rng.standard_normal((7, 9)), rng.standard_normal(9), rng.standard_normal(7)
    rows, cols = rng.integers(-7, 7, 4), rng.integers(-9, 9, 4)
    args = (a, b, c, rows, cols)
    graph = optimized(broadcast_pick, *args)
    assert all(n.out.size <= 4 for n in graph.nodes if n.prim.name == "gather")
    (got,) = evaluate(graph, list(args))
    np.testing.assert_allclose(got, broadcast_pick(*args), rtol=1e-13)
    np.testing.assert_allclose(tj.jit(broadcast_pick)(*args), broadcast_pick(*args), rtol=1e-13)
    bad = cols.copy()
    bad[1] = 9
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(broadcast_pick)(a, b, c, rows, bad)


def outer_pick(b, c, rows, cols):
    return (b[None, :] + c[:, None])[rows, cols]


def test_gather_is_not_moved_when_no_operand_keeps_every_index():
    rng = np.random.default_rng(7)
    b, c = rng.standard_normal(5), rng.standard_normal(3)
    rows, cols = np.array([0, 2, 1]), np.array([4, 0, 3])
    graph = simplify(trace(outer_pick, (b, c, rows, cols)).graph)
    rewritten = rewrite_indexing(graph)
    verify(rewritten)
    assert prims(rewritten) == prims(graph)  # each operand is broadcast along one indexed axis
    np.testing.assert_allclose(tj.jit(outer_pick)(b, c, rows, cols), outer_pick(b, c, rows, cols), rtol=1e-14)
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(outer_pick)(b, c, rows, np.array([4, 5, 3]))


def shared_logits(x, labels):
    y = np.tanh(x) * 2.0
    return y[np.arange(x.shape[0]), labels] + y[:, :2].sum(axis=1)


def test_gather_of_a_value_read_elsewhere_matches_numpy():
    x, labels = xent_inputs(5, 4, seed=8)
    np.testing.assert_allclose(tj.jit(shared_logits)(x, labels), shared_logits(x, labels), rtol=1e-14)
    got = tj.jit(tj.grad(lambda z, l: shared_logits(z, l).sum()))(x, labels)
    np.testing.assert_allclose(got, numerical_grad(lambda z: shared_logits(z, labels).sum(), x), rtol=1e-6, atol=1e-8)


# ---- W4-like training step: plain gemms, sinking, in place ---------------------------------
def mlp_loss(params, x, y):
    h = x
    for i in (1, 2):
        h = np.tanh(h @ params[f"W{i}"] + params[f"b{i}"])
    return xent(h @ params["W3"] + params["b3"], y)


def mlp_inputs(dtype=F32, sizes=(12, 9, 8, 5), batch=6, seed=9):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype)
        params[f"b{i}"] = (rng.standard_normal(n) * 0.1).astype(dtype)
    return params, rng.standard_normal((batch, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], batch)


def sgd_step(params, x, y, lr):
    loss, grads = tj.value_and_grad(mlp_loss)(params, x, y)
    return {k: params[k] - lr * grads[k] for k in params}, loss


def test_sgd_step_matches_finite_differences_and_the_interpreter():
    params, x, y = mlp_inputs(F64)
    lr = F64(0.25)
    new, loss = tj.jit(sgd_step)(params, x, y, lr)
    np.testing.assert_allclose(loss, mlp_loss(params, x, y), rtol=1e-12)
    for name, p in params.items():
        def loss_of(value, name=name):
            return mlp_loss({**params, name: value}, x, y)
        want = p - lr * numerical_grad(loss_of, p)
        np.testing.assert_allclose(new[name], want, rtol=1e-7, atol=1e-9, err_msg=name)
    raw = trace(sgd_step, (params, x, y, lr)).graph
    leaves = [params[k] for k in sorted(params)] + [x, y, lr]
    got = tj.jit(sgd_step).lower(params, x, y, lr).compile()(*leaves)
    for g, w in zip(got, evaluate(raw, leaves)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_sgd_step_float32_with_python_float_lr():
    params, x, y = mlp_inputs(F32, batch=9)

    def step(params, x, y):
        return sgd_step(params, x, y, 0.5)

    new, loss = tj.jit(step)(params, x, y)
    raw = trace(step, (params, x, y)).graph
    want = evaluate(raw, [params[k] for k in sorted(params)] + [x, y])
    for g, w in zip([new[k] for k in sorted(new)] + [loss], want):
        assert np.asarray(g).dtype == w.dtype == F32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


GEMM_CALL = re.compile(r"^ +tj_gemm_\w+\(([^;]*)\);", re.MULTILINE)  # the calls (indented), not the definitions


def gemm_alpha_beta(source: str) -> list[tuple[str, str]]:
    """(alpha, beta) of every BLAS call in generated C (arguments 6 and 11 of tj_gemm_*)."""
    return [(args[5], args[10]) for args in (m.split(", ") for m in GEMM_CALL.findall(source))]


def test_sgd_step_structure_plain_gemms_sinking_and_in_place():
    params, x, y = mlp_inputs(F32)
    lowered = tj.jit(sgd_step).lower(params, x, y, F32(0.1))
    source = lowered.c_source
    calls = gemm_alpha_beta(source)
    assert len(calls) == 8 and set(calls) == {("1", "0")}, calls  # 3 forward, 5 backward
    assert "memcpy(" not in source
    kg = lowered.compile().kernel_graph
    in_place = [(d, s) for k in kg.kernels for d, s in k.stores if d is not s]
    # tanh(h @ W + b) over each forward product, the tanh' products over each backward one
    assert len(in_place) == 4, in_place
    forward = [k for k in kg.kernels if "tanh" in [n.prim.name for n in k.nodes]]
    assert all(n.prim.name != "subtract" for k in forward for n in k.nodes)  # 1 - h*h moved out
    assert len(stored_shapes(kg)) == len(set(map(id, kg.roots))) - len(kg.graph.inputs) - len(kg.outputs)
    # each weight gradient is written into its new parameter's output buffer, then updated there
    weight_shapes = {tuple(params[k].shape) for k in params if k.startswith("W")}
    assert not weight_shapes & set(stored_shapes(kg))
    products_in_outputs = [m for k in kg.kernels for m in k.matmuls if kg.views[m.nodes[0].out].root in kg.outputs]
    assert len(products_in_outputs) == 3


UPDATE_FORMS = {
    "p - s * mm": lambda p, mm, s: p - s * mm,
    "p + mm * s": lambda p, mm, s: p + mm * s,
    "mm + p": lambda p, mm, s: mm + p,
    "p - mm": lambda p, mm, s: p - mm,
    "p - 0.5 * mm": lambda p, mm, s: p - 0.5 * mm,
}


@pytest.mark.parametrize("form", list(UPDATE_FORMS))
def test_update_epilogues_round_as_numpy_does(form):
    """p - s * (a.T @ b) in float32 gives numpy's bits for the same product: each operation is
    rounded on its own. (A gemm with beta = 1 rounds `p + alpha * acc` once and differs.)"""
    rng = np.random.default_rng(10)
    # W4's backward shapes: with beta = 1, OpenBLAS changed about 29% of these elements
    p, a, b = (rng.standard_normal(shape).astype(F32) for shape in ((512, 512), (128, 512), (128, 512)))
    s = F32(0.1)

    def update(p, a, b, s):
        return UPDATE_FORMS[form](p, a.T @ b, s)

    fn = tj.jit(update)
    assert set(gemm_alpha_beta(fn.lower(p, a, b, s).c_source)) == {("1", "0")}
    product = tj.jit(lambda a, b: a.T @ b)(a, b)
    want = UPDATE_FORMS[form](p, product, s)
    assert want.dtype == F32
    np.testing.assert_array_equal(fn(p, a, b, s), want)


def descend(p, x, lr):
    """Least squares by gradient steps: the carry is both a gemm operand and the updated value."""
    def step(i, p):
        return p - lr * (x.T @ (x @ p))
    return tj.fori_loop(0, 5, step, p)


def test_update_of_a_loop_carry_read_by_its_own_gemms_matches_numpy():
    rng = np.random.default_rng(16)
    p, x = rng.standard_normal((6, 3)).astype(F32), rng.standard_normal((8, 6)).astype(F32)
    want = p
    for _ in range(5):
        want = want - F32(0.05) * (x.T @ (x @ want))
    np.testing.assert_allclose(tj.jit(descend)(p, x, F32(0.05)), want, rtol=1e-5, atol=1e-6)


def output_and_other_reader(p, a, b):
    mm = a @ b
    return p - 0.5 * mm, np.tanh(mm).sum()


def test_a_product_read_by_another_kernel_keeps_its_own_buffer():
    rng = np.random.default_rng(17)
    p, a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    kg = tj.jit(output_and_other_reader).lower(p, a, b).compile().kernel_graph
    assert not any(kg.views[m.nodes[0].out].root in kg.outputs for k in kg.kernels for m in k.matmuls)
    for got, want in zip(tj.jit(output_and_other_reader)(p, a, b), output_and_other_reader(p, a, b)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def _twice(r):
    return r, r


PRODUCT_INTO_OUTPUT_CASES = {  # form -> whether the product is written into an output's buffer
    "batched": (lambda p, a, b: p - 0.1 * (a @ b), True),
    "returned twice": (lambda p, a, b: _twice(p - 0.1 * (a @ b)), True),
    "result read by later kernels": (lambda p, a, b: _read_later(p - 0.1 * (a @ b), b), True),
    "result reshaped": (lambda p, a, b: (p - 0.1 * (a @ b)).reshape(-1), False),
    "transposed result": (lambda p, a, b: (p - (a @ b)).transpose(0, 2, 1), False),
    "one product, two results": (lambda p, a, b: (p - a @ b, p + a @ b), None),
}


def _read_later(r, b):
    return r, np.tanh(r).sum(), r @ b.transpose(0, 2, 1)


@pytest.mark.parametrize("form", list(PRODUCT_INTO_OUTPUT_CASES))
def test_products_written_into_output_buffers_match_numpy(form):
    fn, into_output = PRODUCT_INTO_OUTPUT_CASES[form]
    rng = np.random.default_rng(18)
    p, a, b = rng.standard_normal((3, 4, 6)), rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 5, 6))
    got, want = tj.jit(fn)(p, a, b), fn(p, a, b)
    for g, w in zip(got if isinstance(want, tuple) else [got], want if isinstance(want, tuple) else [want]):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    kg = tj.jit(fn).lower(p, a, b).compile().kernel_graph
    written_into_outputs = any(kg.views[m.nodes[0].out].root in kg.outputs for k in kg.kernels for m in k.matmuls)
    if into_output is not None:
        assert written_into_outputs == into_output


NOT_UPDATE_FORMS = {
    "p * mm": lambda p, mm, s: p * mm,
    "mm - p": lambda p, mm, s: mm - p,
    "p - s * mm * 2": lambda p, mm, s: p - s * mm * 2.0,
    "p[:, :1] - mm": lambda p, mm, s: p[:, :1] - mm,
    "p - mm * mm": lambda p, mm, s: p - mm * mm,
    "p - p * mm": lambda p, mm, s: p - p * mm,
    "mm - s * mm": lambda p, mm, s: mm - s * mm,
    "exp(mm)": lambda p, mm, s: np.exp(mm),
    "mm is an output": lambda p, mm, s: (p - mm, mm),
}


@pytest.mark.parametrize("form", list(NOT_UPDATE_FORMS))
def test_non_update_epilogues_keep_their_loop_and_match_numpy(form):
    rng = np.random.default_rng(11)
    p, a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    s = F64(0.7)

    def update(p, a, b, s):
        return NOT_UPDATE_FORMS[form](p, a @ b, s)

    fn = tj.jit(update)
    got, want = fn(p, a, b, s), update(p, a, b, s)
    for g, w in zip(got if isinstance(want, tuple) else [got], want if isinstance(want, tuple) else [want]):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-14)


def product_read_twice(a, b, c):
    mm = a @ b
    return np.tanh(mm) @ c, mm.sum(axis=0)


def test_no_in_place_when_the_product_is_read_by_another_kernel():
    rng = np.random.default_rng(12)
    a, b, c = rng.standard_normal((6, 5)), rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    kg = tj.jit(product_read_twice).lower(a, b, c).compile().kernel_graph
    (mm,) = [n.out for n in kg.graph.nodes if n.prim.name == "matmul" and n.out.shape == (6, 7)]
    assert not any(d is mm and s is not mm for k in kg.kernels for d, s in k.stores)
    for got, want in zip(tj.jit(product_read_twice)(a, b, c), product_read_twice(a, b, c)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def softmax_of_product(a, b):
    z = a @ b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_no_in_place_over_a_product_read_again_by_a_later_pass():
    rng = np.random.default_rng(13)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 9))
    kg = tj.jit(softmax_of_product).lower(a, b).compile().kernel_graph
    assert not any(d is not s for k in kg.kernels for d, s in k.stores)
    (got,) = [tj.jit(softmax_of_product)(a, b)]
    np.testing.assert_allclose(got, softmax_of_product(a, b), rtol=1e-13)


def tanh_layer_grad(w, x):
    return tj.grad(lambda w: (np.tanh(x @ w) ** 2).sum())(w)


def test_sunk_tanh_derivative_matches_finite_differences():
    rng = np.random.default_rng(14)
    w, x = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))
    got = tj.jit(tanh_layer_grad)(w, x)
    np.testing.assert_allclose(got, numerical_grad(lambda z: (np.tanh(x @ z) ** 2).sum(), w), rtol=1e-6, atol=1e-8)


def update_and_read_again(p, a, b):
    mm = a @ b
    return p - 0.1 * mm, mm[[0, 2], [1, 1]]


def test_update_and_a_later_read_of_the_product_match_numpy():
    rng = np.random.default_rng(15)
    p, a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    fn = tj.jit(update_and_read_again)
    for got, want in zip(fn(p, a, b), update_and_read_again(p, a, b)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def tiny_update(a, b):
    return 2.0 - 0.5 * (a @ b)


def test_update_of_a_one_by_one_product_with_a_literal_base():
    a, b = np.array([[1.5, -2.0]]), np.array([[0.25], [4.0]])
    np.testing.assert_allclose(tj.jit(tiny_update)(a, b), tiny_update(a, b), rtol=1e-15)


def test_gather_from_a_one_element_constant():
    from tracejit.ir.builder import GraphBuilder
    from tracejit.runtime.executable import build_executable

    b = GraphBuilder()
    idx = b.new_input((3,), np.int64, "idx")
    graph = b.build([b.emit("gather", b.constant(np.array([2.5])), idx)])
    exe = build_executable(graph)
    good = np.array([0, -1, 0])
    (got,) = exe(good)
    np.testing.assert_array_equal(got, evaluate(graph, [good])[0])
    with pytest.raises(IndexError, match="out of bounds"):
        exe(np.array([0, 1, 0]))


def scaled_pick(x, cols):
    """x[arange, cols] of 0.5 * x - 1.25 over a one-column x: the constants need no gather."""
    return (0.5 * x - 1.25)[np.arange(x.shape[0]), cols]


def test_gather_pushed_past_scalar_constants_of_a_one_column_result():
    x = np.array([[1.0], [-2.0], [3.0]])
    cols = np.array([0, -1, 0])
    graph = optimized(scaled_pick, x, cols)
    assert all(n.inputs[0].size > 1 for n in graph.nodes if n.prim.name == "gather")
    np.testing.assert_allclose(tj.jit(scaled_pick)(x, cols), scaled_pick(x, cols))
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(scaled_pick)(x, np.array([0, 1, 0]))
