"""The benchmark cases: the shared workloads at the reference (or --quick) sizes, per contender.

The workloads are imported from the shared file, never copied; this module only says at which
sizes each one runs, what numpy runs for it (the workload itself, or handwritten.py where a
gradient is needed), what tracejit runs, and how closely the results must agree.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import handwritten

DEFAULT_WORKLOADS = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "workloads.py"
KEYS = ("W1", "W2a", "W2b", "W3", "W4", "W5", "W6")


class WorkloadsNotFound(Exception):
    """The shared workloads file is not where it was looked for; the message says how to point at it."""


def load_workloads(path=None):
    """Import the shared workloads file (never a copy of it)."""
    path = Path(path) if path else DEFAULT_WORKLOADS
    if not path.is_file():
        raise WorkloadsNotFound(
            f"benchmarks: workloads file not found at {path}. It lives in the shared folder next to "
            f"the repository (../shared/bench/workloads.py from the repository root); pass its "
            f"location with --workloads PATH.")
    spec = importlib.util.spec_from_file_location("tracejit_bench_workloads", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # functions need a findable module (pickling, jax re-binding)
    spec.loader.exec_module(module)
    return module


def make_w4_step(tj, wl):
    """W4's SGD step as one jitted function: value_and_grad of w4_loss, then the update."""
    value_and_grad = tj.value_and_grad(wl.w4_loss)

    def sgd_step(params, x, y, lr):
        loss, grads = value_and_grad(params, x, y)
        return {k: params[k] - lr * grads[k] for k in params}, loss
    return tj.jit(sgd_step)


@dataclass
class Case:
    """One row of the table: a workload at one size, how to run it in numpy and in tracejit."""
    id: str  # "W1 n=10M"
    key: str  # "W1": selects the peers and --only
    what: str  # shapes, for the JSON
    inputs: Callable[[], tuple]
    numpy_fn: Callable
    tracejit_fn: Callable  # (tracejit module) -> callable
    rtol: float
    atol_scale: float  # absolute tolerance, as a fraction of the largest expected magnitude
    view: Callable = None  # (args, result) -> what is compared; default: the result itself
    bound_fn: Callable = None  # (tracejit module or None) -> only the work no program can avoid


def _w4_gemms_from_c(tj):
    """W4's eight gemms alone, compiled by tracejit (its own gemms where the CPU has AVX-512, else
    OpenBLAS called from C); numpy's own matmuls when tracejit is not importable."""
    return handwritten.matmul_bound(handwritten.mlp_matmuls if tj is None else tj.jit(handwritten.mlp_matmuls))


def _delta_view(args, result):
    """W4: compare the parameter *updates*, which a tolerance on the new parameters would hide."""
    params = args[0]
    new, loss = result
    return {k: np.asarray(new[k], np.float64) - params[k] for k in params}, loss


def build_cases(wl, quick: bool) -> list[Case]:
    n_big, n_small, n2 = (20_000, 1_000, 20_000) if quick else (10_000_000, 100_000, 10_000_000)
    rows, cols = (64, 32) if quick else (4096, 1024)
    xn, xk = (16, 10) if quick else (512, 1000)
    batch, sizes = (8, (16, 12, 12, 4)) if quick else (128, (784, 512, 512, 10))
    return [
        Case(f"W1 n={_count(n_big)}", "W1", f"f32[{n_big}] x3", lambda: wl.w1_inputs(n_big), wl.w1_elementwise,
             lambda tj: tj.jit(wl.w1_elementwise), 1e-5, 1e-6),
        Case(f"W1 n={_count(n_small)}", "W1", f"f32[{n_small}] x3", lambda: wl.w1_inputs(n_small),
             wl.w1_elementwise, lambda tj: tj.jit(wl.w1_elementwise), 1e-5, 1e-6),
        Case("W2a", "W2a", f"sum((a-b)**2), f32[{n2}] x2", lambda: wl.w2_inputs(n2), wl.w2_sum_sq_diff,
             lambda tj: tj.jit(wl.w2_sum_sq_diff), 2e-5, 0.0),
        Case("W2b", "W2b", f"row softmax f32[{rows},{cols}]", lambda: wl.w2_softmax_inputs(rows, cols),
             wl.w2_softmax, lambda tj: tj.jit(wl.w2_softmax), 1e-5, 1e-5),
        Case("W3", "W3", f"xent value_and_grad f32[{xn},{xk}]", lambda: wl.w3_inputs(xn, xk),
             handwritten.xent_value_and_grad, lambda tj: tj.jit(tj.value_and_grad(wl.w3_xent)), 1e-4, 1e-5),
        Case("W4", "W4", f"MLP SGD step batch {batch}, sizes {sizes}", lambda: wl.w4_inputs(batch, sizes),
             handwritten.sgd_step, lambda tj: make_w4_step(tj, wl), 1e-3, 1e-4, view=_delta_view,
             bound_fn=_w4_gemms_from_c),
        Case("W5", "W5", "x*2+1, f32[8]", wl.w5_inputs, wl.w5_tiny, lambda tj: tj.jit(wl.w5_tiny), 1e-6, 0.0),
    ]


def _count(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)
