"""The gemms behind generated matmuls: tracejit's own (csrc/gemm.c) or numpy's own OpenBLAS, and
OpenBLAS's thread count.

Sharing numpy's library means one BLAS thread pool in the process: with two, each pool's
threads spin after a call and starve the other's (a 128x784x512 sgemm took 24 ms instead of
0.6 ms right after a numpy matmul).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os

import numpy as np

from .. import config

_NUMPY_BLAS: list = []


def gemm_pointers() -> tuple[int, int] | None:
    """(sgemm, dgemm) addresses for a generated program's tj_use_blas64, or None to leave both unset
    (the program then calls the scipy-openblas32 wheel): tracejit's own gemms where they run
    (TRACEJIT_GEMM=tracejit, an AVX-512 CPU), else numpy's OpenBLAS."""
    return own_gemms() or numpy_blas64()


def own_gemms() -> tuple[int, int] | None:
    """(sgemm, dgemm) addresses of tracejit's gemms if the generated matmuls use them, else None."""
    return _own_gemm_addresses() if config.gemm() == "tracejit" else None


def own_gemms_expected() -> bool:
    """Whether own_gemms() will find tracejit's gemms, answered without loading the extension
    (and libgomp with it): for choosing the OpenMP waiting policy before libgomp reads it."""
    return (config.gemm() == "tracejit" and importlib.util.find_spec("tracejit._gemm") is not None
            and cpu_runs_own_gemms())


def cpu_runs_own_gemms() -> bool:
    """Whether this CPU has what csrc/gemm.c's kernels need (AVX-512F and FMA), as numpy detected it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as cpu
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as cpu
    return bool(cpu.get("AVX512F")) and bool(cpu.get("FMA3"))


@functools.cache
def _own_gemm_addresses() -> tuple[int, int] | None:
    """The optional extension of csrc/gemm.c (setup.py); None where the CPU lacks AVX-512.
    Imported on first use, not with this module: it loads libgomp, which reads the OpenMP
    waiting policy once, and runtime/executable.py sets that policy after importing this."""
    try:
        from .. import _gemm
    except ImportError:  # built without a compiler or OpenMP
        return None
    numpy_gemms = numpy_blas64()
    if numpy_gemms is not None:  # the smallest and largest products go to numpy's OpenBLAS (gemm.c)
        _gemm.set_blas_gemms(*numpy_gemms)
    return _gemm.gemm_addresses()


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
