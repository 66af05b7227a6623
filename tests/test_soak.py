"""Soak: 100,000 calls of a jitted training step (value_and_grad of a tiny MLP plus the SGD update,
fed its own updated parameters and a rotating set of batches) must not grow the process's memory
(VmRSS) or its open file descriptors. About 3 s on this machine (~30 us per call).

Memory is read after a warm-up of 2,000 calls (allocator pools, numpy caches and the compiled
library are in place by then) and at the end; a leak of one small array per call would add
several megabytes, far beyond the slack allowed.
"""
from __future__ import annotations


import numpy as np

import tracejit as tj
from probes import open_fds, rss_kb

CALLS = 100_000
WARMUP = 2_000
RSS_SLACK_KB = 2_048  # allocator noise; 100k leaked 64-byte objects alone would be ~6 MB


def loss_fn(p, x, y):
    h = np.tanh(x @ p["W1"] + p["b1"])
    logits = h @ p["W2"] + p["b2"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(x.shape[0]), y].mean()


@tj.jit
def train_step(p, x, y, lr):
    loss, grads = tj.value_and_grad(loss_fn)(p, x, y)
    return {k: p[k] - lr * grads[k] for k in p}, loss


def test_100k_training_steps_do_not_grow_memory_or_open_files():
    r = np.random.default_rng(0)
    p = {"W1": (r.standard_normal((8, 16)) * 0.3).astype(np.float32), "b1": np.zeros(16, np.float32),
         "W2": (r.standard_normal((16, 4)) * 0.3).astype(np.float32), "b2": np.zeros(4, np.float32)}
    xs = r.standard_normal((64, 8, 8)).astype(np.float32)
    ys = r.integers(0, 4, (64, 8))
    first_loss = float(loss_fn(p, xs[0], ys[0]))
    for i in range(WARMUP):
        p, loss = train_step(p, xs[i % 64], ys[i % 64], 0.05)
    rss_before, fds_before = rss_kb(), open_fds()
    for i in range(CALLS):
        p, loss = train_step(p, xs[i % 64], ys[i % 64], 0.05)
    rss_after, fds_after = rss_kb(), open_fds()
    assert fds_after == fds_before
    assert rss_after - rss_before <= RSS_SLACK_KB, (rss_before, rss_after)
    # it really trained: finite float32 parameters, a lower loss than at the start, and the loss
    # the step reports is numpy's for the parameters it was given
    assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in p.values())
    assert np.mean([loss_fn(p, xs[i], ys[i]) for i in range(64)]) < first_loss
    _, loss = train_step(p, xs[5], ys[5], 0.05)
    np.testing.assert_allclose(loss, loss_fn(p, xs[5], ys[5]), rtol=1e-5)
