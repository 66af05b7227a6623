"""The BLAS behind generated matmuls: numpy's own OpenBLAS, and its thread count.

Sharing numpy's library means one BLAS thread pool in the process: with two, each pool's
threads spin after a call and starve the other's (a 128x784x512 sgemm took 24 ms instead of
0.6 ms right after a numpy matmul).
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from .. import config

_NUMPY_BLAS: list = []


def numpy_blas64() -> tuple[int, int] | None:
    """Addresses of sgemm/dgemm in numpy's own OpenBLAS (the scipy-openblas64 numpy wheels bundle),
    or None (another numpy build: the generated code then calls the scipy-openblas32 wheel)."""
    if not _NUMPY_BLAS:
        _NUMPY_BLAS.append(_load_numpy_blas64())
    found = _NUMPY_BLAS[0]
    return None if found is None else found[:2]


def _load_numpy_blas64():
    """(sgemm address, dgemm address, the library) of numpy's bundled OpenBLAS, or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            gemms = tuple(ctypes.cast(getattr(lib, f"scipy_cblas_{p}gemm64_"), ctypes.c_void_p).value for p in "sd")
        except (OSError, AttributeError):
            continue
        _apply_thread_setting(lib)
        return gemms + (lib,)
    return None


def _apply_thread_setting(lib) -> None:
    """TRACEJIT_NUM_THREADS, when the user sets it, also sizes the BLAS pool. The pool is numpy's
    own (see above), so numpy's matmuls in this process follow it too: one pool, never two
    competing for the cores. Unset, OpenBLAS keeps its own default (OPENBLAS_NUM_THREADS or
    the cores), which is the default of TRACEJIT_NUM_THREADS as well."""
    if not config.num_threads_set():
        return
    setter = getattr(lib, "scipy_openblas_set_num_threads64_", None)
    if setter is not None:
        setter.argtypes = [ctypes.c_int]  # openblas_set_num_threads(int), as threadpoolctl calls it
        setter(config.num_threads())


def blas_threads() -> int | None:
    """The BLAS pool's thread count now, or None without numpy's OpenBLAS (for tests and reports)."""
    numpy_blas64()
    found = _NUMPY_BLAS[0]
    if found is None:
        return None
    getter = found[2].scipy_openblas_get_num_threads64_
    getter.restype = ctypes.c_int
    return getter()
