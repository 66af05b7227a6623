/* tracejit.h -- hand-written C included by every generated file.
 *
 * Three things live here, nothing per-program:
 *   1. vector-math declarations, so gcc's auto-vectorizer calls glibc's libmvec
 *      (AVX-512 / AVX2 / SSE) versions of exp, tanh, ... instead of scalar libm;
 *   2. tj_<op>_f32 / tj_<op>_f64 helpers for ops numpy defines differently from C,
 *      written branch-free (selects, not ifs) so loops using them still vectorize;
 *   3. integer helpers where C's semantics differ from numpy's (division, sign).
 *
 * Build contract (see tracejit/compile/toolchain.py): -O3 -march=native
 * -fopenmp-simd -fno-math-errno -ffp-contract=off -fwrapv, linked with -lmvec -lm.
 * Never -ffast-math: results must match numpy's, NaN and inf included.
 */
#ifndef TRACEJIT_H
#define TRACEJIT_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Generated kernels mark their array arguments TJ_RESTRICT: tracejit's buffer plan
 * guarantees outputs never alias inputs, and without it gcc adds runtime overlap checks
 * or gives up vectorizing. */
#define TJ_RESTRICT restrict

/* ---------------------------------------------------------------------------------
 * 1. Vector math
 *
 * glibc's <math.h> declares its SIMD variants only under __FAST_MATH__, which we never
 * use. Re-declaring each function with `declare simd notinbranch` tells gcc (with
 * -fopenmp-simd) that _ZGV{b,c,d,e}N*v_<name> exist, so a loop `y[i] = expf(x[i])`
 * becomes calls to _ZGVeN16v_expf on AVX-512. -fno-math-errno is what lets gcc treat
 * the calls as pure. Every function below has all four ISA variants in glibc 2.35+'s
 * libmvec.so.1 (checked with nm -D); sincos is left out because its pointer outputs
 * need `linear` clauses, exp10 because numpy has no such ufunc.
 * Accuracy (tests/test_math.py): every one is within 4 ulp of a higher-precision
 * reference and matches numpy exactly on inf, nan and signed zeros.
 * Speed: an inlined full-range polynomial expf runs no faster than _ZGVeN16v_expf (about
 * 0.3 ns per element either way, in L1 on this EPYC), but one that handles only the common
 * range and flags the rest does: float32 exp is therefore section 1b's, not libmvec's.
 * --------------------------------------------------------------------------------- */
#define TJ_DECLARE_SIMD _Pragma("omp declare simd notinbranch")

TJ_DECLARE_SIMD float expf(float);  /* generated code uses tj_exp_f32 (1b); kept for tests */
TJ_DECLARE_SIMD double exp(double);
TJ_DECLARE_SIMD float exp2f(float);
TJ_DECLARE_SIMD double exp2(double);
TJ_DECLARE_SIMD float expm1f(float);
TJ_DECLARE_SIMD double expm1(double);
TJ_DECLARE_SIMD float logf(float);
TJ_DECLARE_SIMD double log(double);
TJ_DECLARE_SIMD float log2f(float);
TJ_DECLARE_SIMD double log2(double);
TJ_DECLARE_SIMD float log10f(float);
TJ_DECLARE_SIMD double log10(double);
TJ_DECLARE_SIMD float log1pf(float);
TJ_DECLARE_SIMD double log1p(double);
TJ_DECLARE_SIMD float sinf(float);
TJ_DECLARE_SIMD double sin(double);
TJ_DECLARE_SIMD float cosf(float);
TJ_DECLARE_SIMD double cos(double);
TJ_DECLARE_SIMD float tanf(float);
TJ_DECLARE_SIMD double tan(double);
TJ_DECLARE_SIMD float asinf(float);
TJ_DECLARE_SIMD double asin(double);
TJ_DECLARE_SIMD float acosf(float);
TJ_DECLARE_SIMD double acos(double);
TJ_DECLARE_SIMD float atanf(float);
TJ_DECLARE_SIMD double atan(double);
TJ_DECLARE_SIMD float sinhf(float);
TJ_DECLARE_SIMD double sinh(double);
TJ_DECLARE_SIMD float coshf(float);
TJ_DECLARE_SIMD double cosh(double);
TJ_DECLARE_SIMD float tanhf(float);
TJ_DECLARE_SIMD double tanh(double);
TJ_DECLARE_SIMD float asinhf(float);
TJ_DECLARE_SIMD double asinh(double);
TJ_DECLARE_SIMD float acoshf(float);
TJ_DECLARE_SIMD double acosh(double);
TJ_DECLARE_SIMD float atanhf(float);
TJ_DECLARE_SIMD double atanh(double);
TJ_DECLARE_SIMD float cbrtf(float);
TJ_DECLARE_SIMD double cbrt(double);
TJ_DECLARE_SIMD float powf(float, float);
TJ_DECLARE_SIMD double pow(double, double);
TJ_DECLARE_SIMD float atan2f(float, float);
TJ_DECLARE_SIMD double atan2(double, double);
TJ_DECLARE_SIMD float hypotf(float, float);
TJ_DECLARE_SIMD double hypot(double, double);

/* ---------------------------------------------------------------------------------
 * 1b. exp in float32, inlined
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n*ln2 (ln2 in two parts, so r is exact
 * to well below an ulp), exp(r) = 1 + r + r^2 * P(r) with P of degree 4 (a Chebyshev fit of
 * (exp(r) - 1 - r) / r^2 on |r| <= ln2/2), and 2^n put into the exponent bits.
 * tj_exp_f32 is within 1.09 ulp of the correctly rounded result for every one of the 2^32
 * float32 inputs (tests/exhaustive_exp_f32.c checks all of them against double exp), with numpy's
 * inf, nan, 0 and subnormals.
 *
 * Why not libmvec's expf: inlined into a fused loop, the fast version below, which is right
 * only while 2^n is a normal float, runs about 25% faster than the call (W2b's row pass:
 * 2.2 -> 1.7 ms on one thread). Generated row passes use it and OR tj_exp_outside_fast_f32
 * into a flag; the rare row that sets it (an overflow, a subnormal result, a nan) runs its
 * pass again with tj_exp_f32. Both give the same bits wherever the fast one is used, so a
 * value never depends on which path computed it (or on its neighbours in the row).
 * --------------------------------------------------------------------------------- */
#define TJ_EXP_SHIFT 0x1.8p23f        /* 1.5 * 2^23: x/ln2 + this rounds x/ln2 to an integer */
#define TJ_EXP_SHIFT_BITS 0x4B400000  /* its bits: bits(x/ln2 + shift) - this = that integer */
#define TJ_EXP_ZERO_BELOW (-103.98f)  /* exp(x) < 2^-150 here: +0.0, as numpy gives */

/* n = round(x / ln2) as an int; for |x| beyond ~2.9e6, inf or nan it is far outside [-150, 129].
 * Unsigned arithmetic: for those inputs the values wrap (defined), and the fast form computes
 * them before its flag discards the lane. */
static inline int32_t tj_exp_n_f32(float x)
{
    float z = fmaf(x, 0x1.715476p+0f, TJ_EXP_SHIFT);
    uint32_t bits;
    memcpy(&bits, &z, sizeof bits);
    return (int32_t)(bits - (uint32_t)TJ_EXP_SHIFT_BITS);
}

/* exp(r) - 1 for the reduced argument of x. */
static inline float tj_exp_reduced_f32(float x)
{
    float n = fmaf(x, 0x1.715476p+0f, TJ_EXP_SHIFT) - TJ_EXP_SHIFT;
    float r = fmaf(n, -0x1.62e4p-1f, x);  /* ln2's leading bits: n * them is exact */
    r = fmaf(n, -0x1.7f7d1cp-20f, r);     /* the rest of ln2 */
    float r2 = r * r;
    float lo = fmaf(0x1.5554d8p-3f, r, 0x1p-1f);
    float hi = fmaf(0x1.12106cp-7f, r, 0x1.555516p-5f);
    hi = fmaf(0x1.6d1606p-10f, r2, hi);
    return fmaf(fmaf(hi, r2, lo), r2, r);
}

/* 2^n for n in [-126, 127] (other n: some float, no undefined behaviour). */
static inline float tj_pow2_f32(int32_t n)
{
    uint32_t bits = ((uint32_t)n + 127u) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

/* Right where tj_exp_outside_fast_f32(x) is 0: n in [-126, 127], or x below TJ_EXP_ZERO_BELOW. */
static inline float tj_exp_fast_f32(float x)
{
    float scale = tj_pow2_f32(tj_exp_n_f32(x));
    float y = fmaf(tj_exp_reduced_f32(x), scale, scale);
    return x < TJ_EXP_ZERO_BELOW ? 0.0f : y;
}

static inline int tj_exp_outside_fast_f32(float x)
{
    return ((uint32_t)tj_exp_n_f32(x) + 126u > 253u) & !(x < TJ_EXP_ZERO_BELOW);
}

/* Every input. 2^n = 2^n2 * 2^n1 with n2 clamped to the normal range: for n2 = n (the fast
 * range) the scaling by 2^n1 = 1 is exact and this is tj_exp_fast_f32 bit for bit; beyond it,
 * the second factor takes a result to inf, or down to a subnormal (rounded twice, < 1 ulp). */
static inline float tj_exp_f32(float x)
{
    int32_t n = tj_exp_n_f32(x);
    int32_t n2 = n < -126 ? -126 : (n > 127 ? 127 : n);
    int32_t n1 = n - n2;
    n1 = n1 < -30 ? -30 : (n1 > 30 ? 30 : n1);  /* inf, nan, huge x: overridden below */
    float s2 = tj_pow2_f32(n2);
    float y = fmaf(tj_exp_reduced_f32(x), s2, s2) * tj_pow2_f32(n1);
    y = x > 88.8f ? INFINITY : y;
    return x < TJ_EXP_ZERO_BELOW ? 0.0f : y;
}

/* ---------------------------------------------------------------------------------
 * 2. Float helpers: numpy semantics that C operators / libm spell differently
 * --------------------------------------------------------------------------------- */

/* np.maximum / np.minimum propagate NaN from either side; C's fmaxf drops it.
 * On ties numpy returns the second operand (so maximum(-0.0, 0.0) is 0.0 and
 * maximum(0.0, -0.0) is -0.0); `a > b ? a : b` does the same and is the x86 maxps
 * pattern. Written as a select so gcc vectorizes it. */
static inline float tj_maximum_f32(float a, float b) { float m = a > b ? a : b; return a != a ? a : m; }
static inline double tj_maximum_f64(double a, double b) { double m = a > b ? a : b; return a != a ? a : m; }
static inline float tj_minimum_f32(float a, float b) { float m = a < b ? a : b; return a != a ? a : m; }
static inline double tj_minimum_f64(double a, double b) { double m = a < b ? a : b; return a != a ? a : m; }

/* np.fmax / np.fmin: nan only when both are nan. Floats use C's fmax/fmin, as numpy's array
 * loops do (which zero a tie of -0.0 and 0.0 gives is up to them: numpy's scalar and array
 * paths differ there); integers are plain max/min. */
static inline float tj_fmax_f32(float a, float b) { return fmaxf(a, b); }
static inline double tj_fmax_f64(double a, double b) { return fmax(a, b); }
static inline float tj_fmin_f32(float a, float b) { return fminf(a, b); }
static inline double tj_fmin_f64(double a, double b) { return fmin(a, b); }
static inline int32_t tj_fmax_i32(int32_t a, int32_t b) { return a >= b ? a : b; }
static inline int64_t tj_fmax_i64(int64_t a, int64_t b) { return a >= b ? a : b; }
static inline int32_t tj_fmin_i32(int32_t a, int32_t b) { return a <= b ? a : b; }
static inline int64_t tj_fmin_i64(int64_t a, int64_t b) { return a <= b ? a : b; }

/* Combine step of np.max / np.min reductions (NaN anywhere -> NaN). Same function as
 * tj_maximum/tj_minimum: use it to merge partial results (lanes, threads, blocks).
 * Note for emitters: gcc will not vectorize `acc = tj_max_combine(acc, x[i])` as a
 * reduction (without -ffast-math it cannot prove the select associative). What does
 * vectorize, and is exact, is a plain max plus a separate NaN flag:
 *     #pragma omp simd reduction(max:m) reduction(|:nan)
 *     for (...) { m = x[i] > m ? x[i] : m; nan |= x[i] != x[i]; }
 *     result = nan ? NAN : m;
 * (OpenMP's max reduction alone is not NaN-safe.) */
static inline float tj_max_combine_f32(float acc, float x) { return tj_maximum_f32(acc, x); }
static inline double tj_max_combine_f64(double acc, double x) { return tj_maximum_f64(acc, x); }
static inline float tj_min_combine_f32(float acc, float x) { return tj_minimum_f32(acc, x); }
static inline double tj_min_combine_f64(double acc, double x) { return tj_minimum_f64(acc, x); }

/* np.sum of a contiguous row, bit for bit as numpy computes it (its pairwise_sum): blocks of at
 * most 128 terms summed in 8 interleaved accumulators, combined as a fixed tree, the < 8 left
 * over added in order; longer runs split in halves at multiples of 8; the reduction starts from
 * +0.0. The 8 accumulators are one vector, so this is also faster than a double accumulator. */
#define TJ_PAIRWISE_SUM(T, NAME)                                                            \
    static inline T NAME##_run(const T *a, int64_t n)                                       \
    {                                                                                       \
        if (n < 8) {                                                                        \
            T res = 0;                                                                      \
            for (int64_t i = 0; i < n; i++)                                                 \
                res += a[i];                                                                \
            return res;                                                                     \
        }                                                                                   \
        if (n <= 128) {                                                                     \
            T r[8];                                                                         \
            int64_t i;                                                                      \
            for (int j = 0; j < 8; j++)                                                     \
                r[j] = a[j];                                                                \
            for (i = 8; i < n - (n % 8); i += 8)                                            \
                for (int j = 0; j < 8; j++)                                                 \
                    r[j] += a[i + j];                                                       \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));      \
            for (; i < n; i++)                                                              \
                res += a[i];                                                                \
            return res;                                                                     \
        }                                                                                   \
        int64_t n2 = n / 2;                                                                 \
        n2 -= n2 % 8;                                                                       \
        return NAME##_run(a, n2) + NAME##_run(a + n2, n - n2);                              \
    }                                                                                       \
    static inline T NAME(const T *a, int64_t n) { return (T)0 + NAME##_run(a, n); }
TJ_PAIRWISE_SUM(float, tj_sum_pairwise_f32)
TJ_PAIRWISE_SUM(double, tj_sum_pairwise_f64)

/* np.sign: -1, 0 or 1; nan stays nan; both signed zeros give +0.0 (numpy 2). */
static inline float tj_sign_f32(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == x ? 0.0f : x)); }
static inline double tj_sign_f64(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : (x == x ? 0.0 : x)); }

/* np.square and np.reciprocal: named so the emitter needs no special case;
 * x*x is exact to numpy's (one rounding), 1/x gives inf at 0 as numpy does. */
static inline float tj_square_f32(float x) { return x * x; }
static inline double tj_square_f64(double x) { return x * x; }
static inline float tj_reciprocal_f32(float x) { return 1.0f / x; }
static inline double tj_reciprocal_f64(double x) { return 1.0 / x; }

/* np.remainder / np.floor_divide on floats follow Python (result takes the divisor's
 * sign), unlike C's fmod. This is numpy's npy_divmod, line for line, so results agree
 * bit for bit, including inf/nan/zero divisors. Not vectorizable (fmod), which is fine
 * for these rare ops. */
static inline float tj_divmod_f32(float a, float b, float *mod_out) {
    float mod = fmodf(a, b);
    if (!b) { *mod_out = mod; return a / b; }
    float div = (a - mod) / b;
    if (mod) {
        if ((b < 0) != (mod < 0)) { mod += b; div -= 1.0f; }
    } else {
        mod = copysignf(0.0f, b);
    }
    float floordiv;
    if (div) {
        floordiv = floorf(div);
        if (div - floordiv > 0.5f) floordiv += 1.0f;
    } else {
        floordiv = copysignf(0.0f, a / b);
    }
    *mod_out = mod;
    return floordiv;
}
static inline double tj_divmod_f64(double a, double b, double *mod_out) {
    double mod = fmod(a, b);
    if (!b) { *mod_out = mod; return a / b; }
    double div = (a - mod) / b;
    if (mod) {
        if ((b < 0) != (mod < 0)) { mod += b; div -= 1.0; }
    } else {
        mod = copysign(0.0, b);
    }
    double floordiv;
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, a / b);
    }
    *mod_out = mod;
    return floordiv;
}
static inline float tj_floor_divide_f32(float a, float b) { float m; return tj_divmod_f32(a, b, &m); }
static inline double tj_floor_divide_f64(double a, double b) { double m; return tj_divmod_f64(a, b, &m); }
static inline float tj_remainder_f32(float a, float b) { float m; tj_divmod_f32(a, b, &m); return m; }
static inline double tj_remainder_f64(double a, double b) { double m; tj_divmod_f64(a, b, &m); return m; }

/* ---------------------------------------------------------------------------------
 * 3. Integer helpers (numpy wraps on overflow; generated code is built with -fwrapv)
 * --------------------------------------------------------------------------------- */

static inline int32_t tj_sign_i32(int32_t x) { return (x > 0) - (x < 0); }
static inline int64_t tj_sign_i64(int64_t x) { return (x > 0) - (x < 0); }
static inline int32_t tj_maximum_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int64_t tj_maximum_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int32_t tj_minimum_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int64_t tj_minimum_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Integer // and % round toward -inf in numpy (toward 0 in C); a zero divisor gives 0
 * (C: undefined), and MIN // -1 wraps to MIN (C: SIGFPE on x86), so -1 is special-cased. */
static inline int32_t tj_floor_divide_i32(int32_t a, int32_t b) {
    if (b == 0) return 0;
    if (b == -1) return (int32_t)(0u - (uint32_t)a);
    int32_t q = a / b;
    return q - ((a % b != 0) & ((a < 0) != (b < 0)));
}
static inline int64_t tj_floor_divide_i64(int64_t a, int64_t b) {
    if (b == 0) return 0;
    if (b == -1) return (int64_t)(0u - (uint64_t)a);
    int64_t q = a / b;
    return q - ((a % b != 0) & ((a < 0) != (b < 0)));
}
static inline int32_t tj_remainder_i32(int32_t a, int32_t b) {
    if (b == 0 || b == -1) return 0;
    int32_t r = a % b;
    return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}
static inline int64_t tj_remainder_i64(int64_t a, int64_t b) {
    if (b == 0 || b == -1) return 0;
    int64_t r = a % b;
    return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}

/* ---------------------------------------------------------------------------------
 * 4. Helpers named by the elementwise c_expr templates (ops/elementwise.py):
 *    tj_abs_{t}, tj_power_{t}, tj_to_{i32,i64}_{t}. Added by the C backend.
 * --------------------------------------------------------------------------------- */

/* float -> int as numpy gives it on x86 (its loops use cvttss2si & co.): truncation toward zero,
 * and for nan, inf and values beyond the integer's range the "integer indefinite" value, the
 * most negative one. A plain C cast is undefined there: gcc folded (int32_t)INFINITY to
 * INT32_MAX where the instruction gives INT32_MIN. */
static inline int32_t tj_to_i32_f32(float x) { return x >= -0x1p31f && x < 0x1p31f ? (int32_t)x : INT32_MIN; }
static inline int32_t tj_to_i32_f64(double x) { return x > -0x1p31 - 1.0 && x < 0x1p31 ? (int32_t)x : INT32_MIN; }
static inline int64_t tj_to_i64_f32(float x) { return x >= -0x1p63f && x < 0x1p63f ? (int64_t)x : INT64_MIN; }
static inline int64_t tj_to_i64_f64(double x) { return x >= -0x1p63 && x < 0x1p63 ? (int64_t)x : INT64_MIN; }

/* np.abs: fabs clears the sign bit (abs(-0.0) is 0.0, nan stays nan); integers wrap at MIN. */
static inline float tj_abs_f32(float x) { return fabsf(x); }
static inline double tj_abs_f64(double x) { return fabs(x); }
static inline int32_t tj_abs_i32(int32_t x) { return x < 0 ? (int32_t)(0u - (uint32_t)x) : x; }
static inline int64_t tj_abs_i64(int64_t x) { return x < 0 ? (int64_t)(0u - (uint64_t)x) : x; }

/* np.power on floats is libm pow (libmvec vectorizes it). The common small integer
 * exponents are exact products; with a literal exponent gcc folds
 * the selects away and no pow call remains. */
static inline float tj_power_f32(float a, float b) {
    return b == 2.0f ? a * a : (b == 1.0f ? a : powf(a, b));
}
static inline double tj_power_f64(double a, double b) {
    return b == 2.0 ? a * a : (b == 1.0 ? a : pow(a, b));
}
/* Integer power by squaring, wrapping like numpy. numpy raises for a negative exponent, and so
 * does the generated loop (it checks the exponent: ops/elementwise.py, c_error); the value here,
 * 0 but for bases 1 and -1, is never returned. */
static inline int64_t tj_power_i64(int64_t a, int64_t b) {
    if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
    uint64_t result = 1, base = (uint64_t)a;
    while (b) { if (b & 1) result *= base; base *= base; b >>= 1; }
    return (int64_t)result;
}
static inline int32_t tj_power_i32(int32_t a, int32_t b) { return (int32_t)tj_power_i64(a, b); }

/* ---------------------------------------------------------------------------------
 * 5. matmul of integers and bools (floats go to BLAS: codegen/c_program.py's tj_gemm_f32/f64)
 *
 * Same arguments as those (a cblas row-major gemm; trans 112 is CblasTrans; alpha is always 1
 * and beta 0). numpy has no BLAS for these either: it sums in the result dtype, wrapping (here
 * too: -fwrapv), so the order of the additions cannot change the result; bools are or-of-ands.
 * Loops i, p, j: the innermost runs along a row of C and of B, so gcc vectorizes it.
 * --------------------------------------------------------------------------------- */
#define TJ_INT_GEMM(T, NAME, UPDATE)                                                               \
    static inline void NAME(int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T *a,  \
                            int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc)      \
    {                                                                                              \
        (void)alpha;                                                                               \
        (void)beta;                                                                                \
        for (int64_t i = 0; i < m; i++) {                                                          \
            T *TJ_RESTRICT row = c + i * ldc;                                                      \
            for (int64_t j = 0; j < n; j++)                                                        \
                row[j] = 0;                                                                        \
            for (int64_t p = 0; p < k; p++) {                                                      \
                const T x = ta == 112 ? a[p * lda + i] : a[i * lda + p];                           \
                if (tb == 112) {                                                                   \
                    for (int64_t j = 0; j < n; j++)                                                \
                        UPDATE(row[j], x, b[j * ldb + p]);                                         \
                } else {                                                                           \
                    for (int64_t j = 0; j < n; j++)                                                \
                        UPDATE(row[j], x, b[p * ldb + j]);                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
#define TJ_ADD_PRODUCT(acc, x, y) ((acc) += (x) * (y))
#define TJ_OR_AND(acc, x, y) ((acc) = (acc) | ((x) & (y)))
TJ_INT_GEMM(int32_t, tj_gemm_i32, TJ_ADD_PRODUCT)
TJ_INT_GEMM(int64_t, tj_gemm_i64, TJ_ADD_PRODUCT)
TJ_INT_GEMM(bool, tj_gemm_bool, TJ_OR_AND)

#endif /* TRACEJIT_H */
