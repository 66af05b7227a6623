"""The backward sweep treats a max/min reduction as a constant only when the differentiated outputs
provably do not depend on it (autodiff/invariance.py): the stable softmax family is cut, anything
that does feel the maximum keeps its tie-mask VJP, and every gradient matches central differences.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
from tracejit.autodiff.invariance import invariant_reductions
from tracejit.autodiff.vjp import vjp_graph
from tracejit.trace import trace

from test_grad import check_vjp, numerical_vjp


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1)[:, None])
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(x):
    m = x.max(axis=1)
    return m + np.log(np.sum(np.exp(x - m[:, None]), axis=1))


def xent(logits, labels):  # the benchmark's W3
    logp = log_softmax(logits)
    return -logp[np.arange(logits.shape[0]), labels].mean()


def softmin_weighted(x):
    m = x.min(axis=0, keepdims=True)
    e = np.exp(-(x - m))
    return e / np.sum(e, axis=0, keepdims=True)


def two_levels(x):
    """A softmax of a log-softmax: both maxima cut, the second depends on the first."""
    return softmax(log_softmax(x) * 3.0)


INVARIANT = {
    "log_softmax": log_softmax,
    "softmax": softmax,
    "logsumexp": logsumexp,
    "softmin over axis 0": softmin_weighted,
    "softmax of log_softmax": two_levels,
    "logsumexp of a transpose": lambda x: logsumexp(x.T.copy()),
    "column maxima moved to rows": lambda x: log_softmax(x - x.max(axis=0, keepdims=True).T),  # a row shift too
}

# Each feels a maximum: cutting it would be wrong, and the finite differences would show it. (A
# function may also hold a softmax whose own maximum is cut: each call to x.max is its own node.)
SENSITIVE = {
    "shift kept": lambda x: (x - x.max(axis=1, keepdims=True)) ** 2,
    "exp not normalized": lambda x: np.exp(x - x.max(axis=1, keepdims=True)),
    "log-sum-exp without m": lambda x: np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)),
    "normalized along the other axis": lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(
        x - x.max(axis=1, keepdims=True)).sum(axis=0, keepdims=True),
    "column maxima subtracted along rows": lambda x: log_softmax(x - x.max(axis=0, keepdims=True)),
    "twice the log term": lambda x: x - x.max(axis=1, keepdims=True) - 2 * np.log(
        np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)),
    "log-softmax plus the maximum": lambda x: log_softmax(x).sum(axis=1) + x.max(axis=1),
    "softmax squared denominator": lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(
        x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True) ** 2,
}


def _reductions(fun, x):
    """(names of the max/min reductions, names of those cut)."""
    graph = trace(fun, (x,)).graph
    found = {n.out.name for n in graph.nodes if n.prim.name in ("max", "min")}
    return found, {v.name for v in invariant_reductions(graph, graph.outputs)}


def _backward_prims(fun, x):
    graph = trace(fun, (x,)).graph
    joint = vjp_graph(graph, [0])
    return [n.prim.name for n in joint.nodes[len(graph.nodes):]]


@pytest.mark.parametrize("name", INVARIANT)
def test_invariant_reductions_are_cut(name):
    fun = INVARIANT[name]
    x = np.random.default_rng(0).standard_normal((4, 4))
    found, cut = _reductions(fun, x)
    assert found and cut == found
    assert "equal" not in _backward_prims(fun, x)  # no tie mask in the backward graph


@pytest.mark.parametrize("name", SENSITIVE)
def test_reductions_the_output_feels_are_kept(name):
    fun = SENSITIVE[name]
    x = np.random.default_rng(0).standard_normal((4, 4))
    found, cut = _reductions(fun, x)
    assert found and cut < found  # the maximum the output feels stays
    assert "equal" in _backward_prims(fun, x)


@pytest.mark.parametrize("name", [*INVARIANT, *SENSITIVE])
def test_gradients_match_finite_differences(name):
    fun = {**INVARIANT, **SENSITIVE}[name]
    x = np.random.default_rng(1).permutation(16).reshape(4, 4) * 0.3 + 0.01  # no ties within eps
    check_vjp(fun, [x], (0,), dtype=np.float64, rtol=1e-6, atol=1e-8, eps=1e-6)


def test_tied_maxima_give_the_softmax_gradient():
    """log-softmax is smooth where the maximum is tied: each tied entry gets its own softmax term."""
    x = np.array([[2.0, 2.0, 1.0, 2.0], [0.5, -1.0, 0.5, 0.0]])
    ct = np.random.default_rng(2).standard_normal(x.shape)
    _, vjp_fn = tj.vjp(log_softmax, x)
    (g,) = vjp_fn(ct)
    p = np.exp(log_softmax(x))
    np.testing.assert_allclose(g, ct - p * ct.sum(axis=1, keepdims=True), rtol=1e-14, atol=1e-15)
    check_vjp(log_softmax, [x], (0,), dtype=np.float64, rtol=1e-6, atol=1e-8, eps=1e-6)


def test_only_the_seeded_outputs_count():
    """vjp seeds every output; with m among them nothing is cut, seeded alone it is."""
    def both(x):
        m = x.max(axis=1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True)), m
    x = np.random.default_rng(3).standard_normal((3, 5))
    graph = trace(both, (x,)).graph
    assert invariant_reductions(graph, graph.outputs) == set()
    assert len(invariant_reductions(graph, graph.outputs[:1])) == 1
    rng = np.random.default_rng(4)
    cts = [rng.standard_normal(v.shape) for v in both(x)]
    _, vjp_fn = tj.vjp(both, x)
    (g,) = vjp_fn(tuple(cts))
    (want,) = numerical_vjp(lambda x: np.concatenate([v.ravel() for v in both(x)]), [x], (0,),
                            np.concatenate([c.ravel() for c in cts]), 1e-6)
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-8)


def test_jitted_cross_entropy_gradient_is_the_textbook_one():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((64, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 64)
    loss, g = tj.jit(tj.value_and_grad(xent))(logits, labels)
    p = np.exp(log_softmax(logits.astype(np.float64)))
    p[np.arange(64), labels] -= 1
    np.testing.assert_allclose(loss, xent(logits, labels), rtol=1e-6)
    np.testing.assert_allclose(g, p / 64, rtol=1e-5, atol=1e-8)
    check_vjp(xent, [logits.astype(np.float64)[:6, :7] % 1 + np.arange(7) * 0.1, labels[:6] % 7], (0,),
              dtype=np.float64, rtol=1e-6, atol=1e-8, eps=1e-6)


def test_the_printed_ir_says_which_reduction_was_held_constant():
    """Who reads the gradient's IR learns why the maximum has no VJP there, also when the grad is
    inlined into a jitted function; a function that feels its maximum gets no such line."""
    x = np.random.default_rng(5).standard_normal((4, 5)).astype(np.float32)
    labels = np.arange(4)
    for text in (str(tj.make_ir(tj.grad(xent))(x, labels)), tj.jit(tj.value_and_grad(xent)).lower(x, labels).ir):
        (note,) = [line for line in text.splitlines() if "held constant" in line]
        assert note.strip().startswith("# backward: max over axes (1,) at test_invariance.py:")
    sensitive = SENSITIVE["shift kept"]
    assert "held constant" not in str(tj.make_ir(tj.grad(lambda x: sensitive(x).sum()))(x))
