"""tracejit's own gemms (csrc/gemm.c): the cblas_?gemm contract, checked against float64 products.

Called here through ctypes with the ILP64 cblas signature the generated code uses, over the edges
the blocking has (fewer rows than a micro-kernel block, a partial column panel, k not a multiple
of the packing depth, both transposes, alpha/beta, a C wider than the product, column-major), on
one thread and on the parallel path.
"""
import ctypes
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import tracejit as tj
from tracejit import config
from tracejit.runtime import blas

ADDRESSES = blas._own_gemm_addresses()
pytestmark = pytest.mark.skipif(ADDRESSES is None, reason="tracejit._gemm not built, or this CPU lacks AVX-512")


@pytest.fixture(autouse=True)
def own_kernels_only():
    """The smallest and largest products, which go to numpy's OpenBLAS (set_blas_gemms), go through
    tracejit's kernels here, so that the small edges are tested; restored after each test."""
    from tracejit import _gemm

    _gemm.set_blas_gemms(0, 0)
    yield
    numpy_gemms = blas.numpy_blas64()
    if numpy_gemms is not None:
        _gemm.set_blas_gemms(*numpy_gemms)

ROW_MAJOR, COL_MAJOR, NO_TRANS, TRANS = 101, 102, 111, 112
I64, PTR, INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int


def gemm_function(dtype):
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    proto = ctypes.CFUNCTYPE(None, INT, INT, INT, I64, I64, I64, scalar, PTR, I64, PTR, I64, scalar, PTR, I64)
    return proto(ADDRESSES[0] if dtype == np.float32 else ADDRESSES[1])


def run_gemm(dtype, a, b, c, ta, tb, alpha, beta, order=ROW_MAJOR):
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    if order == COL_MAJOR:  # column-major views of the same row-major buffers: swap and transpose
        m, n = n, m
    gemm_function(dtype)(order, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, alpha,
                         a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], beta, c.ctypes.data, c.shape[1])


def reference(a, b, c, ta, tb, alpha, beta):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64)) + beta * c.astype(np.float64)


def tolerance(dtype, k):
    return (2e-6 if dtype == np.float32 else 4e-15) * max(1.0, np.sqrt(k))


SIZES_M = (1, 7, 8, 9, 130)
SIZES_N = (1, 15, 16, 17, 33, 2100)  # narrow (C computed transposed), partial panels, more than one NC block
SIZES_K = (1, 8, 257, 600)  # k past one packing slice (256), and past two


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta, tb", list(itertools.product((False, True), repeat=2)))
def test_gemm_matches_a_float64_product(dtype, ta, tb):
    rng = np.random.default_rng(0)
    for m, n, k in itertools.product(SIZES_M, SIZES_N, SIZES_K):
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        c = rng.standard_normal((m, n + 5)).astype(dtype)  # ldc > n: columns past n stay as they were
        before = c.copy()
        alpha, beta = ((1.0, 0.0), (0.5, 2.0), (-1.0, 1.0))[(m + n + k) % 3]
        run_gemm(dtype, a, b, c, ta, tb, alpha, beta)
        want = reference(a, b, before[:, :n], ta, tb, alpha, beta)
        err = np.abs(c[:, :n] - want).max() / max(1.0, np.abs(want).max())
        assert err < tolerance(dtype, k), (m, n, k, err)
        np.testing.assert_array_equal(c[:, n:], before[:, n:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_zero_never_reads_c(dtype):
    """As BLAS: with beta = 0, C may hold anything (here nan and inf), and none of it survives."""
    rng = np.random.default_rng(1)
    for m, n, k in ((3, 5, 4), (130, 100, 300)):
        a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        c = np.full((m, n), np.nan, dtype)
        c[::2] = np.inf
        run_gemm(dtype, a, b, c, False, False, 1.0, 0.0)
        want = a.astype(np.float64) @ b
        np.testing.assert_allclose(c, want, rtol=0, atol=tolerance(dtype, k) * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_k_scales_c_and_empty_m_touches_nothing(dtype):
    c = np.full((4, 6), 3.0, dtype)
    a, b = np.zeros((4, 0), dtype), np.zeros((0, 6), dtype)
    run_gemm(dtype, a, b, c, False, False, 1.0, 0.5)
    np.testing.assert_array_equal(c, np.full((4, 6), 1.5, dtype))
    run_gemm(dtype, a, b, c, False, False, 1.0, 0.0)
    np.testing.assert_array_equal(c, np.zeros((4, 6), dtype))
    kept = np.full((1, 6), 7.0, dtype)
    gemm_function(dtype)(ROW_MAJOR, NO_TRANS, NO_TRANS, 0, 6, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 6, 0.0,
                         kept.ctypes.data, 6)
    np.testing.assert_array_equal(kept, np.full((1, 6), 7.0, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_major_is_the_product_of_the_transposes(dtype):
    """Column-major C = A @ B over the same buffers is row-major C^T = B^T @ A^T."""
    rng = np.random.default_rng(2)
    m, n, k = 37, 45, 70
    a_cm = rng.standard_normal((k, m)).astype(dtype)  # column-major m x k: its rows are A's columns
    b_cm = rng.standard_normal((n, k)).astype(dtype)  # column-major k x n
    c_cm = np.zeros((n, m), dtype)  # column-major m x n
    gemm_function(dtype)(COL_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, a_cm.ctypes.data, m, b_cm.ctypes.data, k, 0.0,
                         c_cm.ctypes.data, m)
    want = a_cm.T.astype(np.float64) @ b_cm.T.astype(np.float64)
    np.testing.assert_allclose(c_cm.T, want, rtol=tolerance(dtype, k), atol=tolerance(dtype, k) * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate_as_in_a_plain_product(dtype):
    a = np.ones((9, 20), dtype)
    b = np.ones((20, 40), dtype)
    a[3, 5] = np.nan
    b[7, 33] = np.inf
    c = np.zeros((9, 40), dtype)
    run_gemm(dtype, a, b, c, False, False, 1.0, 0.0)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(want))


# ---- which gemm the generated code calls ----------------------------------------------------------
def test_generated_matmuls_call_tracejits_gemms_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("TRACEJIT_GEMM", raising=False)
    assert blas.gemm_pointers() == ADDRESSES
    monkeypatch.setenv("TRACEJIT_GEMM", "blas")
    assert blas.gemm_pointers() == blas.numpy_blas64()
    assert not blas.own_gemms_expected()
    monkeypatch.setenv("TRACEJIT_GEMM", "mkl")
    with pytest.raises(ValueError, match="TRACEJIT_GEMM='mkl'"):
        config.gemm()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jitted_matmuls_and_their_gradients_through_tracejits_gemms(dtype):
    """W4's layer shapes, batched products and the transposed products of a backward pass."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 784)).astype(dtype)
    w = (rng.standard_normal((784, 512)) / 28).astype(dtype)
    batch = rng.standard_normal((3, 17, 40)).astype(dtype)
    other = rng.standard_normal((3, 40, 9)).astype(dtype)

    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)

    value, grad = tj.jit(tj.value_and_grad(loss))(w, x)
    h = np.tanh(x.astype(np.float64) @ w)
    want_grad = x.astype(np.float64).T @ (2 * h * (1 - h * h))
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, np.sum(h * h), rtol=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * np.abs(want_grad).max())
    assert grad.dtype == dtype and value.dtype == dtype
    got = tj.jit(lambda a, b: a @ b)(batch, other)
    np.testing.assert_allclose(got, batch.astype(np.float64) @ other, rtol=rtol, atol=rtol * 10)
    assert got.dtype == dtype and got.shape == (3, 17, 9)


LEAK_CHILD = """
import threading, numpy as np, tracejit as tj
f = tj.jit(lambda a, b: a @ b)
a, b = np.ones((128, 300), np.float32), np.ones((300, 512), np.float32)
f(a, b)
def rss():
    with open("/proc/self/statm") as s:
        return int(s.read().split()[1]) * 4096
def batch():
    for _ in range(20):
        t = threading.Thread(target=f, args=(a, b))
        t.start()
        t.join()
batch()
before = rss()
for _ in range(5):
    batch()
print(rss() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_threads_that_end_give_their_packing_buffers_back():
    """Each thread's packing buffers (~5 MB) are freed when it ends: 100 short-lived threads that
    each run a product (touching ~0.6 MB of them) leave the resident size where it was."""
    proc = subprocess.run([sys.executable, "-c", LEAK_CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    grown = int(proc.stdout.split()[-1])
    assert grown < 16 << 20, f"resident size grew by {grown / 2**20:.1f} MiB over 100 threads"
