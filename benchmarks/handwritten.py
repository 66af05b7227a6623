"""numpy at its best for the gradient workloads: forward plus a hand-written backward.

This is what a careful numpy programmer writes when there is no autodiff: the forward pass
keeps the intermediates the backward needs, and the backward reuses buffers in place
(`out=`, `-=`) instead of allocating a temporary per expression. The benchmark compares
tracejit against these, so they must be both correct (tests/test_benchmarks.py checks them
against finite differences) and not handicapped.

Everything follows the input dtype: float32 in, float32 out (float64 in the tests).
"""
from __future__ import annotations

import numpy as np


# ---- W3: softmax cross-entropy, value and gradient w.r.t. the logits ----------------------
def xent_value_and_grad(logits, labels):
    """(mean cross-entropy loss, d loss / d logits) of w3_xent, with one exp pass over the data."""
    n = logits.shape[0]
    rows = np.arange(n)
    z = logits - logits.max(axis=1, keepdims=True)
    picked = z[rows, labels]  # taken before z is overwritten by exp
    e = np.exp(z, out=z)
    s = e.sum(axis=1, keepdims=True)
    loss = -(picked - np.log(s[:, 0])).mean()
    grad = e
    grad /= s  # softmax, in place
    grad[rows, labels] -= 1
    grad *= logits.dtype.type(1.0 / n)
    return loss, grad


# ---- W4: one SGD step of the tanh MLP ------------------------------------------------------
def _dense_tanh(h, w, b):
    a = h @ w
    a += b
    return np.tanh(a, out=a)


def _tanh_backward(d_out, h):
    """d_out * (1 - h**2) where h = tanh(a); overwrites d_out."""
    t = np.multiply(h, h)
    np.subtract(1, t, out=t)
    d_out *= t
    return d_out


def mlp_value_and_grad(params, x, y):
    """(loss, grads) of w4_loss: the 784-512-512-10 tanh MLP with cross-entropy on top."""
    h1 = _dense_tanh(x, params["W1"], params["b1"])
    h2 = _dense_tanh(h1, params["W2"], params["b2"])
    logits = h2 @ params["W3"]
    logits += params["b3"]
    loss, d3 = xent_value_and_grad(logits, y)
    d2 = _tanh_backward(d3 @ params["W3"].T, h2)
    d1 = _tanh_backward(d2 @ params["W2"].T, h1)
    grads = {
        "W3": h2.T @ d3, "b3": d3.sum(axis=0),
        "W2": h1.T @ d2, "b2": d2.sum(axis=0),
        "W1": x.T @ d1, "b1": d1.sum(axis=0),
    }
    return loss, grads


def mlp_matmuls(x, w1, w2, w3, h1, h2, d3, d2, d1):
    """The eight matmuls of `sgd_step`, and nothing else."""
    return (x @ w1, h1 @ w2, h2 @ w3, d3 @ w3.T, h2.T @ d3, d2 @ w2.T, h1.T @ d2, x.T @ d1)


def matmul_bound(matmuls=mlp_matmuls):
    """W4's bound, as a function of the step's own arguments: `matmuls` (mlp_matmuls, or it
    compiled, so that the gemms are called from C without numpy's per-call work) on operands of
    the right shapes made beforehand. A step that makes the same gemm calls takes at least this
    long, so numpy's step time over this one is the most such a step can gain over numpy."""
    def bound(params, x, y, lr):
        h1, h2, d3, d2, d1 = _matmul_operands(params, x)
        return matmuls(x, params["W1"], params["W2"], params["W3"], h1, h2, d3, d2, d1)
    return bound


_OPERANDS: dict = {}


def _matmul_operands(params, x):
    key = (id(params["W1"]), id(x))
    if key not in _OPERANDS:
        h1 = _dense_tanh(x, params["W1"], params["b1"])
        h2 = _dense_tanh(h1, params["W2"], params["b2"])
        d3 = np.full((x.shape[0], params["W3"].shape[1]), 0.01, x.dtype)
        _OPERANDS.clear()
        _OPERANDS[key] = (h1, h2, d3, h2 * 0.01, h1 * 0.01)
    return _OPERANDS[key]


def sgd_step(params, x, y, lr):
    """(new params, loss): params - lr * grads, written into the gradient buffers (no temporaries)."""
    loss, grads = mlp_value_and_grad(params, x, y)
    new = {}
    for name, p in params.items():
        g = grads[name]
        g *= -lr
        g += p
        new[name] = g
    return new, loss
