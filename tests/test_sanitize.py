"""Generated C under AddressSanitizer and UndefinedBehaviorSanitizer (TRACEJIT_SANITIZE=1).

An ASan-instrumented library cannot be loaded into an ordinary python, so each check runs one
subprocess with libasan preloaded (see tracejit/compile/toolchain.py). The main run compiles a
representative set of programs (the benchmark workloads W1-W4 at small sizes, gathers with
labels, control flow, softmax, matmuls with transposed operands, reductions over non-last axes,
broadcasting) and compares every result with numpy inside the child; it must exit 0 with no
sanitizer report. Two deliberate errors show the setup does catch what it is meant to catch.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REPORT_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                  "LeakSanitizer", "AddressSanitizer:DEADLYSIGNAL")


def _libasan() -> str | None:
    try:
        out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    path = out.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


LIBASAN = _libasan()
pytestmark = pytest.mark.skipif(LIBASAN is None, reason="libasan is not installed (gcc -print-file-name=libasan.so "
                                                        "gives a bare name); install gcc's libasan to run these")


def run_sanitized(code: str, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACEJIT_SANITIZE": "1", "LD_PRELOAD": LIBASAN,
           "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1",
           "TRACEJIT_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=600)


PROGRAMS = """
import numpy as np
import tracejit as tj

F32 = np.float32
r = np.random.default_rng(0)
checked = []


def check(name, fun, *args, rtol=2e-5, atol=1e-6, want=None):
    with np.errstate(all="ignore"):
        want = fun(*args) if want is None else want
    got = tj.jit(fun)(*args)
    got_leaves, want_leaves = tj.pytree.flatten(got)[0], tj.pytree.flatten(want)[0]
    assert len(got_leaves) == len(want_leaves), name
    for g, w in zip(got_leaves, want_leaves):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)
    checked.append(name)


def normal(*shape, dtype=F32):
    return r.standard_normal(shape).astype(dtype)


def xent(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def mlp_loss(p, x, y):
    h = x
    for i in (1, 2):
        h = np.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
    return xent(h @ p["W3"] + p["b3"], y)


def train_step(p, x, y, lr):
    loss, grads = tj.value_and_grad(mlp_loss)(p, x, y)
    return {k: p[k] - lr * grads[k] for k in p}, loss


a, b, c = normal(10007), normal(10007), normal(10007)
check("W1 elementwise", lambda a, b, c: np.tanh(a * b + c) * 0.5 + np.exp(-a * a), a, b, c)
check("W2a sum of squared differences", lambda a, b: np.sum((a - b) ** 2), a, b, rtol=1e-4)
x = normal(33, 70)
check("W2b softmax", lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True), x)
special = normal(9, 40)
special[1, 3], special[2, 5], special[3, 7], special[4, :] = -95.0, np.nan, -np.inf, special[4, :] * 1e6
check("exp rows outside the fast range (the pass runs again)", lambda x: np.exp(x - x.max(axis=1, keepdims=True)) / np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True), special)
counts = r.integers(-9, 10, (6, 11)).astype(np.int32)
check("integer and bool matmul (csrc loops)", lambda c: (c @ c.T, c.T @ c, (c > 0) @ (c < 0).T, c[0] @ c.T), counts)
powers = tj.jit(lambda c, e: (c ** e).sum(axis=1))
check("integer power, exponents checked in the loop", lambda c, e: (c ** e).sum(axis=1), counts, np.abs(counts) % 4)
try:
    powers(counts, counts)  # negative exponents: numpy's ValueError, out of a parallel-free row loop
    raise AssertionError("no error for a negative integer exponent")
except ValueError as err:
    assert "negative integer powers" in str(err), err
logits, labels = normal(17, 10), r.integers(0, 10, 17)
check("W3 value_and_grad", tj.value_and_grad(xent), logits, labels, want=tj.value_and_grad(xent)(logits, labels))
sizes = (20, 24, 16, 10)
params = {}
for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
    params[f"W{i}"], params[f"b{i}"] = normal(m, n) / np.sqrt(m), normal(n) * 0.1
xb, yb = normal(9, 20), r.integers(0, 10, 9)
check("W4 train step", train_step, params, xb, yb, 0.1, want=train_step(params, xb, yb, 0.1))
check("gather with labels", lambda x, y: x[np.arange(x.shape[0]), y] * 2, logits, labels)
check("gather rows with repeats and negatives", lambda x, i: np.tanh(x[i]), x, np.array([0, 32, -1, 5, 5, -33]))
check("grad of a row gather (scatter_add)", tj.grad(lambda x, i: np.sin(x[i]).sum()), x, np.array([3, 3, -1, 0]),
      want=tj.grad(lambda x, i: np.sin(x[i]).sum())(x, np.array([3, 3, -1, 0])))
check("matmul, transposed operand", lambda x, w: x @ w.T, normal(13, 31), normal(7, 31))
check("matmul, transposed left", lambda x, y: x.T @ y, normal(31, 13), normal(31, 5))
check("batched matmul, broadcast", lambda x, w: np.tanh(x @ w), normal(3, 5, 6), normal(6, 4))
check("matmul float64", lambda x, w: x @ w, normal(9, 11, dtype=np.float64), normal(11, 3, dtype=np.float64))
y3 = normal(7, 9, 11)
check("reductions over non-last axes", lambda y: (y.sum(axis=0), y.max(axis=(0, 2)), y.mean(axis=1), y.argmax(axis=0)), y3, rtol=1e-5)
check("broadcasting", lambda a, b, c: a[:, None, :] * b[None, :, None] + c, normal(5, 7), normal(6), normal(6, 7))
check("slices and concatenate", lambda x: np.concatenate([x[::-1, ::2], x[1:, 1::2] * 2], axis=0), normal(9, 8))
check("cumsum and its gradient", lambda x: (np.cumsum(x, axis=0), np.cumsum(x.T, axis=1), np.cumsum(x[:, ::2]),
                                       tj.grad(lambda v: np.sum(np.cumsum(v, axis=1) ** 2))(x)), normal(9, 8), rtol=1e-5)
check("where and comparisons", lambda x: np.where(x > 0, np.sqrt(np.abs(x)), x ** 3), normal(4, 37, dtype=np.float64))
check("cond", lambda x: tj.cond(x.sum() > 0, lambda v: v * 2, lambda v: v - 1, x), normal(50))
check("scan", lambda x: tj.scan(lambda carry, v: (carry * 0.9 + v, carry.sum()), np.zeros(8, F32), x), normal(12, 8))
check("fori_loop", lambda x: tj.fori_loop(0, 5, lambda i, v: np.tanh(v) + 0.1, x), normal(100))
check("while_loop", lambda x: tj.while_loop(lambda v: v.sum() < 1000, lambda v: v * 2 + 1, x), np.abs(normal(30)))
scan_grad = tj.grad(lambda x: tj.scan(lambda c, v: (np.tanh(c + v), c), np.zeros(8, F32), x)[0].sum())
xs = normal(6, 8)
check("grad through scan", scan_grad, xs, want=scan_grad(xs))
print("checked", len(checked), "programs:", "; ".join(checked))
"""
N_PROGRAMS = PROGRAMS.count("\ncheck(")


def test_representative_programs_run_clean_under_asan_and_ubsan(tmp_path):
    out = run_sanitized(PROGRAMS, tmp_path / "cache")
    report = out.stdout[-3000:] + out.stderr[-6000:]
    assert out.returncode == 0, report
    assert not any(marker in out.stderr for marker in REPORT_MARKERS), report
    assert f"checked {N_PROGRAMS} programs" in out.stdout, report
    libraries = list((tmp_path / "cache").glob("??/*/lib.so"))
    assert libraries and all(b"__asan" in lib.read_bytes() for lib in libraries)  # really instrumented


# A compiled x*2 over 1000 float32 called through its C entry point with a 300-element input
# (1200 bytes, past numpy's small-block cache): the generated loop reads past the buffer.
OVERFLOW = """
import numpy as np
import tracejit as tj

exe = tj.jit(lambda x: x * 2).lower(np.ones(1000, np.float32)).compile()
ffi = exe.library.ffi
small, out = np.ones(300, np.float32), np.empty(1000, np.float32)
exe._main(ffi.from_buffer(small), ffi.from_buffer(out), *exe._hidden)
print("no error detected")
"""

# The same program given a float pointer one byte off alignment: UBSan's alignment check fires.
MISALIGNED = """
import numpy as np
import tracejit as tj

exe = tj.jit(lambda x: x * 2).lower(np.ones(1000, np.float32)).compile()
ffi = exe.library.ffi
raw, out = np.ones(4001, np.uint8), np.empty(1000, np.float32)
exe._main(ffi.cast("float *", ffi.cast("char *", ffi.from_buffer(raw)) + 1), ffi.from_buffer(out), *exe._hidden)
print("no error detected")
"""


def test_asan_catches_a_read_past_the_end_in_generated_code(tmp_path):
    out = run_sanitized(OVERFLOW, tmp_path / "cache")
    assert out.returncode != 0 and "heap-buffer-overflow" in out.stderr, out.stdout + out.stderr[-3000:]
    assert "tj_k" in out.stderr  # the report points into a generated kernel


def test_ubsan_catches_a_misaligned_load_in_generated_code(tmp_path):
    out = run_sanitized(MISALIGNED, tmp_path / "cache")
    assert out.returncode != 0 and "misaligned address" in out.stderr, out.stdout + out.stderr[-3000:]
