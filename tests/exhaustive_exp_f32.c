/* exhaustive_exp_f32.c -- csrc/tracejit.h's float32 exp on every one of the 2^32 inputs.
 *
 * Not part of the pytest run (about 50 s on one core); test_math.py keeps a sweep of every
 * 1021st input under test. Run it after changing tj_exp_f32 or its fast form:
 *
 *   gcc -O3 -march=native -std=gnu11 -fno-math-errno -ffp-contract=off -fwrapv -fopenmp-simd \
 *       -Icsrc tests/exhaustive_exp_f32.c -o /tmp/exhaustive_exp -lm && /tmp/exhaustive_exp
 *
 * It prints the largest error of tj_exp_f32 in ulps of the correctly rounded result (against
 * double exp, rounded), counts nan or inf where the reference differs, and counts inputs where
 * the fast form's flag is clear but its bits differ from tj_exp_f32's. Exits 1 on any problem.
 * Last run (2026-11-27): max 1.081 ulp at 0x1.4cbbcep+2, no nan/inf differences, fast form
 * equal wherever its flag is clear (1039128410 inputs flagged).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tracejit.h"

enum { BLOCK = 1 << 16 };

/* The loop generated code runs: vectorized, as in a kernel. */
static void run(const float *restrict x, float *restrict full, float *restrict fast, int *restrict flag, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++) {
        full[i] = tj_exp_f32(x[i]);
        fast[i] = tj_exp_fast_f32(x[i]);
        flag[i] = tj_exp_outside_fast_f32(x[i]);
    }
}

static double ulp_of(float correctly_rounded)
{
    float a = fabsf(correctly_rounded);
    if (a < 0x1p-126f)
        return 0x1p-149;
    return (double)(nextafterf(a, INFINITY) - a);
}

int main(void)
{
    static float x[BLOCK], full[BLOCK], fast[BLOCK];
    static int flag[BLOCK];
    double max_err = 0;
    float worst = 0;
    long nan_wrong = 0, inf_wrong = 0, fast_differs = 0, flagged = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += BLOCK) {
        for (int i = 0; i < BLOCK; i++) {
            uint32_t bits = (uint32_t)(base + i);
            memcpy(&x[i], &bits, sizeof bits);
        }
        run(x, full, fast, flag, BLOCK);
        for (int i = 0; i < BLOCK; i++) {
            if (flag[i])
                flagged++;
            else if (memcmp(&full[i], &fast[i], sizeof(float)) != 0 && !(isnan(full[i]) && isnan(fast[i])))
                fast_differs++;
            if (isnan(x[i])) {
                nan_wrong += !isnan(full[i]);
                continue;
            }
            double ref = exp((double)x[i]);
            float rounded = (float)ref;
            if (!isfinite(rounded) || !isfinite(full[i])) {
                inf_wrong += full[i] != rounded;
                continue;
            }
            double err = fabs((double)full[i] - ref) / ulp_of(rounded);
            if (err > max_err) {
                max_err = err;
                worst = x[i];
            }
        }
    }
    printf("tj_exp_f32: max %.3f ulp at %a; nan wrong %ld; inf wrong %ld; "
           "fast form differs where not flagged %ld; flagged %ld\n",
           max_err, worst, nan_wrong, inf_wrong, fast_differs, flagged);
    return (max_err > 4.0 || nan_wrong || inf_wrong || fast_differs) ? 1 : 0;
}
