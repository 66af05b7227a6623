"""Optional peer columns: numexpr, numba, jax.jit, torch (eager) and torch.compile.

Each peer joins only when its package is installed (none is a dependency of tracejit).
Every peer computes the same workload as numpy, spelled in its own API and in float32, with
no library-specific fused shortcut (no torch.softmax, no jax.nn.log_softmax): the point is
how well each system runs the code as written. jax runs the very functions of workloads.py,
re-bound to jax.numpy, so its code cannot drift from the reference.

`builders(key)` maps a peer name to a builder `(workloads_module, numpy_args) -> PeerImpl`;
the runner calls it inside try/except, verifies the result against numpy and times `fn`.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PEER_MODULES = {"numexpr": "numexpr", "numba": "numba", "jax.jit": "jax", "torch": "torch",
                "torch.compile": "torch"}
SLOW_PEERS = ("torch.compile",)  # seconds of compile per workload: left out of --quick runs

_threads = 2


@dataclass
class PeerImpl:
    fn: Callable  # fn(*args) -> result, returning only when the result is ready
    args: tuple  # the inputs converted once, outside the timing (device arrays, tensors)
    to_numpy: Callable[[Any], Any] = None  # result -> numpy pytree for verification

    def __post_init__(self):
        if self.to_numpy is None:
            self.to_numpy = to_numpy


def to_numpy(tree):
    """Map a result pytree of tensors / jax arrays / numbers to numpy arrays."""
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_numpy(v) for v in tree)
    if hasattr(tree, "detach"):  # torch.Tensor
        return tree.detach().cpu().numpy()
    return np.asarray(tree)


def configure(threads: int) -> None:
    """Thread count for the peers that take one; set before any of them is imported."""
    global _threads
    _threads = threads
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))


def preload(names) -> None:
    """Import the peers' packages up front, torch first.

    Importing torch after numba's OpenMP threading layer has started made every torch call
    ~80x slower (7.8 ms instead of 0.1 ms for W1 at n=20k); importing it first avoids that.
    Importing everything before any timing also keeps import costs out of the rows.
    """
    loaders = {"torch": _torch, "torch.compile": _torch, "jax.jit": jax_module, "numexpr": _numexpr,
               "numba": _numba_kernels}
    for name in sorted(names, key=lambda n: not n.startswith("torch")):
        try:
            loaders[name]()
        except Exception:  # a broken peer is reported in its cells when it is built
            pass


def installed(include_slow: bool = True) -> list[str]:
    """Peer names whose package is importable (checked without importing it)."""
    names = [n for n, mod in PEER_MODULES.items() if importlib.util.find_spec(mod) is not None]
    return [n for n in names if include_slow or n not in SLOW_PEERS]


def versions() -> dict[str, str]:
    out = {}
    for mod in sorted(set(PEER_MODULES.values())):
        try:
            out[mod] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def builders(key: str, names) -> dict[str, Callable]:
    """{peer name: builder} for workload `key` ("W1", "W2a", ...) among the peers `names`."""
    return {name: BUILDERS[name][key] for name in names if key in BUILDERS.get(name, {})}


# ---- numexpr --------------------------------------------------------------------------------
@functools.cache
def _numexpr():
    import numexpr

    numexpr.set_num_threads(_threads)
    return numexpr


def _numexpr_w1(wl, args):
    ne = _numexpr()
    half = np.float32(0.5)  # a float literal would make numexpr compute in float64
    expr = "tanh(a*b+c)*half + exp(-a*a)"
    return PeerImpl(lambda a, b, c: ne.evaluate(expr, local_dict={"a": a, "b": b, "c": c, "half": half}), args)


def _numexpr_w2a(wl, args):
    ne = _numexpr()
    return PeerImpl(lambda a, b: ne.evaluate("sum((a-b)**2)", local_dict={"a": a, "b": b}), args)


# ---- numba ----------------------------------------------------------------------------------
@functools.cache
def _numba_kernels():
    import numba

    @numba.njit(parallel=True)
    def w1(a, b, c):
        out = np.empty_like(a)
        half = np.float32(0.5)
        for i in numba.prange(a.size):
            out[i] = np.tanh(a[i] * b[i] + c[i]) * half + np.exp(-a[i] * a[i])
        return out

    @numba.njit(parallel=True)
    def w2a(a, b):
        acc = 0.0  # float64: a float32 accumulator is off by ~1e-2 over 10M terms
        for i in numba.prange(a.size):
            d = a[i] - b[i]
            acc += d * d
        return np.float32(acc)

    @numba.njit
    def w5(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = x[i] * np.float32(2) + np.float32(1)
        return out

    return {"W1": w1, "W2a": w2a, "W5": w5}


def _numba(key):
    return lambda wl, args: PeerImpl(_numba_kernels()[key], args)


# ---- jax ------------------------------------------------------------------------------------
@functools.cache
def jax_module():
    import jax

    return jax


@functools.cache
def jax_workloads(wl):
    """The workload functions with their global `np` bound to jax.numpy (and calling each other)."""
    import jax.numpy as jnp

    env = dict(vars(wl), np=jnp)
    for name, obj in vars(wl).items():
        if isinstance(obj, types.FunctionType) and obj.__module__ == wl.__name__:
            env[name] = types.FunctionType(obj.__code__, env, name, obj.__defaults__, obj.__closure__)
    return types.SimpleNamespace(**env)


def jax_w4_step(jax, jwl):
    """W4's SGD step in jax: value_and_grad of w4_loss plus the update, one jax.jit."""
    def step(params, x, y, lr):
        loss, grads = jax.value_and_grad(jwl.w4_loss)(params, x, y)
        return {k: params[k] - lr * grads[k] for k in params}, loss
    return jax.jit(step)


def _jax_impl(make_fn):
    def build(wl, args):
        jax = jax_module()
        jitted = make_fn(jax, jax_workloads(wl))
        device_args = jax.device_put(args)
        return PeerImpl(lambda *a: jax.block_until_ready(jitted(*a)), tuple(device_args))
    return build


JAX_FUNCTIONS = {
    "W1": lambda jax, j: jax.jit(j.w1_elementwise),
    "W2a": lambda jax, j: jax.jit(j.w2_sum_sq_diff),
    "W2b": lambda jax, j: jax.jit(j.w2_softmax),
    "W3": lambda jax, j: jax.jit(jax.value_and_grad(j.w3_xent)),
    "W4": jax_w4_step,
    "W5": lambda jax, j: jax.jit(j.w5_tiny),
}


# ---- torch ----------------------------------------------------------------------------------
@functools.cache
def _torch():
    import torch

    torch.set_num_threads(_threads)
    return torch


def _torch_xent(torch, logits, labels):
    m = logits.amax(dim=1, keepdim=True)
    logp = logits - m - torch.log(torch.exp(logits - m).sum(dim=1, keepdim=True))
    return -logp[torch.arange(logits.shape[0]), labels].mean()


def _torch_functions(torch):
    def w1(a, b, c):
        return torch.tanh(a * b + c) * 0.5 + torch.exp(-a * a)

    def w2a(a, b):
        return ((a - b) ** 2).sum()

    def w2b(x):
        e = torch.exp(x - x.amax(dim=1, keepdim=True))
        return e / e.sum(dim=1, keepdim=True)

    def w3(logits, labels):
        leaf = logits.detach().requires_grad_()
        loss = _torch_xent(torch, leaf, labels)
        loss.backward()
        return loss.detach(), leaf.grad

    def w4(params, x, y, lr):
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        h = x
        for i in (1, 2):
            h = torch.tanh(h @ leaves[f"W{i}"] + leaves[f"b{i}"])
        loss = _torch_xent(torch, h @ leaves["W3"] + leaves["b3"], y)
        loss.backward()
        with torch.no_grad():
            return {k: p - lr * p.grad for k, p in leaves.items()}, loss.detach()

    def w5(x):
        return x * 2 + 1

    return {"W1": w1, "W2a": w2a, "W2b": w2b, "W3": w3, "W4": w4, "W5": w5}


def _to_torch(torch, tree):
    if isinstance(tree, dict):
        return {k: _to_torch(torch, v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(tree)
    return float(tree) if isinstance(tree, np.floating) else tree


def _torch_impl(key, compiled=False):
    def build(wl, args):
        torch = _torch()
        fn = _torch_functions(torch)[key]
        if compiled:
            fn = torch.compile(fn)
        return PeerImpl(fn, tuple(_to_torch(torch, a) for a in args))
    return build


BUILDERS = {
    "numexpr": {"W1": _numexpr_w1, "W2a": _numexpr_w2a},
    "numba": {k: _numba(k) for k in ("W1", "W2a", "W5")},
    "jax.jit": {k: _jax_impl(f) for k, f in JAX_FUNCTIONS.items()},
    "torch": {k: _torch_impl(k) for k in ("W1", "W2a", "W2b", "W3", "W4", "W5")},
    "torch.compile": {k: _torch_impl(k, compiled=True) for k in ("W1", "W2a", "W2b")},
}
