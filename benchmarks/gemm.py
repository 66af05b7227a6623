"""tracejit's own gemm kernels (csrc/gemm.c) against numpy's OpenBLAS, product by product.

    python benchmarks/gemm.py            # W4's eight products, then square ones, float32 and float64

Both are called the same way, through the ILP64 cblas_?gemm address the generated code gets,
on the same operands, timed by the runner's own measure.py: interleaved rounds, with a pause
before each turn so that neither's threads are still spinning when the other starts. Prints
the median time of each and their ratio. The
kernels are timed at every size; the last column says which the generated code calls (gemm.c
hands the smallest and the largest products to OpenBLAS).
"""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

import tracejit.runtime.executable  # noqa: F401  (sets the OpenMP waiting policy tracejit uses)
from tracejit.runtime import blas

try:
    from tracejit import _gemm
except ImportError:  # pragma: no cover
    _gemm = None

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Contender, measure, summary  # noqa: E402  (the runner's interleaved timing)

TARGET_S = 0.3  # timed seconds per contender and product

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
W4 = [  # (m, n, k, A transposed, B transposed): the products of W4's step, batch 128
    (128, 512, 784, False, False), (128, 512, 512, False, False), (128, 10, 512, False, False),
    (512, 10, 128, True, False), (128, 512, 10, False, True), (512, 512, 128, True, False),
    (128, 512, 512, False, True), (784, 512, 128, True, False),
]
SQUARE = [(n, n, n, False, False) for n in (64, 256, 512, 1024, 2048)]


def gemm_call(address: int, dtype):
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    return ctypes.CFUNCTYPE(None, cint, cint, cint, i64, i64, i64, scalar, ptr, i64, ptr, i64, scalar, ptr,
                            i64)(address)


def operands(m, n, k, ta, tb, dtype, rng):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype)


def main() -> int:
    own, numpy_gemms = blas.own_gemms(), blas.numpy_blas64()
    if own is None or numpy_gemms is None:
        print("needs tracejit._gemm on an AVX-512 CPU (TRACEJIT_GEMM unset) and numpy's bundled OpenBLAS")
        return 1
    _gemm.set_blas_gemms(0, 0)  # time tracejit's kernels at every size
    rng = np.random.default_rng(0)
    print(f"{'dtype':8} {'m x n x k':>18} {'trans':>6} {'tracejit':>10} {'OpenBLAS':>10} {'ratio':>6}  generated code calls")
    for dtype, which in ((np.float32, 0), (np.float64, 1)):
        for m, n, k, ta, tb in W4 + SQUARE:
            a, b, c = operands(m, n, k, ta, tb, dtype, rng)
            args = (ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
                    a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
            contenders = [Contender(name, gemm_call(address, dtype), args)
                          for name, address in (("tracejit", own[which]), ("OpenBLAS", numpy_gemms[which]))]
            measure(contenders, TARGET_S, min_reps=10, reps=None)  # rounds alternate, pools settle between
            times = [summary(c)["median_s"] for c in contenders]
            flags = ("T" if ta else "N") + ("T" if tb else "N")
            calls = "tracejit" if _gemm.BLAS_BELOW <= m * n * k < _gemm.BLAS_FROM else "OpenBLAS"
            print(f"{np.dtype(dtype).name:8} {f'{m} x {n} x {k}':>18} {flags:>6} {times[0] * 1e6:8.0f}us "
                  f"{times[1] * 1e6:8.0f}us {times[1] / times[0]:5.2f}x  {calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
