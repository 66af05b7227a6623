/* gemm_kernel.h -- the body of csrc/gemm.c's gemm, included once per element type.
 *
 * The including file defines, for one type: T (the element), V (its zmm vector), LANES (elements
 * per vector), MASK and FULL (a lane mask and its all-lanes value), FN(name) (the name with the
 * type's suffix), OPERAND (the Operand struct of T), FMA_SCALAR, the V_* intrinsics, and
 * TRANSPOSE (a TB x TB block transpose). Every function here is static; only FN(tj_gemm) is handed out.
 */
#define NR (2 * LANES)  /* columns of a C block in registers: two vectors */

/* dst[p * width + j] = src[j * rs + p * cs] for j < rows (zero up to width), p < kc: one panel,
 * k-major. Where j is contiguous (rs == 1) it is a copy of rows; where k is (cs == 1), TB x TB
 * blocks go through TRANSPOSE. */
TJ_AVX512 static void FN(pack_panel)(const T *src, int64_t rs, int64_t cs, int64_t rows, int64_t kc, int width,
                                     T *dst)
{
    int64_t p = 0;
    if (rs == 1 && rows == width) {  /* the panel's rows are contiguous already */
        for (; p < kc; p++)
            for (int j = 0; j < width; j++)
                dst[p * width + j] = src[p * cs + j];
        return;
    }
    if (cs == 1 && rows == width)
        for (; p + TB <= kc; p += TB)
            for (int j = 0; j < width; j += TB)
                TRANSPOSE(src + j * rs + p, rs, dst + p * width + j, width);
    for (; p < kc; p++) {
        int64_t j = 0;
        for (; j < rows; j++)
            dst[p * width + j] = src[j * rs + p * cs];
        for (; j < width; j++)
            dst[p * width + j] = 0;
    }
}

/* A[i0:i0+m, p0:p0+kc] into panels of MR rows, k-major within a panel; rows past m are zero. */
TJ_AVX512 static void FN(pack_a)(OPERAND a, int64_t m, int64_t kc, T *dst)
{
    for (int64_t i0 = 0; i0 < m; i0 += MR, dst += MR * kc)
        FN(pack_panel)(a.p + i0 * a.rs, a.rs, a.cs, m - i0 < MR ? m - i0 : MR, kc, MR, dst);
}

/* B[p0:p0+kc, j0:j0+n] into panels of NR columns, k-major within a panel; columns past n are zero. */
TJ_AVX512 static void FN(pack_b)(OPERAND b, int64_t n, int64_t kc, T *dst)
{
    for (int64_t j0 = 0; j0 < n; j0 += NR, dst += NR * kc) {
        int64_t nr = n - j0 < NR ? n - j0 : NR;
        const T *src = b.p + j0 * b.cs;
        if (b.cs == 1) {  /* rows of the panel are contiguous: masked vector copies */
            MASK lo = nr >= LANES ? FULL : (MASK)((1u << nr) - 1);
            MASK hi = nr >= NR ? FULL : nr <= LANES ? 0 : (MASK)((1u << (nr - LANES)) - 1);
            for (int64_t p = 0; p < kc; p++) {
                V_STORE(dst + p * NR, V_MASKZ_LOADU(lo, src + p * b.rs));
                V_STORE(dst + p * NR + LANES, V_MASKZ_LOADU(hi, src + p * b.rs + LANES));
            }
        } else {  /* a transposed B: the panel's columns are B's rows */
            FN(pack_panel)(src, b.cs, b.rs, nr, kc, NR, dst);
        }
    }
}

/* C[0:mr, 0:nr] = alpha * A_panel @ B_panel + (first slice ? beta * C : C), where C's element (i, j)
 * is c[i * c_rs + j * c_cs]. beta == 0 on the first slice never reads C (it may hold garbage, as
 * BLAS allows). Rows of C are contiguous (c_cs == 1) but for a transposed narrow product
 * (row_major_gemm), whose block goes out element by element. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
TJ_AVX512 static void FN(micro_kernel)(int64_t kc, const T *ap, const T *bp, T *c, int64_t c_rs, int64_t c_cs,
                                       int64_t mr, int64_t nr, T alpha, T beta_here)
{
#define DECLARE(i) V acc##i##a = V_ZERO(), acc##i##b = V_ZERO();
    ROWS(DECLARE)
    for (int64_t p = 0; p < kc; p++, ap += MR, bp += NR) {
        V b0 = V_LOAD(bp), b1 = V_LOAD(bp + LANES);
#define RANK1(i) { V ai = V_SET1(ap[i]); \
                   acc##i##a = V_FMADD(ai, b0, acc##i##a); acc##i##b = V_FMADD(ai, b1, acc##i##b); }
        ROWS(RANK1)
    }
    if (c_cs != 1) {
        T block[MR][NR] __attribute__((aligned(64)));
#define SPILL(i) V_STORE(block[i], acc##i##a); V_STORE(block[i] + LANES, acc##i##b);
        ROWS(SPILL)
        for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < nr; j++) {
                T *out = c + i * c_rs + j * c_cs;
                *out = alpha * block[i][j] + (beta_here == 0 ? 0 : beta_here * *out);
            }
        return;
    }
    MASK lo = nr >= LANES ? FULL : (MASK)((1u << nr) - 1);
    MASK hi = nr >= NR ? FULL : nr <= LANES ? 0 : (MASK)((1u << (nr - LANES)) - 1);
    V va = V_SET1(alpha), vb = V_SET1(beta_here);
    int scale = alpha != 1, add = beta_here != 0, scale_c = beta_here != 1;
#define STORE(i) if (i < mr) { T *row = c + i * c_rs; \
        if (scale) { acc##i##a = V_MUL(va, acc##i##a); acc##i##b = V_MUL(va, acc##i##b); } \
        if (add) { V ca = V_MASKZ_LOADU(lo, row), cb = V_MASKZ_LOADU(hi, row + LANES); \
                   if (scale_c) { ca = V_MUL(vb, ca); cb = V_MUL(vb, cb); } \
                   acc##i##a = V_ADD(ca, acc##i##a); acc##i##b = V_ADD(cb, acc##i##b); } \
        V_MASK_STOREU(row, lo, acc##i##a); V_MASK_STOREU(row + LANES, hi, acc##i##b); }
    ROWS(STORE)
}

/* C[0:m, 0:n] = alpha * A @ B + beta * C for one thread's share: the BLIS loops around the micro-kernel. */
TJ_AVX512 static void FN(gemm_block)(int64_t m, int64_t n, int64_t k, T alpha, OPERAND a, OPERAND b, T beta,
                                     T *c, int64_t c_rs, int64_t c_cs, T *pack_a_buf, T *pack_b_buf)
{
    for (int64_t jc = 0; jc < n; jc += NC) {
        int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k; pc += KC) {
            int64_t kc = k - pc < KC ? k - pc : KC;
            T beta_here = pc == 0 ? beta : 1;
            FN(pack_b)((OPERAND){b.p + pc * b.rs + jc * b.cs, b.rs, b.cs}, nc, kc, pack_b_buf);
            for (int64_t ic = 0; ic < m; ic += MC) {
                int64_t mc = m - ic < MC ? m - ic : MC;
                FN(pack_a)((OPERAND){a.p + ic * a.rs + pc * a.cs, a.rs, a.cs}, mc, kc, pack_a_buf);
                for (int64_t jr = 0; jr < nc; jr += NR)
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        FN(micro_kernel)(kc, pack_a_buf + ir * kc, pack_b_buf + jr * kc,
                                         c + (ic + ir) * c_rs + (jc + jr) * c_cs, c_rs, c_cs,
                                         mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, alpha, beta_here);
            }
        }
    }
}

/* C = beta * C where the product adds nothing (k == 0 or alpha == 0). */
static void FN(scale_c)(int64_t m, int64_t n, T beta, T *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
}

/* The same without packing, for a thread that could not allocate its packing buffers: slow but right. */
static void FN(plain_block)(int64_t m, int64_t n, int64_t k, T alpha, OPERAND a, OPERAND b, T beta, T *c,
                            int64_t c_rs, int64_t c_cs)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            T acc = 0, *out = c + i * c_rs + j * c_cs;
            for (int64_t p = 0; p < k; p++)
                acc = FMA_SCALAR(a.p[i * a.rs + p * a.cs], b.p[p * b.rs + j * b.cs], acc);
            *out = alpha * acc + (beta == 0 ? 0 : beta * *out);
        }
}

/* numpy's OpenBLAS gemm for the smallest and the largest products (set_blas_gemms), or NULL. */
static FN(gemm_fn) FN(blas_gemm);

static void FN(row_major_gemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T *pa,
                               int64_t lda, const T *pb, int64_t ldb, T beta, T *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || alpha == 0) {
        FN(scale_c)(m, n, beta, c, ldc);
        return;
    }
    double mnk = (double)m * n * k;
    if (FN(blas_gemm) && (mnk < BLAS_BELOW || mnk >= BLAS_FROM)) {
        FN(blas_gemm)(ROW_MAJOR, ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, c, ldc);
        return;
    }
    OPERAND a = ta == TRANS ? (OPERAND){pa, 1, lda} : (OPERAND){pa, lda, 1};
    OPERAND b = tb == TRANS ? (OPERAND){pb, 1, ldb} : (OPERAND){pb, ldb, 1};
    int64_t c_rs = ldc, c_cs = 1;
    if (n < LANES && m > n) {
        /* A narrow C (W4's 10 classes) would fill n of the micro-kernel's NR columns: compute
         * C^T = B^T @ A^T instead, whose NR-wide side is m, and store the blocks transposed. */
        OPERAND bt = {b.p, b.cs, b.rs};
        b = (OPERAND){a.p, a.cs, a.rs};
        a = bt;
        int64_t rows = m;
        m = n, n = rows, c_rs = 1, c_cs = ldc;
    }
    int threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && 2.0 * m * n * k >= PARALLEL_MIN_FLOPS)
        threads = omp_get_max_threads();
#endif
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num(), nt = omp_get_num_threads();
#endif
        int64_t i0, i1, j0, j1;
        thread_share(t, nt, m, n, MR, NR, &i0, &i1, &j0, &j1);
        OPERAND a_share = {a.p + i0 * a.rs, a.rs, a.cs}, b_share = {b.p + j0 * b.cs, b.rs, b.cs};
        T *c_share = c + i0 * c_rs + j0 * c_cs;
        if (i0 < i1 && j0 < j1) {
            if (thread_buffers())
                FN(gemm_block)(i1 - i0, j1 - j0, k, alpha, a_share, b_share, beta, c_share, c_rs, c_cs,
                               (T *)buffers.a, (T *)buffers.b);
            else
                FN(plain_block)(i1 - i0, j1 - j0, k, alpha, a_share, b_share, beta, c_share, c_rs, c_cs);
        }
    }
}

/* cblas_?gemm with 64-bit sizes (the signature of OpenBLAS's ILP64 cblas_sgemm64_ and cblas_dgemm64_).
 * A column-major product is the row-major product of the transposes: C^T = B^T @ A^T. */
static void FN(tj_gemm)(int order, int ta, int tb, int64_t m, int64_t n, int64_t k, T alpha, const T *a,
                        int64_t lda, const T *b, int64_t ldb, T beta, T *c, int64_t ldc)
{
    if (order == COL_MAJOR)
        FN(row_major_gemm)(tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
    else
        FN(row_major_gemm)(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#undef ROWS
#undef DECLARE
#undef RANK1
#undef STORE
#undef SPILL
#undef NR
