"""TRACEJIT_NUM_THREADS sizes both pools: the OpenMP loops and the BLAS (numpy's own, shared)."""
import os
import subprocess
import sys
import textwrap

import pytest

from tracejit.runtime import blas

CHILD = textwrap.dedent("""
    import numpy as np, tracejit as tj
    from tracejit.runtime import blas
    a = np.ones((64, 64), np.float32)
    out = tj.jit(lambda a: np.tanh(a @ a))(a)
    assert np.allclose(out, np.tanh(a @ a))
    print(blas.blas_threads())
""")


def run_child(env_threads):
    env = {k: v for k, v in os.environ.items() if k != "TRACEJIT_NUM_THREADS"}
    if env_threads is not None:
        env["TRACEJIT_NUM_THREADS"] = env_threads
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(blas.numpy_blas64() is None, reason="this numpy does not bundle scipy-openblas64")
def test_num_threads_also_sizes_numpys_blas_pool():
    default = run_child(None)
    assert run_child("1") == 1
    if default > 1:  # unset: OpenBLAS keeps its own default
        assert run_child(str(default)) == default


# ---- how OpenMP workers wait between loops (runtime/executable.py) -------------------------------
WAIT_CHILD = "import os, tracejit.runtime.executable; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"


def openmp_waiting(**user_env):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user_env)
    proc = subprocess.run([sys.executable, "-c", WAIT_CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return tuple(proc.stdout.split())


# the default spin: longer where generated matmuls run tracejit's gemms on the OpenMP pool
DEFAULT_SPIN = "3000" if blas.own_gemms_expected() else "300"


@pytest.mark.parametrize("user_env, expected", [
    ({}, ("PASSIVE", DEFAULT_SPIN)),  # a spin for libgomp, no spin for other runtimes
    ({"TRACEJIT_GEMM": "blas"}, ("PASSIVE", "300")),  # OpenBLAS's threads need the cores between loops
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "None")),  # the user asked for no spin
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", "None")),
    ({"GOMP_SPINCOUNT": "5000"}, ("PASSIVE", "5000")),
])
def test_openmp_wait_defaults_leave_what_the_user_set(user_env, expected):
    assert openmp_waiting(**user_env) == expected
