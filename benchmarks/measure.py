"""Verification and timing: results checked against numpy first, then medians of interleaved rounds."""
from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MIN_SAMPLE_S = 1e-3  # a timed sample runs the function this long at least, so timer overhead vanishes
ROUNDS = 5  # interleaved rounds per measurement


class WrongResult(AssertionError):
    """A contender's result differs from numpy's: it is reported, never timed."""


def leaves_with_paths(tree, path=""):
    """[(path, leaf)] of a result pytree (dict keys sorted), so two results compare leaf by leaf."""
    if isinstance(tree, dict):
        return [lp for k in sorted(tree) for lp in leaves_with_paths(tree[k], f"{path}[{k!r}]")]
    if isinstance(tree, (list, tuple)):
        return [lp for i, v in enumerate(tree) for lp in leaves_with_paths(v, f"{path}[{i}]")]
    return [(path or "result", tree)]


def compare(actual, expected, case, args, strict_dtype: bool) -> float:
    """Raise WrongResult unless `actual` matches numpy's `expected`; return the max relative error."""
    view = case.view or (lambda _args, result: result)
    got, want = leaves_with_paths(view(args, actual)), leaves_with_paths(view(args, expected))
    if [p for p, _ in got] != [p for p, _ in want]:
        raise WrongResult(f"result structure {[p for p, _ in got]} differs from numpy's {[p for p, _ in want]}")
    worst = 0.0
    for (path, a), (_, e) in zip(got, want):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape or (strict_dtype and a.dtype != e.dtype):
            raise WrongResult(f"{path}: {a.dtype}{list(a.shape)} where numpy gives {e.dtype}{list(e.shape)}")
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        try:
            np.testing.assert_allclose(a, e, rtol=case.rtol, atol=case.atol_scale * scale)
        except AssertionError as err:
            raise WrongResult(f"{path} differs from numpy: {first_lines(str(err), 6)}") from None
        worst = max(worst, _max_rel_err(a, e))
    return worst


def check_fresh_results(fn, args) -> None:
    """Raise WrongResult if fn writes into its inputs or hands out the same result buffers twice.

    A result that the next call overwrites, or an input updated in place, would make the
    timing loop measure something other than what numpy does (and change the inputs
    between repetitions).
    """
    inputs = [(p, np.array(x, copy=True)) for p, x in leaves_with_paths(args) if isinstance(x, np.ndarray)]
    first, second = fn(*args), fn(*args)
    for (path, before), (_, now) in zip(inputs, leaves_with_paths(args)):
        if not np.array_equal(before, now, equal_nan=True):
            raise WrongResult(f"the call changed its input {path.replace('result', 'argument')}")
    olds = [x for _, x in leaves_with_paths(first) if isinstance(x, np.ndarray)]
    ins = [x for _, x in leaves_with_paths(args) if isinstance(x, np.ndarray)]
    for path, new in leaves_with_paths(second):
        if isinstance(new, np.ndarray) and new.size and any(np.shares_memory(new, o) for o in olds):
            raise WrongResult(f"{path}: two calls returned the same buffer (the second overwrote the first result)")
        if isinstance(new, np.ndarray) and new.size and any(np.shares_memory(new, i) for i in ins):
            raise WrongResult(f"{path}: the result shares memory with an input")


def _max_rel_err(a, e) -> float:
    a, e = a.astype(np.float64), e.astype(np.float64)
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0, 1e-30)
    return float(np.max(np.abs(a - e)) / scale) if e.size else 0.0


def first_lines(text: str, n: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:n] if line.strip())


# ---- timing -----------------------------------------------------------------------------------
def raise_mmap_threshold(nbytes: int = 30 << 20) -> None:
    """Let numpy's temporaries be recycled by malloc instead of page-faulting on every call.

    glibc serves a block above M_MMAP_THRESHOLD (128 KiB at start) with a fresh mmap and
    unmaps it on free, so each numpy temporary of W3/W4's size costs page faults on every
    call (numpy then looks 4-7x slower on W3/W4 than it is). Freeing one mmapped block raises
    the threshold to that block's size (glibc caps the dynamic threshold at 32 MiB), after
    which blocks below it come from the heap and are reused. Done once, before any timing,
    for every contender alike.
    """
    block = np.empty(nbytes, dtype=np.uint8)
    del block


@dataclass
class Contender:
    name: str
    fn: Callable
    args: tuple
    number: int = 1  # calls per timed sample
    reps: int = 0  # timed samples wanted
    samples: list = field(default_factory=list)  # seconds per call


def _time_batch(fn, args, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn(*args)
    return time.perf_counter() - start


def calibrate(c: Contender, target_s: float, min_reps: int, reps: int | None) -> None:
    """Warm up, then choose calls per sample and the number of samples (~target_s in all)."""
    warm_until = time.perf_counter() + min(0.2, target_s / 4)
    calls = 0
    while calls < 3 or (time.perf_counter() < warm_until and calls < 1000):
        one = _time_batch(c.fn, c.args, 1)
        calls += 1
    c.number = max(1, math.ceil(MIN_SAMPLE_S / max(one, 1e-9)))
    per_call = _time_batch(c.fn, c.args, c.number) / c.number
    c.reps = reps or max(min_reps, min(10_000, round(target_s / (per_call * c.number))))


def measure(contenders: list[Contender], target_s: float, min_reps: int, reps: int | None,
            settle_s: float = 0.1) -> None:
    """Fill each contender's samples, in rounds that alternate between contenders.

    Rounds spread slow drift of a noisy machine over all contenders alike. Before each
    contender's turn the process sleeps `settle_s`: the thread pools of the previous one
    (OpenBLAS workers spin about 2**28 cycles after a call, OpenMP workers spin too) go idle
    instead of competing for the 2 cores; then one untimed call re-warms the caches.
    """
    for c in contenders:
        calibrate(c, target_s, min_reps, reps)
    rounds = min(ROUNDS, min(c.reps for c in contenders))
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one sample is noise, not the contender's cost
    try:
        for r in range(rounds):
            for c in contenders:
                time.sleep(settle_s)
                c.fn(*c.args)
                share = c.reps // rounds + (1 if r < c.reps % rounds else 0)
                c.samples.extend(_time_batch(c.fn, c.args, c.number) / c.number for _ in range(share))
    finally:
        if gc_was_enabled:
            gc.enable()


def summary(c: Contender) -> dict:
    s = sorted(c.samples)
    q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
    return {"median_s": statistics.median(s), "min_s": s[0], "q1_s": q[0], "q3_s": q[2],
            "reps": len(s), "calls_per_rep": c.number}


class CpuWatch:
    """How many cores other processes kept busy since creation: the noise behind a measurement.

    Busy time of the whole machine (/proc/stat, minus idle and iowait) minus this process's
    own CPU time and that of its finished children, divided by the elapsed time.
    """

    def __init__(self):
        self._start = self._snapshot()

    @staticmethod
    def _snapshot():
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            busy = None
        return time.perf_counter(), busy, own

    def others_cores(self) -> float | None:
        (t0, busy0, own0), (t1, busy1, own1) = self._start, self._snapshot()
        if busy0 is None or busy1 is None or t1 - t0 < 0.05:
            return None
        return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0), 2)
