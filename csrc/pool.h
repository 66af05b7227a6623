/* pool.h -- the output pool of tracejit._dispatch (pool.c): large outputs reuse the blocks of
 * dead ones. dispatch.c allocates the outputs of its fast path through it and exposes its
 * functions to Python. Both files see numpy's C API through one table (PY_ARRAY_UNIQUE_SYMBOL),
 * which dispatch.c's module init imports. */
#ifndef TRACEJIT_POOL_H
#define TRACEJIT_POOL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL tracejit_dispatch_ARRAY_API
#ifndef TJ_IMPORTS_NUMPY_ARRAY  /* only dispatch.c calls import_array() */
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#define POOL_MIN_BYTES ((size_t)1 << 18)  /* 256 KiB: above glibc's first mmap threshold, 128 KiB */
#define POOL_MAX_BLOCKS 32

/* Shared between the extension's two files only, not exported from the module's library. */
#define TJ_INTERNAL __attribute__((visibility("hidden")))

/* Make the handler capsule and the fork handlers (once); -1 with a Python exception set. */
TJ_INTERNAL int pool_init(void);
/* Whether an array of this dtype and shape is allocated through the pool (if it is on). */
TJ_INTERNAL int pooled_size(PyArray_Descr *descr, int ndim, const npy_intp *dims);
/* A new uninitialized C-contiguous array (steals `descr`), from the pool if `pooled` and it is on. */
TJ_INTERNAL PyObject *new_output(PyArray_Descr *descr, int ndim, npy_intp *dims, int pooled);

/* Module functions (see dispatch.c's method table for their Python docstrings). */
TJ_INTERNAL PyObject *pooled_empty(PyObject *module, PyObject *args);
TJ_INTERNAL PyObject *pool_configure(PyObject *module, PyObject *arg);
TJ_INTERNAL PyObject *pool_clear(PyObject *module, PyObject *ignored);
TJ_INTERNAL PyObject *pool_stats(PyObject *module, PyObject *ignored);

#endif
