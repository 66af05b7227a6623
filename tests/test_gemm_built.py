"""tracejit._gemm is optional at install (setup.py), so tests/test_gemm.py skips without it; this
check keeps a broken build from passing as a skip: where the extension can be built and run, it
must be there."""
import importlib.util

import pytest

from tracejit.compile import toolchain
from tracejit.errors import CompilerNotFoundError
from tracejit.runtime import blas


def test_the_gemm_extension_is_built_where_it_can_run():
    try:
        openmp = toolchain.supports_openmp(toolchain.find_compiler())
    except CompilerNotFoundError:
        pytest.skip("no C compiler here, so none at install either")
    if not openmp or not blas.cpu_runs_own_gemms():
        pytest.skip("no OpenMP, or a CPU without AVX-512: the generated code calls OpenBLAS")
    assert importlib.util.find_spec("tracejit._gemm") is not None, "setup.py did not build tracejit._gemm"
    assert blas._own_gemm_addresses() is not None
