/* gemm.c -- tracejit._gemm, the float32 and float64 matrix products behind generated matmuls on
 * AVX-512 CPUs.
 *
 * Why not OpenBLAS's gemm, which numpy calls: at the shapes of a training step (a batch of 128
 * rows against 512-wide layers) on this project's machine (AMD Zen 4, 2 cores), OpenBLAS picks its
 * SkylakeX kernels, which ran the W4 step's eight float32 products 4-10% slower than its own
 * Haswell ones, and it works them on its own thread pool, whose workers spin after each call
 * against the OpenMP workers of the loops around it. These products run on the same OpenMP pool
 * as those loops (one libgomp in the process), so a step never hands the cores from one pool to
 * another; the eight products take 2.1-2.2 ms here against numpy's 2.4-2.5 ms.
 *
 * The method is the one BLIS describes (Van Zee and van de Geijn, 2015): copy a KC-deep slice of
 * B into panels NR columns wide, and of A into panels MR rows tall, each laid out so that the
 * micro-kernel reads both contiguously; the micro-kernel keeps an MR x NR block of C in registers
 * (16 zmm accumulators) and adds one rank-1 update per k. Every element of C is a sum over k in
 * order, one fused multiply-add per term; slices of KC terms are added to C in turn. OpenBLAS
 * also sums with FMAs, in its own order, so the two agree to rounding, not bit for bit (as any
 * two BLAS libraries do).
 *
 * gemm_kernel.h holds the code, written once for an element type and included here for float
 * and double. The module hands out the two functions as addresses with the ILP64 cblas_?gemm
 * signature, the one the generated code already calls numpy's OpenBLAS through
 * (codegen/c_program.py), or None where the CPU lacks AVX-512 (the generated code then keeps
 * calling OpenBLAS). The kernels are compiled for AVX-512 through target attributes and only run
 * after a CPU check, so the extension itself builds and loads on any x86-64.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Products whose m * n * k is outside [BLAS_BELOW, BLAS_FROM) go to numpy's OpenBLAS when
 * set_blas_gemms gave it. Small ones: OpenBLAS runs them on the calling thread (its own threshold
 * for threads is 65536 * 4), with kernels that skip the packing, which costs a 64 x 64 x 64
 * product here ~2 us of its ~8. Large ones: its kernels are as fast as ours in float32 and 12% faster in float64
 * (1024^3 and 2048^3, benchmarks/gemm.py), and a hand-over between thread pools is small next to
 * a product of tens of milliseconds. */
#define BLAS_BELOW 262145.0
#define BLAS_FROM 536870912.0  /* 2^29, an 812^3 product */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TJ_AVX512 __attribute__((target("avx512f,fma")))

enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111, TRANS = 112 };

#define MR 8         /* rows of a C block in registers (its columns, NR, are two vectors: gemm_kernel.h) */
#define KC 256       /* k terms per packed slice: an A panel (8-16 KiB) and a B panel (32 KiB) stay in L1/L2 */
#define MC 192       /* rows of A packed at a time: MC x KC elements (192-384 KiB) stay in L2 */
#define NC 2048      /* columns of B packed at a time: KC x NC elements (2-4 MiB) in L2 and L3 */
#define NR_MAX 32    /* the widest NR, float32's */
#define PARALLEL_MIN_FLOPS (1L << 20)  /* below this (~10 us on one core) a second thread costs more than it saves */

/* The cblas_?gemm signature with 64-bit sizes, ours and OpenBLAS's ILP64 one. */
typedef void (*gemm_fn_f32)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                            int64_t, float, float *, int64_t);
typedef void (*gemm_fn_f64)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                            const double *, int64_t, double, double *, int64_t);

/* One operand as strides, so that a transposed operand is just its strides swapped. */
typedef struct {
    const float *p;
    int64_t rs, cs;  /* element (i, j) is p[i * rs + j * cs] */
} Operand_f32;

typedef struct {
    const double *p;
    int64_t rs, cs;
} Operand_f64;

/* This thread's packing buffers, sized for float64 and kept between calls. */
typedef struct {
    void *a, *b;
} Buffers;

static _Thread_local Buffers buffers;
static pthread_key_t buffers_key;  /* its destructor frees a thread's buffers when the thread ends */
static pthread_once_t buffers_key_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *owned)
{
    Buffers *b = owned;
    free(b->a);
    free(b->b);
    free(b);
}

static void make_buffers_key(void)
{
    (void)pthread_key_create(&buffers_key, free_buffers);
}

/* Whether the calling thread has its packing buffers: allocated by its first call, then reused,
 * and freed when the thread ends (a Python thread that calls one jitted matmul and exits would
 * otherwise leave ~5 MB behind). */
static int thread_buffers(void)
{
    if (buffers.a)
        return 1;
    pthread_once(&buffers_key_once, make_buffers_key);
    Buffers *owned = malloc(sizeof *owned);
    void *a = aligned_alloc(64, sizeof(double) * (MC + MR) * KC);
    void *b = aligned_alloc(64, sizeof(double) * (NC + NR_MAX) * KC);
    if (!owned || !a || !b || pthread_setspecific(buffers_key, owned) != 0) {
        free(owned);
        free(a);
        free(b);
        return 0;
    }
    *owned = (Buffers){a, b};
    buffers = *owned;
    return 1;
}

/* dst[c * ld_dst + r] = src[r * ld_src + c] for an 8 x 8 block of floats: the transpose of
 * packing a row-major A (or a transposed B), where each panel column is 8 strided elements. */
TJ_AVX512 static inline void transpose_8x8(const float *src, int64_t ld_src, float *dst, int64_t ld_dst)
{
    __m256 r0 = _mm256_loadu_ps(src + 0 * ld_src), r1 = _mm256_loadu_ps(src + 1 * ld_src);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ld_src), r3 = _mm256_loadu_ps(src + 3 * ld_src);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ld_src), r5 = _mm256_loadu_ps(src + 5 * ld_src);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ld_src), r7 = _mm256_loadu_ps(src + 7 * ld_src);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * ld_dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * ld_dst, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ld_dst, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ld_dst, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ld_dst, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ld_dst, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ld_dst, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ld_dst, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* This thread's share of the product: columns (whole panels of micro-kernel width) when there are
 * enough of them, rows (whole panels of its height) otherwise, so that both cores get work. */
static void thread_share(int t, int nt, int64_t m, int64_t n, int mr, int nr, int64_t *i0, int64_t *i1, int64_t *j0,
                         int64_t *j1)
{
    int64_t col_panels = (n + nr - 1) / nr, row_panels = (m + mr - 1) / mr;
    *i0 = 0, *i1 = m, *j0 = 0, *j1 = n;
    if (col_panels >= 2 * nt || col_panels >= row_panels) {
        *j0 = col_panels * t / nt * nr;
        *j1 = col_panels * (t + 1) / nt * nr;
        *j1 = *j1 < n ? *j1 : n;
    } else {
        *i0 = row_panels * t / nt * mr;
        *i1 = row_panels * (t + 1) / nt * mr;
        *i1 = *i1 < m ? *i1 : m;
    }
}

/* The same for a 4 x 4 block of doubles. */
TJ_AVX512 static inline void transpose_4x4(const double *src, int64_t ld_src, double *dst, int64_t ld_dst)
{
    __m256d r0 = _mm256_loadu_pd(src + 0 * ld_src), r1 = _mm256_loadu_pd(src + 1 * ld_src);
    __m256d r2 = _mm256_loadu_pd(src + 2 * ld_src), r3 = _mm256_loadu_pd(src + 3 * ld_src);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(dst + 0 * ld_dst, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + 1 * ld_dst, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * ld_dst, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * ld_dst, _mm256_permute2f128_pd(t1, t3, 0x31));
}

/* The float32 gemm. */
#define T float
#define V __m512
#define LANES 16
#define MASK __mmask16
#define FULL 0xffff
#define FN(name) name##_f32
#define OPERAND Operand_f32
#define FMA_SCALAR fmaf
#define V_ZERO _mm512_setzero_ps
#define V_LOAD _mm512_load_ps
#define V_STORE _mm512_store_ps
#define V_MASKZ_LOADU _mm512_maskz_loadu_ps
#define V_MASK_STOREU _mm512_mask_storeu_ps
#define V_SET1 _mm512_set1_ps
#define V_FMADD _mm512_fmadd_ps
#define V_MUL _mm512_mul_ps
#define V_ADD _mm512_add_ps
#define TRANSPOSE transpose_8x8
#define TB 8
#include "gemm_kernel.h"
#undef T
#undef V
#undef LANES
#undef MASK
#undef FULL
#undef FN
#undef OPERAND
#undef FMA_SCALAR
#undef V_ZERO
#undef V_LOAD
#undef V_STORE
#undef V_MASKZ_LOADU
#undef V_MASK_STOREU
#undef V_SET1
#undef V_FMADD
#undef V_MUL
#undef V_ADD
#undef TRANSPOSE
#undef TB

/* The float64 gemm. */
#define T double
#define V __m512d
#define LANES 8
#define MASK __mmask8
#define FULL 0xff
#define FN(name) name##_f64
#define OPERAND Operand_f64
#define FMA_SCALAR fma
#define V_ZERO _mm512_setzero_pd
#define V_LOAD _mm512_load_pd
#define V_STORE _mm512_store_pd
#define V_MASKZ_LOADU _mm512_maskz_loadu_pd
#define V_MASK_STOREU _mm512_mask_storeu_pd
#define V_SET1 _mm512_set1_pd
#define V_FMADD _mm512_fmadd_pd
#define V_MUL _mm512_mul_pd
#define V_ADD _mm512_add_pd
#define TRANSPOSE transpose_4x4
#define TB 4
#include "gemm_kernel.h"

static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}
#else
static int cpu_has_avx512(void) { return 0; }
#endif

static PyObject *gemm_addresses(PyObject *module, PyObject *ignored)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx512())
        return Py_BuildValue("(NN)", PyLong_FromVoidPtr((void *)tj_gemm_f32), PyLong_FromVoidPtr((void *)tj_gemm_f64));
#endif
    Py_RETURN_NONE;
}

static PyObject *set_blas_gemms(PyObject *module, PyObject *args)
{
    unsigned long long sgemm, dgemm;
    if (!PyArg_ParseTuple(args, "KK", &sgemm, &dgemm))
        return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    blas_gemm_f32 = (gemm_fn_f32)(uintptr_t)sgemm;
    blas_gemm_f64 = (gemm_fn_f64)(uintptr_t)dgemm;
#endif
    Py_RETURN_NONE;
}

static PyMethodDef gemm_methods[] = {
    {"set_blas_gemms", set_blas_gemms, METH_VARARGS,
     "set_blas_gemms(sgemm, dgemm): addresses of numpy's OpenBLAS ILP64 cblas_?gemm, for products small enough "
     "that OpenBLAS runs them on the calling thread, or large enough that its kernels win (0: none)."},
    {"gemm_addresses", gemm_addresses, METH_NOARGS,
     "(sgemm, dgemm) addresses of tracejit's gemms (the ILP64 cblas_?gemm signature), or None where this CPU lacks "
     "AVX-512."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef gemm_module = {
    PyModuleDef_HEAD_INIT, "tracejit._gemm",
    "tracejit's float32 and float64 matrix products for AVX-512 CPUs, run on the OpenMP pool of the generated loops.",
    -1, gemm_methods,
};

PyMODINIT_FUNC PyInit__gemm(void)
{
    PyObject *module = PyModule_Create(&gemm_module);
    if (module && (PyModule_AddObject(module, "BLAS_BELOW", PyFloat_FromDouble(BLAS_BELOW)) < 0
                   || PyModule_AddObject(module, "BLAS_FROM", PyFloat_FromDouble(BLAS_FROM)) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
