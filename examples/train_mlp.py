"""Train a small MLP with a @tj.jit training step, and time it against hand-written numpy.

The training step is plain numpy code. tracejit traces it, derives the backward pass from the
traced graph (IR to IR: no tape), and compiles forward + backward + SGD update into one function.
The comparison is the same model in plain numpy with a hand-written backward, run in the same
process on the same batch.

    python examples/train_mlp.py                 # scikit-learn's digits if installed
    python examples/train_mlp.py --epochs 5 --seed 1

Data: scikit-learn's `load_digits` (8x8 images of handwritten digits, 10 classes; install with
`pip install tracejit[examples]`), else a small synthetic 10-class problem.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import tracejit as tj

F32 = np.float32


# ---- data and parameters ------------------------------------------------------------------------
def load_data(seed: int):
    """(x_train, y_train, x_test, y_test, description); features float32 in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        (x, y), name = _synthetic(seed), "synthetic 10-class blobs (scikit-learn is not installed)"
    else:
        digits = load_digits()
        x, y, name = digits.data / 16.0, digits.target, "scikit-learn digits (8x8 images, 10 classes)"
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(F32), y[order].astype(np.int64)
    n_test = len(x) // 5
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test], name


def _synthetic(seed: int, n: int = 2000, features: int = 64, classes: int = 10):
    rng = np.random.default_rng(seed + 1)
    centers = rng.uniform(0, 1, (classes, features))
    y = rng.integers(0, classes, n)
    return np.clip(centers[y] + 0.45 * rng.standard_normal((n, features)), 0, 1), y


def init_params(sizes, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    (n_in, n_hidden, n_out) = sizes
    return {
        "W1": (rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in)).astype(F32),
        "b1": np.zeros(n_hidden, F32),
        "W2": (rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden)).astype(F32),
        "b2": np.zeros(n_out, F32),
    }


# ---- the model: tracejit (as in API.md) ----------------------------------------------------------
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


# ---- the same model in numpy with a hand-written backward ---------------------------------------
def numpy_train_step(params, x, y, lr):
    loss, grads = numpy_loss_and_grads(params, x, y)
    return {k: params[k] - lr * grads[k] for k in params}, loss


def numpy_loss_and_grads(params, x, y):
    n = x.shape[0]
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = -(shifted[rows, y] - np.log(total[:, 0])).mean()
    d_logits = e / total  # softmax
    d_logits[rows, y] -= 1
    d_logits /= n
    d_h = (d_logits @ params["W2"].T) * (1 - h * h)
    return loss, {"W2": h.T @ d_logits, "b2": d_logits.sum(axis=0), "W1": x.T @ d_h, "b1": d_h.sum(axis=0)}


def accuracy(params, x, y) -> float:
    logits = np.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    return float(np.mean(logits.argmax(axis=1) == y))


# ---- training and timing -------------------------------------------------------------------------
def batches(n: int, batch: int, rng):
    """Shuffled full batches (a ragged last batch would be a second compiled signature)."""
    order = rng.permutation(n)
    for start in range(0, n - batch + 1, batch):
        yield order[start:start + batch]


def train(step, params, x, y, *, epochs: int, batch: int, lr, seed: int, log=None):
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        for idx in batches(len(x), batch, rng):
            params, loss = step(params, x[idx], y[idx], lr)
            losses.append(float(loss))
        if log:
            log(epoch, params, losses)
    return params, losses


def settle_allocator() -> None:
    """Allocate and free a 30 MB block: glibc then serves numpy's temporaries from its heap instead
    of fresh mmap pages that page-fault on every step (which would make numpy look slower)."""
    block = np.ones(30 * 2**20, np.uint8)
    del block


def median_step_time(step, params, x, y, lr, repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):  # warm-up (and the compile, for tracejit)
        step(params, x, y, lr)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(params, x, y, lr)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=300, help="timed steps per implementation")
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test, name = load_data(args.seed)
    sizes = (x_train.shape[1], args.hidden, int(y_train.max()) + 1)
    print(f"data: {name}; {len(x_train)} train / {len(x_test)} test samples")
    print(f"model: {sizes[0]}-{sizes[1]}-{sizes[2]} tanh MLP, softmax cross-entropy, SGD lr={args.lr}, "
          f"batch {args.batch}")

    def log(epoch, params, losses):
        if epoch == args.epochs - 1 or (epoch + 1) % max(1, args.epochs // 5) == 0:
            print(f"  epoch {epoch + 1:3d}  loss {np.mean(losses[-10:]):.4f}  "
                  f"test accuracy {accuracy(params, x_test, y_test):.2%}")

    start = time.perf_counter()
    params, _ = train(train_step, init_params(sizes, args.seed), x_train, y_train, epochs=args.epochs,
                      batch=args.batch, lr=args.lr, seed=args.seed, log=log)
    print(f"trained in {time.perf_counter() - start:.2f} s (first step includes tracing and compiling)")
    print(f"test accuracy: {accuracy(params, x_test, y_test):.2%}")

    settle_allocator()
    x, y = x_train[:args.batch], y_train[:args.batch]
    t_tj = median_step_time(train_step, params, x, y, args.lr, args.repeats)
    t_np = median_step_time(numpy_train_step, params, x, y, args.lr, args.repeats)
    print(f"\ntime per training step (batch {args.batch}, median of {args.repeats} steps, same process)")
    print(f"  numpy, hand-written backward       {t_np * 1e6:9.1f} us")
    print(f"  tracejit, @tj.jit + value_and_grad {t_tj * 1e6:9.1f} us")
    ratio = t_np / t_tj
    print(f"  speed-up: {ratio:.2f}x" if ratio >= 1 else f"  speed-up: {ratio:.2f}x (tracejit is slower here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
