"""setuptools shim: the metadata is in pyproject.toml; this file only adds the optional C extensions.

tracejit._dispatch (csrc/dispatch.c, with its output pool in csrc/pool.c) runs jitted calls that match a compiled signature in C. It is
optional: without a C compiler, Python headers or numpy at build time the install goes on without
it, and every call takes the pure-Python path (tracejit/api.py imports it inside a try).
tracejit._gemm (csrc/gemm.c) holds the float gemms of generated matmuls on AVX-512 CPUs; it is
optional too (runtime/blas.py then hands the generated code numpy's OpenBLAS).
"""
from setuptools import Extension, setup


def extensions() -> list:
    try:
        import numpy
    except ImportError:  # a build without numpy (no build isolation): no extension
        return []
    return [Extension("tracejit._dispatch", ["csrc/dispatch.c", "csrc/pool.c"], depends=["csrc/pool.h"],
                      include_dirs=[numpy.get_include()],
                      optional=True),
            # the float gemms of generated matmuls on AVX-512 CPUs (csrc/gemm.c); without it, or
            # without OpenMP, they call numpy's OpenBLAS
            Extension("tracejit._gemm", ["csrc/gemm.c"], depends=["csrc/gemm_kernel.h"],
                      extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"], optional=True)]


setup(ext_modules=extensions())
