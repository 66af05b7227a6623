"""The MLP of train_mlp.py trained with Adam: optimizer state in a namedtuple, hyperparameters as
keyword arguments, the whole step (forward, backward, Adam update) one compiled function.

    python examples/train_mlp_adam.py
    python examples/train_mlp_adam.py --epochs 5 --lr 0.003

As in JAX, a namedtuple is a pytree node: `AdamState(step, m, v)` goes in and comes back as an
AdamState; `m` and `v` are dicts of arrays shaped like the parameters. The learning rate is a
keyword argument (a Python float, so changing it does not recompile), and b1, b2, eps are left at
their defaults, which the trace takes as constants.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import namedtuple

import numpy as np

import tracejit as tj
from train_mlp import F32, accuracy, batches, init_params, load_data, median_step_time, numpy_loss_and_grads, \
    settle_allocator

AdamState = namedtuple("AdamState", "step m v")


def adam_init(params) -> AdamState:
    zeros = {k: np.zeros_like(p) for k, p in params.items()}
    return AdamState(np.zeros((), F32), zeros, dict(zeros))


def loss_fn(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(x.shape[0]), y].mean()


def adam_update(params, grads, state, lr, b1, b2, eps):
    """One Adam step (Kingma & Ba, with bias correction); plain numpy, so it runs traced or not."""
    step = state.step + 1
    m = {k: b1 * state.m[k] + (1 - b1) * grads[k] for k in params}
    v = {k: b2 * state.v[k] + (1 - b2) * grads[k] * grads[k] for k in params}
    m_scale, v_scale = 1 / (1 - b1 ** step), 1 / (1 - b2 ** step)
    new = {k: params[k] - lr * (m[k] * m_scale) / (np.sqrt(v[k] * v_scale) + eps) for k in params}
    return new, AdamState(step, m, v)


@tj.jit
def adam_step(params, state, x, y, *, lr, b1=0.9, b2=0.999, eps=1e-8):
    loss, grads = tj.value_and_grad(loss_fn)(params, x, y)
    params, state = adam_update(params, grads, state, lr, b1, b2, eps)
    return params, state, loss


def numpy_adam_step(params, state, x, y, *, lr, b1=0.9, b2=0.999, eps=1e-8):
    """The same step in numpy, with train_mlp.py's hand-written backward."""
    loss, grads = numpy_loss_and_grads(params, x, y)
    params, state = adam_update(params, grads, state, lr, b1, b2, eps)
    return params, state, loss


def train(step, params, x, y, *, epochs: int, batch: int, lr: float, seed: int, log=None):
    rng = np.random.default_rng(seed)
    state, losses = adam_init(params), []
    for epoch in range(epochs):
        for idx in batches(len(x), batch, rng):
            params, state, loss = step(params, state, x[idx], y[idx], lr=lr)
            losses.append(float(loss))
        if log:
            log(epoch, params, losses)
    return params, state, losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=300, help="timed steps per implementation")
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test, name = load_data(args.seed)
    sizes = (x_train.shape[1], args.hidden, int(y_train.max()) + 1)
    print(f"data: {name}; {len(x_train)} train / {len(x_test)} test samples")
    print(f"model: {sizes[0]}-{sizes[1]}-{sizes[2]} tanh MLP, Adam lr={args.lr}, batch {args.batch}")

    def log(epoch, params, losses):
        if epoch == args.epochs - 1 or (epoch + 1) % max(1, args.epochs // 5) == 0:
            print(f"  epoch {epoch + 1:3d}  loss {np.mean(losses[-10:]):.4f}  "
                  f"test accuracy {accuracy(params, x_test, y_test):.2%}")

    start = time.perf_counter()
    params, state, _ = train(adam_step, init_params(sizes, args.seed), x_train, y_train, epochs=args.epochs,
                             batch=args.batch, lr=args.lr, seed=args.seed, log=log)
    print(f"trained in {time.perf_counter() - start:.2f} s (first step includes tracing and compiling)")
    print(f"test accuracy: {accuracy(params, x_test, y_test):.2%}")

    settle_allocator()
    x, y = x_train[:args.batch], y_train[:args.batch]

    def timed(step):
        return median_step_time(lambda p, x, y, lr: step(p, state, x, y, lr=lr), params, x, y, args.lr, args.repeats)

    t_tj, t_np = timed(adam_step), timed(numpy_adam_step)
    print(f"\ntime per Adam step (batch {args.batch}, median of {args.repeats} steps, same process)")
    print(f"  numpy, hand-written backward       {t_np * 1e6:9.1f} us")
    print(f"  tracejit, @tj.jit + value_and_grad {t_tj * 1e6:9.1f} us")
    print(f"  speed-up: {t_np / t_tj:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
