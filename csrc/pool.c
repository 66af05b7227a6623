/* pool.c -- large output buffers reused across calls, for tracejit._dispatch (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Pool: large output buffers reused across calls.
 *
 * A jitted call returning a 40 MB array spends more time on the array's fresh pages than in its
 * kernel: above glibc's mmap threshold (32 MiB at most, even after it adapts) every np.empty is
 * a new mmap, and the kernel faults in and zeroes each page as the loop first writes it (~3.4 ms
 * of W1's ~8 ms at n=10M). So outputs of POOL_MIN_BYTES or more are allocated through a numpy
 * memory handler whose blocks go to a small cache when their array dies; the next call of about
 * that size takes one back with its pages still mapped.
 *
 * numpy records the handler in each array it allocates and frees the data through it whenever,
 * and in whatever thread, the array dies. So the handler is installed only around our own output
 * allocations (set it, allocate, restore the caller's): every other array keeps numpy's own
 * allocator, and ours look like any other (they own their data, have no base, can resize).
 *
 * Every block has a header just before its 64-byte aligned data (the address malloc gave, the
 * usable bytes), so free and realloc need not trust the size numpy passes. Idle blocks are kept,
 * least recently freed first, up to pool.max_bytes in total (TRACEJIT_POOL_BYTES; 0 turns the
 * pool off: outputs come from numpy's allocator) and POOL_MAX_BLOCKS in number: a freed block
 * evicts the oldest ones to fit, and one larger than the cap is freed at once. A request takes
 * the smallest idle block that fits with at most 1/8 to spare.
 *
 * The handler, its capsule and the cache are static and never freed: arrays may die after this
 * module or the interpreter is torn down and still free into them. The mutex is a pthread one,
 * not a Python lock, as numpy may free without the GIL; nothing that needs the GIL, and no
 * malloc or free, runs while it is held. fork() takes it first (pthread_atfork), so the child
 * never inherits it locked; the child keeps the idle blocks, which are mapped there too.
 */
#define POOL_ALIGNMENT 64  /* as codegen/c_program.py ALIGNMENT: loop chunks start vector-aligned */
#define POOL_GRAIN 4096    /* pooled sizes round up to whole pages, so near sizes share blocks */

typedef struct {
    void *raw;        /* what malloc/calloc returned */
    size_t capacity;  /* usable bytes from the data address on */
} BlockHeader;        /* sits just before the data */

static struct {
    pthread_mutex_t mutex;
    size_t max_bytes;                      /* written under the mutex, also read without it */
    size_t cached_bytes;
    int n_cached;
    BlockHeader *cached[POOL_MAX_BLOCKS];  /* idle blocks, least recently freed first */
    unsigned long long hits, misses;       /* pooled-size requests served from the cache or not */
} pool = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static PyObject *pool_capsule;  /* the handler as numpy takes it; one reference kept forever */

static size_t pool_limit(void)
{
    return __atomic_load_n(&pool.max_bytes, __ATOMIC_RELAXED);
}

static void *data_of(BlockHeader *block)
{
    return block + 1;
}

static BlockHeader *header_of(void *data)
{
    return (BlockHeader *)data - 1;
}

/* The bytes a request of `size` gets: pooled sizes round up to POOL_GRAIN. */
static size_t block_capacity(size_t size)
{
    if (size == 0)
        return 1;
    if (size < POOL_MIN_BYTES || size > SIZE_MAX - POOL_GRAIN)
        return size;
    return (size + POOL_GRAIN - 1) / POOL_GRAIN * POOL_GRAIN;
}

static BlockHeader *block_new(size_t capacity, int zeroed)
{
    size_t extra = sizeof(BlockHeader) + POOL_ALIGNMENT - 1;
    if (capacity > SIZE_MAX - extra)
        return NULL;
    void *raw = zeroed ? calloc(1, capacity + extra) : malloc(capacity + extra);
    if (raw == NULL)
        return NULL;
    uintptr_t data = ((uintptr_t)raw + extra) & ~(uintptr_t)(POOL_ALIGNMENT - 1);
    BlockHeader *block = header_of((void *)data);
    block->raw = raw;
    block->capacity = capacity;
    return block;
}

/* Remove cached[i], keeping the order. Under the mutex. */
static BlockHeader *pool_remove(int i)
{
    BlockHeader *block = pool.cached[i];
    pool.cached_bytes -= block->capacity;
    pool.n_cached--;
    memmove(&pool.cached[i], &pool.cached[i + 1], (size_t)(pool.n_cached - i) * sizeof(BlockHeader *));
    return block;
}

/* The smallest idle block of `capacity` to capacity + 1/8, or NULL. */
static BlockHeader *pool_take(size_t capacity)
{
    BlockHeader *block = NULL;
    pthread_mutex_lock(&pool.mutex);
    int best = -1;
    for (int i = 0; i < pool.n_cached; i++) {
        size_t have = pool.cached[i]->capacity;
        if (have >= capacity && have - capacity <= capacity / 8 && (best < 0 || have <= pool.cached[best]->capacity))
            best = i;  /* `<=`: of equal blocks, the most recently freed */
    }
    if (best >= 0) {
        block = pool_remove(best);
        pool.hits++;
    } else {
        pool.misses++;
    }
    pthread_mutex_unlock(&pool.mutex);
    return block;
}

static void free_blocks(BlockHeader **blocks, int n)
{
    for (int i = 0; i < n; i++)
        free(blocks[i]->raw);
}

/* A block whose array died: cached if the pool has room for it (evicting the oldest), else freed.
 * Frees happen after unlocking: unmapping a large block takes a while. */
static void block_release(BlockHeader *block)
{
    if (block->capacity < POOL_MIN_BYTES || block->capacity > pool_limit()) {
        free(block->raw);
        return;
    }
    BlockHeader *evicted[POOL_MAX_BLOCKS + 1];
    int n_evicted = 0;
    pthread_mutex_lock(&pool.mutex);
    while (pool.n_cached > 0 &&
           (pool.n_cached == POOL_MAX_BLOCKS || pool.cached_bytes + block->capacity > pool.max_bytes))
        evicted[n_evicted++] = pool_remove(0);
    if (pool.cached_bytes + block->capacity <= pool.max_bytes) {  /* false if the cap just shrank */
        pool.cached[pool.n_cached++] = block;
        pool.cached_bytes += block->capacity;
    } else {
        evicted[n_evicted++] = block;
    }
    pthread_mutex_unlock(&pool.mutex);
    free_blocks(evicted, n_evicted);
}

/* Free the oldest idle blocks until at most `keep` bytes are idle, and if `max_bytes` is not
 * NULL set the cap to it first; returns the bytes freed. */
static size_t pool_trim(size_t keep, const size_t *max_bytes)
{
    BlockHeader *evicted[POOL_MAX_BLOCKS];
    int n_evicted = 0;
    size_t freed = 0;
    pthread_mutex_lock(&pool.mutex);
    if (max_bytes != NULL)
        __atomic_store_n(&pool.max_bytes, *max_bytes, __ATOMIC_RELAXED);
    while (pool.cached_bytes > keep) {
        evicted[n_evicted] = pool_remove(0);
        freed += evicted[n_evicted++]->capacity;
    }
    pthread_mutex_unlock(&pool.mutex);
    free_blocks(evicted, n_evicted);
    return freed;
}

static void *block_alloc(size_t size, int zeroed)
{
    size_t capacity = block_capacity(size);
    BlockHeader *block = NULL;
    if (capacity >= POOL_MIN_BYTES && pool_limit() > 0)
        block = pool_take(capacity);
    if (block != NULL && zeroed)
        memset(data_of(block), 0, size);
    if (block == NULL)
        block = block_new(capacity, zeroed);
    return block == NULL ? NULL : data_of(block);
}

/* The handler's four functions, as NEP 49 defines them (realloc and calloc as C's). */
static void *pool_malloc(void *Py_UNUSED(ctx), size_t size)
{
    return block_alloc(size, 0);
}

static void *pool_calloc(void *Py_UNUSED(ctx), size_t count, size_t item_size)
{
    size_t size;
    if (__builtin_mul_overflow(count, item_size, &size))
        return NULL;
    return block_alloc(size, 1);
}

static void *pool_realloc(void *Py_UNUSED(ctx), void *data, size_t size)
{
    if (data == NULL)
        return block_alloc(size, 0);
    BlockHeader *block = header_of(data);
    if (size <= block->capacity && size >= block->capacity / 2)
        return data;  /* a small trim (np.fromiter's last step, say) keeps the block */
    void *moved = block_alloc(size, 0);
    if (moved == NULL)
        return NULL;  /* as realloc: the old block stays valid */
    memcpy(moved, data, size < block->capacity ? size : block->capacity);
    block_release(block);
    return moved;
}

static void pool_free(void *Py_UNUSED(ctx), void *data, size_t Py_UNUSED(size))
{
    if (data != NULL)
        block_release(header_of(data));
}

static PyDataMem_Handler pool_handler = {
    "tracejit_output_pool", 1, {NULL, pool_malloc, pool_calloc, pool_realloc, pool_free}};

static void pool_lock_for_fork(void)
{
    pthread_mutex_lock(&pool.mutex);
}

static void pool_unlock_after_fork(void)
{
    pthread_mutex_unlock(&pool.mutex);
}

int pool_init(void)
{
    if (pool_capsule != NULL)
        return 0;
    pool_capsule = PyCapsule_New(&pool_handler, "mem_handler", NULL);
    if (pool_capsule == NULL)
        return -1;
    if (pthread_atfork(pool_lock_for_fork, pool_unlock_after_fork, pool_unlock_after_fork) != 0) {
        PyErr_SetString(PyExc_OSError, "tracejit: pthread_atfork failed");
        return -1;
    }
    return 0;
}

/* Whether an array of this dtype and shape is allocated through the pool (if it is on). */
int pooled_size(PyArray_Descr *descr, int ndim, const npy_intp *dims)
{
    size_t nbytes = (size_t)PyDataType_ELSIZE(descr);
    for (int d = 0; d < ndim; d++)
        if (dims[d] < 0 || __builtin_mul_overflow(nbytes, (size_t)dims[d], &nbytes))
            return 0;  /* numpy will refuse it */
    return nbytes >= POOL_MIN_BYTES;
}

/* A new uninitialized C-contiguous array (steals `descr`), its data from the pool if `pooled` and
 * the pool is on, else from the caller's numpy handler. */
PyObject *new_output(PyArray_Descr *descr, int ndim, npy_intp *dims, int pooled)
{
    PyObject *previous = NULL;
    if (pooled && pool_limit() > 0 && (previous = PyDataMem_SetHandler(pool_capsule)) == NULL) {
        Py_DECREF(descr);
        return NULL;
    }
    PyObject *array = PyArray_NewFromDescr(&PyArray_Type, descr, ndim, dims, NULL, NULL, 0, NULL);
    if (previous == NULL)
        return array;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);  /* a failed allocation's error, kept across the restore */
    PyObject *ours = PyDataMem_SetHandler(previous);
    Py_DECREF(previous);
    if (ours == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        Py_XDECREF(array);
        return NULL;
    }
    Py_DECREF(ours);
    PyErr_Restore(type, value, traceback);
    return array;
}

/* pooled_empty(shape, dtype): np.empty(shape, dtype), from the pool when large (the Python path). */
PyObject *pooled_empty(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyArray_Dims shape = {NULL, 0};
    PyArray_Descr *descr = NULL;
    if (!PyArg_ParseTuple(args, "O&O&:pooled_empty", PyArray_IntpConverter, &shape, PyArray_DescrConverter,
                          &descr)) {
        Py_XDECREF(descr);
        PyDimMem_FREE(shape.ptr);
        return NULL;
    }
    PyObject *array = new_output(descr, shape.len, shape.ptr, pooled_size(descr, shape.len, shape.ptr));
    PyDimMem_FREE(shape.ptr);
    return array;
}

PyObject *pool_configure(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_ssize_t max_bytes = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (max_bytes == -1 && PyErr_Occurred())
        return NULL;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "tracejit: the pool's cap is a byte count >= 0 (0 turns it off)");
        return NULL;
    }
    size_t previous = pool_limit(), limit = (size_t)max_bytes;
    pool_trim(limit, &limit);
    return PyLong_FromSize_t(previous);
}

PyObject *pool_clear(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(pool_trim(0, NULL));
}

PyObject *pool_stats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&pool.mutex);
    size_t max_bytes = pool.max_bytes, cached_bytes = pool.cached_bytes;
    int cached_blocks = pool.n_cached;
    unsigned long long hits = pool.hits, misses = pool.misses;
    pthread_mutex_unlock(&pool.mutex);
    return Py_BuildValue("{s:n,s:n,s:i,s:K,s:K}", "max_bytes", (Py_ssize_t)max_bytes, "cached_bytes",
                         (Py_ssize_t)cached_bytes, "cached_blocks", cached_blocks, "hits", hits, "misses", misses);
}
