/* dispatch.c -- tracejit._dispatch, the C fast path of a jitted call.
 *
 * A call such as `f(x)` with `f = tj.jit(lambda x: x * 2 + 1)` spends ~10 us in Python (flatten the
 * arguments, build the signature key, check each array, allocate the outputs, one cffi call,
 * unflatten) around a C program that runs in nanoseconds. This module does that hot path in C for
 * the common case: positional or keyword arguments that are plain, C-contiguous, aligned ndarrays
 * (or numpy scalars where a 0-d array is compiled), Python floats (a learning rate) or Python ints
 * (within what the program converts them to), alone or in
 * dicts with str keys, tuples, namedtuples and lists (a model's parameters, an optimizer's
 * state), of exactly the structure, shapes and dtypes of a signature already compiled.
 *
 *   Dispatcher  base class of tracejit.api.Jitted. Its tp_call looks the arguments up in a small
 *               table of Entries (most recently used first); on a match it runs the Entry, on
 *               anything else (bools, ints out of range, dict subclasses or non-str keys, tracers, other shapes or dtypes, strided or misaligned arrays, a new
 *               signature, static arguments, a call made while tracing) it calls the Python method `_call_python(*args,
 *               **kwargs)`, which is the full path with all its conversions and error messages,
 *               and which adds Entries to the table.
 *   Entry       one compiled signature: the address of the generated `tj_main`, the input and
 *               output specs, the hidden pointers (large constants, workspace, bad-index slot),
 *               the workspace Lock, and how to pack the outputs (one array, a tuple, a list, or a
 *               Python callable for any other structure). Built by Executable.fast_entry().
 *   Lock        a plain mutex shared by this fast path and the Python path (`with lock:`), so the
 *               two never run one executable's workspace at the same time.
 *   Pool        a numpy memory handler (NEP 49) that both paths allocate large outputs through, so
 *               that a 40 MB output reuses the pages of the last call's instead of faulting in
 *               fresh ones (pooled_empty for the Python path; pool.c).
 *
 * Threads. The fast path normally keeps the GIL while the kernel runs: for small calls that is
 * far cheaper than releasing and re-taking it (under contention re-taking it can cost a whole
 * 5 ms switch interval). Entries whose call may be long (big arrays, matmuls, loops) release it,
 * as cffi always did. Either way the workspace Lock is held around the call, because the Python
 * path calls through cffi *without* the GIL: the GIL alone would not keep a fast-path call and a
 * Python-path call of the same executable apart. We never wait for the Lock while holding the
 * GIL (a thread holding the Lock may need the GIL to finish and release it), and we allocate the
 * outputs and run Python callbacks only while *not* holding the Lock (allocation can trigger the
 * garbage collector, which can run arbitrary code, including another call of the same function).
 */
#define TJ_IMPORTS_NUMPY_ARRAY  /* this file's module init calls import_array() for pool.c too */
#include "pool.h"

#include <pythread.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE 8     /* signatures per jitted function kept in the fast table */
#define MAX_POINTERS 64  /* tj_main parameters we can call (see call_tj_main at the end) */

typedef void (*tj_main_fn)(void);  /* any function pointer; called through a cast to its real arity (call_tj_main) */
static int call_tj_main(tj_main_fn fn, void **p, int n);

/* ---------------------------------------------------------------------------------------------
 * Lock: a non-reentrant mutex usable from Python (`with lock:`, acquire/release) and from C.
 */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    int held;  /* only read for .locked() and to refuse releasing an unlocked lock */
} LockObject;

static PyTypeObject LockType;

/* Take the lock; waits (with the GIL released) when another thread has it. The GIL is held on
 * entry and on return. */
static void lock_take(LockObject *self)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    self->held = 1;
}

static void lock_give(LockObject *self)
{
    self->held = 0;
    PyThread_release_lock(self->lock);
}

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
        return NULL;
    }
    LockObject *self = (LockObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "tracejit: cannot allocate a lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void Lock_dealloc(LockObject *self)
{
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lock_acquire(LockObject *self, PyObject *Py_UNUSED(ignored))
{
    lock_take(self);
    Py_RETURN_TRUE;
}

static PyObject *Lock_release(LockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->held) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    lock_give(self);
    Py_RETURN_NONE;
}

static PyObject *Lock_exit(LockObject *self, PyObject *Py_UNUSED(args))
{
    return Lock_release(self, NULL);
}

static PyObject *Lock_locked(LockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->held);
}

static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)Lock_acquire, METH_NOARGS, "Wait for the lock and take it."},
    {"release", (PyCFunction)Lock_release, METH_NOARGS, "Give the lock back."},
    {"__enter__", (PyCFunction)Lock_acquire, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Lock_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS, "Whether some thread holds the lock."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracejit._dispatch.Lock",
    .tp_doc = "The workspace lock of one executable, shared by the C and the Python call paths.",
    .tp_basicsize = sizeof(LockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_methods = Lock_methods,
};

/* ---------------------------------------------------------------------------------------------
 * Entry: one compiled signature.
 */
typedef struct {
    PyArray_Descr *descr;  /* owned; outputs are allocated with it */
    int type_num;
    int ndim;
    npy_intp *dims;  /* into EntryObject.dims */
    int pooled;      /* outputs: large enough to come from the Pool */
    int python_float;  /* inputs: a Python float passed for this 0-d float input (a learning rate) */
    int python_int;    /* inputs: a Python int passed for this 0-d int64 input, within [int_lo, int_hi] */
    long long int_lo, int_hi;
} Spec;

enum Pack { PACK_LEAF, PACK_TUPLE, PACK_LIST, PACK_CALL };

typedef struct {
    PyObject_HEAD
    tj_main_fn main;
    int n_in, n_out, n_hidden;  /* n_hidden: constants and workspace (the bad-index slot is apart) */
    Spec *specs;                /* n_in inputs, then n_out outputs */
    npy_intp *dims;             /* every spec's shape, back to back */
    void **hidden;
    int64_t *bad_index;         /* tj_main writes the offending index here before failing */
    enum Pack pack;
    PyObject *unflatten;        /* PACK_CALL: callable(list of outputs) -> the user's structure */
    PyObject *on_error;         /* callable(status, bad_index): raises the program's error */
    LockObject *lock;           /* NULL when the program has no workspace */
    int release_gil;
    PyObject *owner;            /* keeps the library, constants and workspace alive */
    PyObject *layout;           /* NULL, or one layout node per positional argument (see parse_layout) */
    PyObject *keywords;         /* NULL, or a LAYOUT_DICT node: the keyword arguments (with a layout) */
} EntryObject;

static PyTypeObject EntryType;

static void *address_of(PyObject *number)
{
    void *p = PyLong_AsVoidPtr(number);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "tracejit: a null address given to the dispatcher");
    return p;
}

/* Fill `spec` from a (shape, dtype) pair; its dims go to *dims, which advances. */
static int parse_spec(PyObject *pair, Spec *spec, npy_intp **dims)
{
    PyObject *shape, *dtype;
    if (!PyTuple_Check(pair) || !PyArg_ParseTuple(pair, "OO", &shape, &dtype)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "tracejit: a spec is a (shape, dtype) tuple");
        return -1;
    }
    if (!PyArray_DescrCheck(dtype) || !PyTuple_Check(shape)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: a spec is a (tuple shape, numpy dtype) pair");
        return -1;
    }
    Py_ssize_t ndim = PyTuple_GET_SIZE(shape);
    if (ndim > NPY_MAXDIMS) {
        PyErr_SetString(PyExc_ValueError, "tracejit: too many dimensions in a spec");
        return -1;
    }
    spec->ndim = (int)ndim;
    spec->dims = *dims;
    for (Py_ssize_t d = 0; d < ndim; d++) {
        npy_intp size = PyNumber_AsSsize_t(PyTuple_GET_ITEM(shape, d), PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred())
            return -1;
        spec->dims[d] = size;
    }
    *dims += ndim;
    Py_INCREF(dtype);
    spec->descr = (PyArray_Descr *)dtype;
    spec->type_num = spec->descr->type_num;
    return 0;
}

static Py_ssize_t total_ndim(PyObject *specs)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(specs); i++) {
        PyObject *pair = PyList_GET_ITEM(specs, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "tracejit: a spec is a (tuple shape, numpy dtype) pair");
            return -1;
        }
        total += PyTuple_GET_SIZE(PyTuple_GET_ITEM(pair, 0));
    }
    return total;
}

static int parse_pack(EntryObject *self, PyObject *pack)
{
    if (PyUnicode_Check(pack)) {
        if (PyUnicode_CompareWithASCIIString(pack, "leaf") == 0 && self->n_out == 1)
            self->pack = PACK_LEAF;
        else if (PyUnicode_CompareWithASCIIString(pack, "tuple") == 0)
            self->pack = PACK_TUPLE;
        else if (PyUnicode_CompareWithASCIIString(pack, "list") == 0)
            self->pack = PACK_LIST;
        else {
            PyErr_Format(PyExc_ValueError, "tracejit: pack is 'leaf' (one output), 'tuple', 'list' or a callable, "
                         "not %R", pack);
            return -1;
        }
        return 0;
    }
    if (!PyCallable_Check(pack)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: pack is 'leaf', 'tuple', 'list' or a callable");
        return -1;
    }
    self->pack = PACK_CALL;
    Py_INCREF(pack);
    self->unflatten = pack;
    return 0;
}

/* layout: None (every positional argument is one input array), or a tuple of layout nodes, one
 * per positional argument. A node is None (one array), (LAYOUT_DICT, keys, nodes) for a dict of
 * exactly those str keys (in the order pytree.flatten gives, sorted), (LAYOUT_TUPLE, nodes) or
 * (LAYOUT_LIST, nodes) for a tuple or list of that length, (LAYOUT_NAMEDTUPLE, class, nodes) for
 * an instance of exactly that tuple subclass (a namedtuple), or (LAYOUT_NONE,) for None.
 * keywords: None, or a LAYOUT_DICT node for the keyword arguments (then layout is a tuple). */
enum { LAYOUT_DICT, LAYOUT_TUPLE, LAYOUT_LIST, LAYOUT_NONE, LAYOUT_NAMEDTUPLE };

static int layout_tag(PyObject *node)
{
    return (int)PyLong_AsLong(PyTuple_GET_ITEM(node, 0));
}

/* Check a node's shape (once, at Entry creation: matching trusts it); add its leaves to *leaves. */
static int check_layout_node(PyObject *node, Py_ssize_t *leaves, int depth)
{
    if (node == Py_None) {
        *leaves += 1;
        return 0;
    }
    if (depth > 32 || !PyTuple_Check(node) || PyTuple_GET_SIZE(node) < 1 || !PyLong_Check(PyTuple_GET_ITEM(node, 0)))
        goto bad;
    int tag = layout_tag(node);
    if (tag == LAYOUT_NONE)
        return PyTuple_GET_SIZE(node) == 1 ? 0 : (PyErr_SetString(PyExc_ValueError, "tracejit: bad layout"), -1);
    PyObject *keys = NULL, *children;
    if (tag == LAYOUT_DICT && PyTuple_GET_SIZE(node) == 3) {
        keys = PyTuple_GET_ITEM(node, 1);
        children = PyTuple_GET_ITEM(node, 2);
    } else if (tag == LAYOUT_NAMEDTUPLE && PyTuple_GET_SIZE(node) == 3) {
        PyObject *cls = PyTuple_GET_ITEM(node, 1);
        if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type))
            goto bad;
        children = PyTuple_GET_ITEM(node, 2);
    } else if ((tag == LAYOUT_TUPLE || tag == LAYOUT_LIST) && PyTuple_GET_SIZE(node) == 2) {
        children = PyTuple_GET_ITEM(node, 1);
    } else {
        goto bad;
    }
    if (!PyTuple_Check(children) || (keys != NULL && (!PyTuple_Check(keys) ||
                                                      PyTuple_GET_SIZE(keys) != PyTuple_GET_SIZE(children))))
        goto bad;
    for (Py_ssize_t k = 0; keys != NULL && k < PyTuple_GET_SIZE(keys); k++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(keys, k)))
            goto bad;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(children); k++)
        if (check_layout_node(PyTuple_GET_ITEM(children, k), leaves, depth + 1) < 0)
            return -1;
    return 0;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "tracejit: a layout node is None, (DICT, str keys, nodes), (TUPLE, "
                        "nodes), (LIST, nodes), (NAMEDTUPLE, tuple subclass, nodes) or (NONE,)");
    return -1;
}

static int parse_layout(EntryObject *self, PyObject *layout, PyObject *keywords)
{
    if (layout == Py_None && keywords == Py_None)
        return 0;
    Py_ssize_t leaves = 0;
    if (!PyTuple_Check(layout)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: layout is None or a tuple of layout nodes (not None "
                        "when there are keywords)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(layout); i++)
        if (check_layout_node(PyTuple_GET_ITEM(layout, i), &leaves, 0) < 0)
            return -1;
    if (keywords != Py_None) {  /* leaves follow the positional ones, keys sorted: as pytree flattens a call */
        if (check_layout_node(keywords, &leaves, 0) < 0)
            return -1;
        if (layout_tag(keywords) != LAYOUT_DICT) {
            PyErr_SetString(PyExc_ValueError, "tracejit: keywords is None or a (DICT, str keys, nodes) layout node");
            return -1;
        }
    }
    if (leaves != self->n_in) {
        PyErr_SetString(PyExc_ValueError, "tracejit: the layout's leaves do not match the inputs");
        return -1;
    }
    Py_INCREF(layout);
    self->layout = layout;
    if (keywords != Py_None) {
        Py_INCREF(keywords);
        self->keywords = keywords;
    }
    return 0;
}

/* python_floats: indices of inputs passed as Python floats; each is a 0-d float64 or float32 input. */
static int parse_python_floats(EntryObject *self, PyObject *python_floats)
{
    for (Py_ssize_t i = 0; python_floats != NULL && i < PyTuple_GET_SIZE(python_floats); i++) {
        Py_ssize_t n = PyNumber_AsSsize_t(PyTuple_GET_ITEM(python_floats, i), PyExc_IndexError);
        if (n == -1 && PyErr_Occurred())
            return -1;
        if (n < 0 || n >= self->n_in || self->specs[n].ndim != 0 ||
            (self->specs[n].type_num != NPY_DOUBLE && self->specs[n].type_num != NPY_FLOAT)) {
            PyErr_SetString(PyExc_ValueError, "tracejit: a Python float input is a 0-d float64 or float32 input");
            return -1;
        }
        self->specs[n].python_float = 1;
    }
    return 0;
}

/* python_ints: (index, lo, hi) of inputs passed as Python ints; each is a 0-d int64 input, and a value
 * outside [lo, hi] (what the integer dtypes the program converts it to can hold) is left to the
 * Python path, which raises numpy's OverflowError. */
static int parse_python_ints(EntryObject *self, PyObject *python_ints)
{
    for (Py_ssize_t i = 0; python_ints != NULL && i < PyTuple_GET_SIZE(python_ints); i++) {
        Py_ssize_t n;
        long long lo, hi;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(python_ints, i), "nLL", &n, &lo, &hi))
            return -1;
        if (n < 0 || n >= self->n_in || self->specs[n].ndim != 0 || self->specs[n].type_num != NPY_INT64 || lo > hi) {
            PyErr_SetString(PyExc_ValueError, "tracejit: a Python int input is a 0-d int64 input with lo <= hi");
            return -1;
        }
        self->specs[n].python_int = 1;
        self->specs[n].int_lo = lo;
        self->specs[n].int_hi = hi;
    }
    return 0;
}

/* Entry(main, hidden, bad_index, inputs, outputs, pack, on_error, lock, release_gil, owner[, layout,
 *       python_floats, keywords, python_ints])
 *   main, bad_index: addresses (int); hidden: addresses of the constants and the workspace;
 *   inputs, outputs: lists of (shape tuple, numpy dtype). */
static PyObject *Entry_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"main", "hidden", "bad_index", "inputs", "outputs", "pack", "on_error", "lock",
                               "release_gil", "owner", "layout", "python_floats", "keywords", "python_ints", NULL};
    PyObject *main, *hidden, *bad_index, *inputs, *outputs, *pack, *on_error, *lock, *owner;
    PyObject *layout = Py_None, *python_floats = NULL, *keyword_layout = Py_None, *python_ints = NULL;
    int release_gil;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OO!O!OOOpO|OO!OO!:Entry", keywords, &main, &PyTuple_Type,
                                     &hidden, &bad_index, &PyList_Type, &inputs, &PyList_Type, &outputs, &pack,
                                     &on_error, &lock, &release_gil, &owner, &layout, &PyTuple_Type, &python_floats,
                                     &keyword_layout, &PyTuple_Type, &python_ints))
        return NULL;
    Py_ssize_t n_in = PyList_GET_SIZE(inputs), n_out = PyList_GET_SIZE(outputs), n_hidden = PyTuple_GET_SIZE(hidden);
    if (n_in + n_out + n_hidden + 1 > MAX_POINTERS) {
        PyErr_Format(PyExc_ValueError, "tracejit: the dispatcher calls programs of at most %d pointers", MAX_POINTERS);
        return NULL;
    }
    if (lock != Py_None && !PyObject_TypeCheck(lock, &LockType)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: lock is a tracejit._dispatch.Lock or None");
        return NULL;
    }
    if (!PyCallable_Check(on_error)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: on_error must be callable");
        return NULL;
    }
    Py_ssize_t ndim_in = total_ndim(inputs), ndim_out = total_ndim(outputs);
    if (ndim_in < 0 || ndim_out < 0)
        return NULL;

    EntryObject *self = (EntryObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->n_in = (int)n_in;
    self->n_out = (int)n_out;
    self->n_hidden = (int)n_hidden;
    self->release_gil = release_gil;
    Py_INCREF(on_error);
    self->on_error = on_error;
    Py_INCREF(owner);
    self->owner = owner;
    if (lock != Py_None) {
        Py_INCREF(lock);
        self->lock = (LockObject *)lock;
    }
    self->specs = PyMem_Calloc((size_t)(n_in + n_out) + 1, sizeof(Spec));
    self->dims = PyMem_Calloc((size_t)(ndim_in + ndim_out) + 1, sizeof(npy_intp));
    self->hidden = PyMem_Calloc((size_t)n_hidden + 1, sizeof(void *));
    if (self->specs == NULL || self->dims == NULL || self->hidden == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    npy_intp *dims = self->dims;
    for (Py_ssize_t i = 0; i < n_in; i++)
        if (parse_spec(PyList_GET_ITEM(inputs, i), &self->specs[i], &dims) < 0)
            goto fail;
    for (Py_ssize_t i = 0; i < n_out; i++) {
        Spec *spec = &self->specs[n_in + i];
        if (parse_spec(PyList_GET_ITEM(outputs, i), spec, &dims) < 0)
            goto fail;
        spec->pooled = pooled_size(spec->descr, spec->ndim, spec->dims);
    }
    for (Py_ssize_t i = 0; i < n_hidden; i++)
        if ((self->hidden[i] = address_of(PyTuple_GET_ITEM(hidden, i))) == NULL)
            goto fail;
    if (parse_layout(self, layout, keyword_layout) < 0 || parse_python_floats(self, python_floats) < 0 ||
        parse_python_ints(self, python_ints) < 0)
        goto fail;
    if ((self->bad_index = address_of(bad_index)) == NULL)
        goto fail;
    void *fn = address_of(main);
    if (fn == NULL)
        goto fail;
    self->main = (tj_main_fn)fn;
    if (parse_pack(self, pack) < 0)
        goto fail;
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static int Entry_traverse(EntryObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->unflatten);
    Py_VISIT(self->on_error);
    Py_VISIT(self->lock);
    Py_VISIT(self->owner);
    Py_VISIT(self->layout);
    Py_VISIT(self->keywords);
    return 0;
}

static int Entry_clear(EntryObject *self)
{
    Py_CLEAR(self->unflatten);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->layout);
    Py_CLEAR(self->keywords);
    return 0;
}

static void Entry_dealloc(EntryObject *self)
{
    PyObject_GC_UnTrack(self);
    Entry_clear(self);
    if (self->specs != NULL)
        for (int i = 0; i < self->n_in + self->n_out; i++)
            Py_XDECREF(self->specs[i].descr);
    PyMem_Free(self->specs);
    PyMem_Free(self->dims);
    PyMem_Free(self->hidden);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracejit._dispatch.Entry",
    .tp_doc = "One compiled signature of a jitted function, as the C dispatcher calls it.",
    .tp_basicsize = sizeof(EntryObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Entry_new,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_traverse = (traverseproc)Entry_traverse,
    .tp_clear = (inquiry)Entry_clear,
};

/* Whether `leaf` is a numpy scalar (np.float32(0.1), say) of this type, one of those tracejit
 * compiles for: it is passed like a 0-d array of its dtype (entry_run copies its value). */
static int numpy_scalar_of(PyObject *leaf, int type_num)
{
    switch (type_num) {
    case NPY_BOOL: return PyArray_IsScalar(leaf, Bool);
    case NPY_INT32: return Py_IS_TYPE(leaf, &PyInt32ArrType_Type);
    case NPY_INT64: return Py_IS_TYPE(leaf, &PyInt64ArrType_Type);
    case NPY_FLOAT: return Py_IS_TYPE(leaf, &PyFloat32ArrType_Type);
    case NPY_DOUBLE: return Py_IS_TYPE(leaf, &PyFloat64ArrType_Type);
    default: return 0;
    }
}

/* Whether `leaf` is exactly this input: a plain ndarray, C-contiguous, aligned, native byte order,
 * of the compiled dtype and shape; or a Python float where the program takes one. */
static int leaf_matches(const Spec *spec, PyObject *leaf)
{
    if (spec->python_float)
        return PyFloat_CheckExact(leaf);
    if (spec->python_int) {  /* exact int (a bool is not), within what the program's conversions hold */
        if (!PyLong_CheckExact(leaf))
            return 0;
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(leaf, &overflow);
        return !overflow && value >= spec->int_lo && value <= spec->int_hi;
    }
    if (spec->ndim == 0 && numpy_scalar_of(leaf, spec->type_num))
        return 1;
    if (!PyArray_CheckExact(leaf))
        return 0;
    PyArrayObject *array = (PyArrayObject *)leaf;
    if (!PyArray_CHKFLAGS(array, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED) || PyArray_NDIM(array) != spec->ndim)
        return 0;
    PyArray_Descr *descr = PyArray_DESCR(array);
    if (descr != spec->descr && (descr->type_num != spec->type_num || !PyArray_ISNBO(descr->byteorder)))
        return 0;
    return !spec->ndim || memcmp(PyArray_DIMS(array), spec->dims, (size_t)spec->ndim * sizeof(npy_intp)) == 0;
}

/* Whether every key of `dict` is an exact str: then looking our str keys up in it compares str
 * with str only, and runs no Python code (which could change the dispatcher's table meanwhile). */
static int only_str_keys(PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value))
        if (!PyUnicode_CheckExact(key))
            return 0;
    return 1;
}

/* Collect the leaves of `obj` as `node` lays them out (borrowed, into leaves[*n...]); 0 if `obj`
 * has another structure. Only exact dicts, tuples and lists: their items are read in C, and no
 * Python code runs (str keys compare with str keys only). */
static int match_node(PyObject *node, PyObject *obj, PyObject **leaves, int *n, int max)
{
    if (node == Py_None) {
        if (*n >= max)
            return 0;
        leaves[(*n)++] = obj;
        return 1;
    }
    int tag = layout_tag(node);
    if (tag == LAYOUT_NONE)
        return obj == Py_None;
    PyObject *children = PyTuple_GET_ITEM(node, tag == LAYOUT_DICT || tag == LAYOUT_NAMEDTUPLE ? 2 : 1);
    Py_ssize_t size = PyTuple_GET_SIZE(children);
    if (tag == LAYOUT_DICT) {
        PyObject *keys = PyTuple_GET_ITEM(node, 1);
        if (!PyDict_CheckExact(obj) || PyDict_GET_SIZE(obj) != size || !only_str_keys(obj))
            return 0;
        for (Py_ssize_t k = 0; k < size; k++) {
            PyObject *value = PyDict_GetItemWithError(obj, PyTuple_GET_ITEM(keys, k));
            if (value == NULL) {
                PyErr_Clear();
                return 0;
            }
            if (!match_node(PyTuple_GET_ITEM(children, k), value, leaves, n, max))
                return 0;
        }
        return 1;
    }
    if (tag == LAYOUT_NAMEDTUPLE && Py_TYPE(obj) != (PyTypeObject *)PyTuple_GET_ITEM(node, 1))
        return 0;  /* exactly that class: its items are the tuple's, read without running its code */
    int is_tuple = tag == LAYOUT_TUPLE || tag == LAYOUT_NAMEDTUPLE;
    if (is_tuple ? (tag == LAYOUT_TUPLE && !PyTuple_CheckExact(obj)) || PyTuple_GET_SIZE(obj) != size
                 : !PyList_CheckExact(obj) || PyList_GET_SIZE(obj) != size)
        return 0;
    for (Py_ssize_t k = 0; k < size; k++)
        if (!match_node(PyTuple_GET_ITEM(children, k), is_tuple ? PyTuple_GET_ITEM(obj, k) : PyList_GET_ITEM(obj, k),
                        leaves, n, max))
            return 0;
    return 1;
}

/* The entry's inputs, in order, if the arguments have exactly its structure and leaves (borrowed
 * references into `leaves`); 0 otherwise. Anything else goes to the Python path. `kwargs`: NULL
 * or a non-empty dict of the keyword arguments. */
static int entry_matches(const EntryObject *entry, PyObject *const *args, Py_ssize_t nargs, PyObject *kwargs,
                         PyObject **leaves)
{
    int n = 0;
    if ((kwargs != NULL) != (entry->keywords != NULL))
        return 0;
    if (entry->layout == NULL) {
        if (nargs != entry->n_in)
            return 0;
        for (; n < nargs; n++)
            leaves[n] = args[n];
    } else {
        if (nargs != PyTuple_GET_SIZE(entry->layout))
            return 0;
        for (Py_ssize_t i = 0; i < nargs; i++)
            if (!match_node(PyTuple_GET_ITEM(entry->layout, i), args[i], leaves, &n, entry->n_in))
                return 0;
        if (kwargs != NULL && !match_node(entry->keywords, kwargs, leaves, &n, entry->n_in))
            return 0;
        if (n != entry->n_in)
            return 0;
    }
    for (int i = 0; i < n; i++)
        if (!leaf_matches(&entry->specs[i], leaves[i]))
            return 0;
    return 1;
}

static void release_all(PyObject **objects, int n)
{
    for (int i = 0; i < n; i++)
        Py_DECREF(objects[i]);
}

/* The outputs, already checked for success, in the user's structure. Steals `outs`. */
static PyObject *pack_outputs(const EntryObject *entry, PyObject **outs)
{
    int n = entry->n_out;
    if (entry->pack == PACK_LEAF)
        return outs[0];
    PyObject *packed = entry->pack == PACK_TUPLE ? PyTuple_New(n) : PyList_New(n);
    if (packed == NULL) {
        release_all(outs, n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (entry->pack == PACK_TUPLE)
            PyTuple_SET_ITEM(packed, i, outs[i]);
        else
            PyList_SET_ITEM(packed, i, outs[i]);
    }
    if (entry->pack != PACK_CALL)
        return packed;
    PyObject *tree = PyObject_CallOneArg(entry->unflatten, packed);
    Py_DECREF(packed);
    return tree;
}

/* Run a matched entry: allocate the outputs, call tj_main under the workspace lock, pack. The
 * caller holds a reference to each input. */
static PyObject *entry_run(const EntryObject *entry, PyObject *const *inputs)
{
    void *pointers[MAX_POINTERS];
    PyObject *outs[MAX_POINTERS];
    union { double f8; float f4; int64_t i8; } scalars[MAX_POINTERS];  /* Python floats, numpy scalars */
    int n_in = entry->n_in, n_out = entry->n_out, n = 0;

    for (int i = 0; i < n_in; i++) {
        const Spec *spec = &entry->specs[i];
        if (spec->python_float) {  /* as numpy converts it: exact in float64, rounded to nearest in float32 */
            double value = PyFloat_AS_DOUBLE(inputs[i]);
            if (spec->type_num == NPY_DOUBLE)
                scalars[i].f8 = value;
            else
                scalars[i].f4 = (float)value;
            pointers[n++] = &scalars[i];
        } else if (spec->python_int) {  /* checked in range by leaf_matches */
            scalars[i].i8 = PyLong_AsLongLong(inputs[i]);
            pointers[n++] = &scalars[i];
        } else if (!PyArray_Check(inputs[i])) {  /* a numpy scalar of the input's own type */
            PyArray_ScalarAsCtype(inputs[i], &scalars[i]);
            pointers[n++] = &scalars[i];
        } else {
            pointers[n++] = PyArray_DATA((PyArrayObject *)inputs[i]);
        }
    }
    for (int i = 0; i < n_out; i++) {
        const Spec *spec = &entry->specs[n_in + i];
        Py_INCREF(spec->descr);  /* new_output steals a reference, even when it fails */
        outs[i] = new_output(spec->descr, spec->ndim, spec->dims, spec->pooled);
        if (outs[i] == NULL) {
            release_all(outs, i);
            return NULL;
        }
        pointers[n++] = PyArray_DATA((PyArrayObject *)outs[i]);
    }
    for (int i = 0; i < entry->n_hidden; i++)
        pointers[n++] = entry->hidden[i];
    pointers[n++] = entry->bad_index;

    int status;
    int64_t bad = 0;
    if (entry->lock != NULL)
        lock_take(entry->lock);
    if (entry->release_gil) {
        Py_BEGIN_ALLOW_THREADS
        status = call_tj_main(entry->main, pointers, n);
        Py_END_ALLOW_THREADS
    } else {
        status = call_tj_main(entry->main, pointers, n);
    }
    if (status != 0)
        bad = *entry->bad_index;  /* read under the lock: the next call may overwrite it */
    if (entry->lock != NULL)
        lock_give(entry->lock);

    if (status != 0) {
        release_all(outs, n_out);
        PyObject *result = PyObject_CallFunction(entry->on_error, "iL", status, (long long)bad);
        if (result != NULL) {  /* on_error always raises; be safe if it did not */
            Py_DECREF(result);
            PyErr_Format(PyExc_RuntimeError, "tracejit: the compiled program failed with status %d", status);
        }
        return NULL;
    }
    return pack_outputs(entry, outs);
}

/* ---------------------------------------------------------------------------------------------
 * Tracing: inside a trace a jitted function is inlined (the Python path runs the user's function
 * on the tracers, or eagerly on concrete arrays). tracejit.trace.tracing keeps the stack of
 * active traces in a threading.local; api.py hands it over with set_trace_state().
 */
static PyObject *trace_state;  /* that threading.local, or NULL */
static PyObject *str_stack;    /* "stack" */
static PyObject *str_call_python;

/* 1 when a trace is active in this thread (or when we cannot tell: the Python path decides). */
static int tracing_now(void)
{
    if (trace_state == NULL)
        return 0;
    PyObject *stack;
#if PY_VERSION_HEX >= 0x030D0000
    int found = PyObject_GetOptionalAttr(trace_state, str_stack, &stack);
#else
    int found = _PyObject_LookupAttr(trace_state, str_stack, &stack);
#endif
    if (found < 0) {
        PyErr_Clear();
        return 1;
    }
    if (found == 0)
        return 0;
    int active = PyList_CheckExact(stack) ? PyList_GET_SIZE(stack) > 0 : 1;
    Py_DECREF(stack);
    return active;
}

static PyObject *set_trace_state(PyObject *Py_UNUSED(module), PyObject *state)
{
    Py_XDECREF(trace_state);
    trace_state = state == Py_None ? NULL : state;
    Py_XINCREF(trace_state);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Dispatcher: the base class of Jitted.
 */
typedef struct {
    PyObject_HEAD
    int n_entries;
    EntryObject *table[TABLE_SIZE];  /* most recently used first */
} DispatcherObject;

static PyObject *Dispatcher_call(DispatcherObject *self, PyObject *args, PyObject *kwargs)
{
    /* tracing_now() first: it may allocate, and so run the GC and any code, which may change the table */
    if (self->n_entries > 0 && !tracing_now()) {
        PyObject *const *items = PySequence_Fast_ITEMS(args);
        Py_ssize_t nargs = PyTuple_GET_SIZE(args);
        if (kwargs != NULL && PyDict_GET_SIZE(kwargs) == 0)
            kwargs = NULL;
        PyObject *leaves[MAX_POINTERS];
        for (int i = 0; i < self->n_entries; i++) {
            EntryObject *entry = self->table[i];
            if (!entry_matches(entry, items, nargs, kwargs, leaves))
                continue;
            if (i > 0) {  /* move to the front: a loop calling one signature matches at once */
                memmove(&self->table[1], &self->table[0], (size_t)i * sizeof(EntryObject *));
                self->table[0] = entry;
            }
            /* Owned for the call: the table may change (GC, another thread's add), and code the GC
             * runs while outputs are allocated could take a leaf out of its dict. */
            Py_INCREF(entry);
            for (int k = 0; k < entry->n_in; k++)
                Py_INCREF(leaves[k]);
            PyObject *result = entry_run(entry, leaves);
            for (int k = 0; k < entry->n_in; k++)
                Py_DECREF(leaves[k]);
            Py_DECREF(entry);
            return result;
        }
    }
    PyObject *slow = PyObject_GetAttr((PyObject *)self, str_call_python);
    if (slow == NULL)
        return NULL;
    PyObject *result = PyObject_Call(slow, args, kwargs);
    Py_DECREF(slow);
    return result;
}

/* _fast_add(entry): put `entry` first in the table (moving it if present, dropping the least
 * recently used one if full). */
static PyObject *Dispatcher_fast_add(DispatcherObject *self, PyObject *arg)
{
    if (!PyObject_TypeCheck(arg, &EntryType)) {
        PyErr_SetString(PyExc_TypeError, "tracejit: _fast_add takes a tracejit._dispatch.Entry");
        return NULL;
    }
    EntryObject *entry = (EntryObject *)arg;
    if (self->n_entries > 0 && self->table[0] == entry)
        Py_RETURN_NONE;
    int at = 0;
    while (at < self->n_entries && self->table[at] != entry)
        at++;
    EntryObject *dropped = NULL;
    if (at == self->n_entries) {  /* new: make room */
        Py_INCREF(entry);
        if (self->n_entries == TABLE_SIZE)
            dropped = self->table[--self->n_entries];
        at = self->n_entries++;
    }
    memmove(&self->table[1], &self->table[0], (size_t)at * sizeof(EntryObject *));
    self->table[0] = entry;
    Py_XDECREF(dropped);  /* last: its deallocation may run arbitrary code */
    Py_RETURN_NONE;
}

static int Dispatcher_clear(DispatcherObject *self)
{
    while (self->n_entries > 0) {
        EntryObject *entry = self->table[--self->n_entries];
        self->table[self->n_entries] = NULL;
        Py_DECREF(entry);
    }
    return 0;
}

static PyObject *Dispatcher_fast_clear(DispatcherObject *self, PyObject *Py_UNUSED(ignored))
{
    Dispatcher_clear(self);
    Py_RETURN_NONE;
}

static PyObject *Dispatcher_fast_entries(DispatcherObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *entries = PyTuple_New(self->n_entries);
    if (entries == NULL)
        return NULL;
    for (int i = 0; i < self->n_entries; i++) {
        Py_INCREF(self->table[i]);
        PyTuple_SET_ITEM(entries, i, (PyObject *)self->table[i]);
    }
    return entries;
}

static int Dispatcher_traverse(DispatcherObject *self, visitproc visit, void *arg)
{
    for (int i = 0; i < self->n_entries; i++)
        Py_VISIT(self->table[i]);
    return 0;
}

static void Dispatcher_dealloc(DispatcherObject *self)
{
    PyObject_GC_UnTrack(self);
    Dispatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Dispatcher_methods[] = {
    {"_fast_add", (PyCFunction)Dispatcher_fast_add, METH_O, "Put an Entry first in the fast table."},
    {"_fast_clear", (PyCFunction)Dispatcher_fast_clear, METH_NOARGS, "Empty the fast table."},
    {"_fast_entries", (PyCFunction)Dispatcher_fast_entries, METH_NOARGS, "The fast table, most recent first."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DispatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracejit._dispatch.Dispatcher",
    .tp_doc = "Base class of Jitted: calls matching a compiled signature run in C, others call _call_python.",
    .tp_basicsize = sizeof(DispatcherObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_traverse = (traverseproc)Dispatcher_traverse,
    .tp_clear = (inquiry)Dispatcher_clear,
    .tp_call = (ternaryfunc)Dispatcher_call,
    .tp_methods = Dispatcher_methods,
};

/* ---------------------------------------------------------------------------------------------
 * Module.
 */
static PyMethodDef module_methods[] = {
    {"set_trace_state", set_trace_state, METH_O,
     "Hand over the threading.local whose `stack` attribute lists the active traces (None: forget it)."},
    {"pooled_empty", pooled_empty, METH_VARARGS,
     "pooled_empty(shape, dtype): np.empty(shape, dtype), its data from the output pool when large."},
    {"pool_configure", pool_configure, METH_O,
     "pool_configure(max_bytes): cap the idle bytes the output pool keeps (0: off); returns the old cap."},
    {"pool_clear", pool_clear, METH_NOARGS, "Free every idle block of the output pool; returns the bytes freed."},
    {"pool_stats", pool_stats, METH_NOARGS,
     "The output pool: max_bytes, cached_bytes, cached_blocks, hits and misses (pooled-size requests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef dispatch_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tracejit._dispatch",
    .m_doc = "The C fast path of jitted calls (see csrc/dispatch.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__dispatch(void)
{
    import_array();  /* returns NULL with ImportError set when numpy's C API does not match */
    str_stack = PyUnicode_InternFromString("stack");
    str_call_python = PyUnicode_InternFromString("_call_python");
    if (str_stack == NULL || str_call_python == NULL)
        return NULL;
    if (PyType_Ready(&LockType) < 0 || PyType_Ready(&EntryType) < 0 || PyType_Ready(&DispatcherType) < 0)
        return NULL;
    if (pool_init() < 0)
        return NULL;
    PyObject *module = PyModule_Create(&dispatch_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Lock", (PyObject *)&LockType) < 0 ||
        PyModule_AddObjectRef(module, "Entry", (PyObject *)&EntryType) < 0 ||
        PyModule_AddObjectRef(module, "Dispatcher", (PyObject *)&DispatcherType) < 0 ||
        PyModule_AddIntConstant(module, "MAX_POINTERS", MAX_POINTERS) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_DICT", LAYOUT_DICT) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_TUPLE", LAYOUT_TUPLE) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_LIST", LAYOUT_LIST) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_NONE", LAYOUT_NONE) < 0 ||
        PyModule_AddIntConstant(module, "LAYOUT_NAMEDTUPLE", LAYOUT_NAMEDTUPLE) < 0 ||
        PyModule_AddIntConstant(module, "TABLE_SIZE", TABLE_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "POOL_MIN_BYTES", (long)POOL_MIN_BYTES) < 0 ||
        PyModule_AddIntConstant(module, "POOL_MAX_BLOCKS", POOL_MAX_BLOCKS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* ---------------------------------------------------------------------------------------------
 * Calling tj_main with n pointer arguments.
 *
 * C cannot build a call of run-time arity, so we cast the function pointer to the type with
 * exactly n `void *` parameters: TJ_CALL(n) below, for every n up to MAX_POINTERS. The generated
 * prototype has typed pointers (`const float *`, ..., `int64_t *`); every pointer type is passed
 * the same way in the C ABIs we run on, which is also what cffi relies on, since the cdef it
 * calls through declares them all `void *` (and `int64_t *` for the last). Programs with more
 * parameters than this get no Entry and keep the Python path.
 */
#define TJ_T1 void *
#define TJ_T2 TJ_T1, void *
#define TJ_T3 TJ_T2, void *
#define TJ_T4 TJ_T3, void *
#define TJ_T5 TJ_T4, void *
#define TJ_T6 TJ_T5, void *
#define TJ_T7 TJ_T6, void *
#define TJ_T8 TJ_T7, void *
#define TJ_T9 TJ_T8, void *
#define TJ_T10 TJ_T9, void *
#define TJ_T11 TJ_T10, void *
#define TJ_T12 TJ_T11, void *
#define TJ_T13 TJ_T12, void *
#define TJ_T14 TJ_T13, void *
#define TJ_T15 TJ_T14, void *
#define TJ_T16 TJ_T15, void *
#define TJ_T17 TJ_T16, void *
#define TJ_T18 TJ_T17, void *
#define TJ_T19 TJ_T18, void *
#define TJ_T20 TJ_T19, void *
#define TJ_T21 TJ_T20, void *
#define TJ_T22 TJ_T21, void *
#define TJ_T23 TJ_T22, void *
#define TJ_T24 TJ_T23, void *
#define TJ_T25 TJ_T24, void *
#define TJ_T26 TJ_T25, void *
#define TJ_T27 TJ_T26, void *
#define TJ_T28 TJ_T27, void *
#define TJ_T29 TJ_T28, void *
#define TJ_T30 TJ_T29, void *
#define TJ_T31 TJ_T30, void *
#define TJ_T32 TJ_T31, void *
#define TJ_T33 TJ_T32, void *
#define TJ_T34 TJ_T33, void *
#define TJ_T35 TJ_T34, void *
#define TJ_T36 TJ_T35, void *
#define TJ_T37 TJ_T36, void *
#define TJ_T38 TJ_T37, void *
#define TJ_T39 TJ_T38, void *
#define TJ_T40 TJ_T39, void *
#define TJ_T41 TJ_T40, void *
#define TJ_T42 TJ_T41, void *
#define TJ_T43 TJ_T42, void *
#define TJ_T44 TJ_T43, void *
#define TJ_T45 TJ_T44, void *
#define TJ_T46 TJ_T45, void *
#define TJ_T47 TJ_T46, void *
#define TJ_T48 TJ_T47, void *
#define TJ_T49 TJ_T48, void *
#define TJ_T50 TJ_T49, void *
#define TJ_T51 TJ_T50, void *
#define TJ_T52 TJ_T51, void *
#define TJ_T53 TJ_T52, void *
#define TJ_T54 TJ_T53, void *
#define TJ_T55 TJ_T54, void *
#define TJ_T56 TJ_T55, void *
#define TJ_T57 TJ_T56, void *
#define TJ_T58 TJ_T57, void *
#define TJ_T59 TJ_T58, void *
#define TJ_T60 TJ_T59, void *
#define TJ_T61 TJ_T60, void *
#define TJ_T62 TJ_T61, void *
#define TJ_T63 TJ_T62, void *
#define TJ_T64 TJ_T63, void *

#define TJ_A1 p[0]
#define TJ_A2 TJ_A1, p[1]
#define TJ_A3 TJ_A2, p[2]
#define TJ_A4 TJ_A3, p[3]
#define TJ_A5 TJ_A4, p[4]
#define TJ_A6 TJ_A5, p[5]
#define TJ_A7 TJ_A6, p[6]
#define TJ_A8 TJ_A7, p[7]
#define TJ_A9 TJ_A8, p[8]
#define TJ_A10 TJ_A9, p[9]
#define TJ_A11 TJ_A10, p[10]
#define TJ_A12 TJ_A11, p[11]
#define TJ_A13 TJ_A12, p[12]
#define TJ_A14 TJ_A13, p[13]
#define TJ_A15 TJ_A14, p[14]
#define TJ_A16 TJ_A15, p[15]
#define TJ_A17 TJ_A16, p[16]
#define TJ_A18 TJ_A17, p[17]
#define TJ_A19 TJ_A18, p[18]
#define TJ_A20 TJ_A19, p[19]
#define TJ_A21 TJ_A20, p[20]
#define TJ_A22 TJ_A21, p[21]
#define TJ_A23 TJ_A22, p[22]
#define TJ_A24 TJ_A23, p[23]
#define TJ_A25 TJ_A24, p[24]
#define TJ_A26 TJ_A25, p[25]
#define TJ_A27 TJ_A26, p[26]
#define TJ_A28 TJ_A27, p[27]
#define TJ_A29 TJ_A28, p[28]
#define TJ_A30 TJ_A29, p[29]
#define TJ_A31 TJ_A30, p[30]
#define TJ_A32 TJ_A31, p[31]
#define TJ_A33 TJ_A32, p[32]
#define TJ_A34 TJ_A33, p[33]
#define TJ_A35 TJ_A34, p[34]
#define TJ_A36 TJ_A35, p[35]
#define TJ_A37 TJ_A36, p[36]
#define TJ_A38 TJ_A37, p[37]
#define TJ_A39 TJ_A38, p[38]
#define TJ_A40 TJ_A39, p[39]
#define TJ_A41 TJ_A40, p[40]
#define TJ_A42 TJ_A41, p[41]
#define TJ_A43 TJ_A42, p[42]
#define TJ_A44 TJ_A43, p[43]
#define TJ_A45 TJ_A44, p[44]
#define TJ_A46 TJ_A45, p[45]
#define TJ_A47 TJ_A46, p[46]
#define TJ_A48 TJ_A47, p[47]
#define TJ_A49 TJ_A48, p[48]
#define TJ_A50 TJ_A49, p[49]
#define TJ_A51 TJ_A50, p[50]
#define TJ_A52 TJ_A51, p[51]
#define TJ_A53 TJ_A52, p[52]
#define TJ_A54 TJ_A53, p[53]
#define TJ_A55 TJ_A54, p[54]
#define TJ_A56 TJ_A55, p[55]
#define TJ_A57 TJ_A56, p[56]
#define TJ_A58 TJ_A57, p[57]
#define TJ_A59 TJ_A58, p[58]
#define TJ_A60 TJ_A59, p[59]
#define TJ_A61 TJ_A60, p[60]
#define TJ_A62 TJ_A61, p[61]
#define TJ_A63 TJ_A62, p[62]
#define TJ_A64 TJ_A63, p[63]

#define TJ_CALL(n) case n: return ((int (*)(TJ_T##n))fn)(TJ_A##n);

static int call_tj_main(tj_main_fn fn, void **p, int n)
{
    switch (n) {
    TJ_CALL(1) TJ_CALL(2) TJ_CALL(3) TJ_CALL(4) TJ_CALL(5) TJ_CALL(6) TJ_CALL(7) TJ_CALL(8)
    TJ_CALL(9) TJ_CALL(10) TJ_CALL(11) TJ_CALL(12) TJ_CALL(13) TJ_CALL(14) TJ_CALL(15) TJ_CALL(16)
    TJ_CALL(17) TJ_CALL(18) TJ_CALL(19) TJ_CALL(20) TJ_CALL(21) TJ_CALL(22) TJ_CALL(23) TJ_CALL(24)
    TJ_CALL(25) TJ_CALL(26) TJ_CALL(27) TJ_CALL(28) TJ_CALL(29) TJ_CALL(30) TJ_CALL(31) TJ_CALL(32)
    TJ_CALL(33) TJ_CALL(34) TJ_CALL(35) TJ_CALL(36) TJ_CALL(37) TJ_CALL(38) TJ_CALL(39) TJ_CALL(40)
    TJ_CALL(41) TJ_CALL(42) TJ_CALL(43) TJ_CALL(44) TJ_CALL(45) TJ_CALL(46) TJ_CALL(47) TJ_CALL(48)
    TJ_CALL(49) TJ_CALL(50) TJ_CALL(51) TJ_CALL(52) TJ_CALL(53) TJ_CALL(54) TJ_CALL(55) TJ_CALL(56)
    TJ_CALL(57) TJ_CALL(58) TJ_CALL(59) TJ_CALL(60) TJ_CALL(61) TJ_CALL(62) TJ_CALL(63) TJ_CALL(64)
    default:
        return -1;  /* unreachable: Entry_new refuses more than MAX_POINTERS */
    }
}
