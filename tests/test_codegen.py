"""The generated C: compiles cleanly under -Wall -Werror, reads like the IR, fuses as promised
(kernel counts, Inductor-style), and the runtime calling it is safe (strided inputs, no writes
to inputs, no aliased outputs, signature checks)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import tracejit as tj
from tracejit.compile.toolchain import compile_shared, default_flags
from tracejit.passes.fusion import fuse
from tracejit.passes.pipeline import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "bench"))  # shared/ sits beside the repo
try:
    import workloads as W
except ImportError:  # pragma: no cover - the shared workloads are part of the checkout's environment
    W = None

F32 = np.float32


def rng_arrays(*shapes, dtype=F32, seed=0):
    r = np.random.default_rng(seed)
    return tuple(r.standard_normal(s).astype(dtype) for s in shapes)


def w1(a, b, c):
    return np.tanh(a * b + c) * 0.5 + np.exp(-a * a)


def w2a(a, b):
    return np.sum((a - b) ** 2)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def xent(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def mlp(x, w1, b1, w2):
    return np.tanh(x @ w1 + b1) @ w2.T


PROGRAMS = {
    "w1": (w1, rng_arrays(100, 100, 100)),
    "w2a": (w2a, rng_arrays(1000, 1000)),
    "softmax": (softmax, rng_arrays((8, 16))),
    "xent": (xent, rng_arrays((8, 10)) + (np.arange(8) % 10,)),
    "mlp": (mlp, rng_arrays((4, 6), (6, 5), (5,), (3, 5))),
    "concat_gather": (lambda x, i: np.concatenate([x[i], x.T[:2]], axis=0), (rng_arrays((3, 3))[0], np.array([2, 0]))),
    "argmax_var": (lambda x: (x.argmax(axis=0), np.var(x, axis=1), x.astype(np.int32).min()), rng_arrays((5, 7))),
    "xent_grad": (tj.grad(xent), rng_arrays((8, 10)) + (np.arange(8) % 10,)),
    "f64_where": (lambda x: np.where(x > 0, np.sqrt(np.abs(x)), x ** 3), rng_arrays((2, 3, 4), dtype=np.float64)),
}


def lower(fn, args):
    return tj.jit(fn).lower(*args).compile()


def kernel_count(fn, args) -> int:
    return len(lower(fn, args).program.kernels)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_c_compiles_with_wall_werror(name, tmp_path):
    fn, args = PROGRAMS[name]
    exe = lower(fn, args)
    compile_shared(exe.c_source, tmp_path, "tj_test", flags=default_flags() + ["-Wall", "-Wextra", "-Werror",
                                                                                 "-Wno-unused-parameter"])
    np.testing.assert_allclose(np.asarray(exe(*args)[0], np.float64), np.asarray(fn(*args)[0] if isinstance(
        fn(*args), tuple) else fn(*args), np.float64), rtol=1e-5, atol=1e-5)


def test_c_reads_like_the_ir():
    exe = lower(*PROGRAMS["w1"])
    src = exe.c_source
    assert "int tj_main(" in src and '#include "tracejit.h"' in src
    for v in exe.graph.inputs:
        assert re.search(rf"const float \*{v.name}\b", src), f"input %{v.name} is not a named C parameter"
    for node in exe.graph.nodes:
        if node.prim.name != "constant":
            local = node.out.name if not node.out.name[0].isdigit() else "v" + node.out.name
            assert re.search(rf"const float {local} = ", src), f"%{node.out.name} has no C local named after it"
    assert re.search(r"/\* fused: multiply, add, tanh, .*\(test_codegen\.py:\d+\) \*/", src)
    assert re.search(r"static void tj_k0_\w+\(", src)
    assert all(sym.startswith(("tj_", "scipy_")) for sym in re.findall(r"^(?:static )?\w+ \**(\w+)\(", src, re.M))


def test_ir_text_lists_kernels():
    exe = lower(*PROGRAMS["softmax"])
    assert exe.ir_text.startswith("def ")
    assert re.search(r"kernel tj_k0_max_sub_exp_sum: fuses %\w+( %\w+)* -> %\w+", exe.ir_text)


# ---- fusion, asserted by kernel counts ----------------------------------------------------------
def test_w1_is_one_kernel_without_temporaries():
    exe = lower(*PROGRAMS["w1"])
    assert len(exe.program.kernels) == 1
    assert exe.peak_temp_bytes == 0


def test_w2a_is_one_kernel_without_temporaries():
    exe = lower(*PROGRAMS["w2a"])
    assert len(exe.program.kernels) == 1
    assert exe.peak_temp_bytes == 0
    assert "tj_sum_pairwise_f32" in exe.c_source  # up to PAIRWISE_MAX_TERMS terms: added as np.sum does


def test_long_float32_sums_accumulate_in_double():
    exe = lower(w2a, rng_arrays(20_000, 20_000))
    assert "reduction(+:" in exe.c_source and "double" in exe.c_source and "pairwise" not in exe.c_source


def test_softmax_fuses_into_at_most_three_kernels():
    exe = lower(*PROGRAMS["softmax"])
    assert len(exe.program.kernels) <= 3
    assert exe.peak_temp_bytes == 0


def test_broadcast_is_read_with_stride_zero_not_copied():
    x, b = rng_arrays((64, 32), (32,))
    exe = lower(lambda x, b: np.exp(x + b[None, :]) * np.broadcast_to(b, (64, 32)), (x, b))
    assert len(exe.program.kernels) == 1 and exe.peak_temp_bytes == 0


def test_reshape_and_transpose_of_inputs_are_views():
    x = rng_arrays((6, 8))[0]
    exe = lower(lambda x: x.reshape(3, 16).reshape(48).sum() + x.T[1:4].max(), (x,))
    assert exe.peak_temp_bytes <= 2 * 64  # only the two scalars: no copy of x
    np.testing.assert_allclose(exe(x)[0], x.sum() + x.T[1:4].max(), rtol=1e-5)


def test_matmul_epilogue_and_transposed_operand():
    x, w, b, w2 = PROGRAMS["mlp"][1]
    exe = lower(mlp, (x, w, b, w2))
    kinds = [k.kind for k in exe.kernel_graph.kernels]
    assert kinds == ["loop", "matmul"], kinds  # matmul+add+tanh, then the second matmul
    assert "TJ_TRANS" in exe.c_source  # w2.T is passed to BLAS transposed, not copied
    assert re.search(r"/\* fused: matmul, add, tanh", exe.c_source)


def test_reduction_with_elementwise_epilogue_is_one_kernel():
    x = rng_arrays((16, 32))[0]
    assert kernel_count(lambda x: np.sqrt(np.sum(x * x, axis=1) / 32.0) + 1.0, (x,)) == 1


def test_parallel_loops_are_guarded():
    exe = lower(*PROGRAMS["w2a"])
    assert "#pragma omp parallel" not in exe.c_source  # 1000 elements: under the threshold
    a, b = rng_arrays(300_000, 300_000)
    exe = lower(w2a, (a, b))
    assert re.search(r"#ifdef _OPENMP\n#pragma omp parallel for simd reduction\(\+:\w+\)", exe.c_source)
    np.testing.assert_allclose(exe(a, b)[0], np.sum((a.astype(np.float64) - b) ** 2), rtol=1e-6)


def _schedule_chunks(c_source: str) -> list[int]:
    return [int(c) for c in re.findall(r"#pragma omp parallel for[^\n]* schedule\(dynamic, (\d+)\)", c_source)]


def test_parallel_elementwise_loops_take_dynamic_chunks():
    """Independent iterations go in chunks (a late thread does less, it does not hold the loop);
    a flat loop's chunks are whole cache lines; the results are numpy's whatever the schedule."""
    a, b, c = rng_arrays(300_001, 300_001, 300_001)
    exe = lower(w1, (a, b, c))
    (chunk,) = _schedule_chunks(exe.c_source)
    assert chunk % 64 == 0 and 4096 <= chunk <= a.size // 8
    for _ in range(3):
        np.testing.assert_allclose(exe(a, b, c)[0], w1(a, b, c), rtol=2e-6, atol=1e-7)
    x = rng_arrays((1000, 300))[0]
    exe = lower(softmax, (x,))
    assert _schedule_chunks(exe.c_source) == [63]  # ~16 chunks of rows, each >= 4096 elements
    np.testing.assert_allclose(exe(x)[0], softmax(x), rtol=2e-6, atol=1e-8)


def test_parallel_reductions_keep_a_fixed_schedule():
    """A sum split across threads adds its partial sums in an order set by the schedule: a fixed
    one, so the same inputs give bit-identical results on every call."""
    a, b = rng_arrays(300_000, 300_000)
    exe = lower(w2a, (a, b))
    assert _schedule_chunks(exe.c_source) == []
    first = exe(a, b)[0]
    assert all(np.array_equal(exe(a, b)[0], first) for _ in range(5))


# ---- runtime safety ------------------------------------------------------------------------------
def test_non_contiguous_inputs():
    base = rng_arrays((8, 10))[0]
    fn = tj.jit(lambda x: np.exp(x) * 2 - x.sum(axis=0))
    for x in (base[:, ::2], base.T, base[::-1], np.asfortranarray(base)):
        np.testing.assert_allclose(fn(x), np.exp(x) * 2 - x.sum(axis=0), rtol=1e-5, atol=1e-5)


def test_inputs_unchanged_and_outputs_never_alias():
    x, y = rng_arrays((4, 3), (4, 3))
    x0, y0 = x.copy(), y.copy()
    two = x * 2

    def f(x, y):
        z = x * 2
        return x, z, z, y.reshape(12), np.float32(1.5) + np.zeros_like(x), z.T

    outs = tj.jit(f)(x, y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    for n, a in enumerate(outs):
        for arr in (x, y):
            assert not np.shares_memory(a, arr), f"output {n} aliases an input"
        for m, b in enumerate(outs[:n]):
            assert not np.shares_memory(a, b), f"outputs {m} and {n} alias"
    np.testing.assert_array_equal(outs[1], two)
    np.testing.assert_array_equal(outs[2], two)
    np.testing.assert_array_equal(outs[5], two.T)
    np.testing.assert_array_equal(outs[4], np.full((4, 3), 1.5, F32))


def test_executable_checks_its_signature():
    x = rng_arrays((4, 3))[0]
    exe = lower(lambda x: x + 1, (x,))
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*compiled for shape \(4, 3\)"):
        exe(x.T.copy())
    with pytest.raises(TypeError, match="dtype float64"):
        exe(x.astype(np.float64))
    with pytest.raises(TypeError, match="takes 1"):
        exe(x, x)


@pytest.mark.skipif(W is None, reason="shared workloads not available")
def test_workloads_match_numpy():
    checks = [(W.w1_elementwise, W.w1_inputs(1000)), (W.w2_sum_sq_diff, W.w2_inputs(1000)),
              (W.w2_softmax, W.w2_softmax_inputs(16, 32)), (W.w3_xent, W.w3_inputs(16, 10)),
              (W.w4_loss, W.w4_inputs(batch=8)[:3]), (W.w5_tiny, W.w5_inputs())]
    for fn, args in checks:
        np.testing.assert_allclose(tj.jit(fn)(*args), fn(*args), rtol=2e-5, atol=1e-6, err_msg=fn.__name__)


def test_kernel_graph_of_the_optimized_w4_loss():
    if W is None:
        pytest.skip("shared workloads not available")
    params, x, y, _ = W.w4_inputs(batch=8)
    graph = optimize(tj.jit(W.w4_loss).lower(params, x, y).traced.graph)
    kinds = [k.kind for k in fuse(graph).kernels]
    assert kinds.count("matmul") == 0  # every matmul carries its bias/activation epilogue
    # 3 matmul+epilogue loops, the loss loop, and the label pick x[arange, y] moved onto the
    # logits' operands (iota + one small gather each), so no log-softmax array is stored
    assert len(kinds) <= 7, kinds


def test_large_constants_are_passed_in_small_ones_are_static():
    big = np.arange(3000.0, dtype=F32).reshape(30, 100)
    small = np.arange(6, dtype=np.int32)
    def f(x):
        return (x + big).sum(axis=1), x[:, :6] * small

    fn = tj.jit(f)
    x = rng_arrays((30, 100))[0]
    for got, want in zip(fn(x), f(x)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    exe = fn.lower(x).compile()
    assert [h.shape for h in exe.program.hidden] == [(30, 100)]
    assert re.search(r"static const \w+ \w+\[6\] = \{", exe.c_source)


def test_workspace_is_reused_and_shared_safely_between_threads():
    import threading

    x = rng_arrays((64, 100))[0]
    fn = tj.jit(lambda x: (np.exp(x).T.reshape(-1)[::3].sum(), (x @ x.T).max(axis=1)))
    exe = fn.lower(x).compile()
    assert exe.peak_temp_bytes > 0  # the transposed exp and the matmul product are temporaries
    want = fn(x)
    results = []

    def work():
        for _ in range(20):
            results.append(exe(x))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80
    for got in results:
        for g, w_ in zip(got, want):
            np.testing.assert_array_equal(g, w_)


def test_reduction_over_leading_axes_runs_along_the_contiguous_axis():
    x = rng_arrays((64, 33))[0]
    x[5, 7] = np.nan

    def f(x):
        return x.sum(axis=0), np.max(x, axis=0), (x * x).min(axis=0) + 1.0

    exe = lower(f, (x,))
    assert "the reduced axes lead" in exe.c_source
    for got, want in zip(exe(x), f(x)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, equal_nan=True)


def test_argument_names_that_clash_with_c_get_renamed():
    def f(int, exp, i0, tj_a, main):  # noqa: A002 - names chosen to collide with C and our symbols
        return np.exp(int) * exp + i0 - tj_a * main

    args = rng_arrays(4, 4, 4, 4, 4)
    np.testing.assert_allclose(tj.jit(f)(*args), f(*args), rtol=1e-6)


def test_softmax_cross_entropy_gradient_keeps_rows_in_scratch():
    logits, _ = rng_arrays((16, 40), (1,))
    labels = np.arange(16) % 40
    exe = lower(tj.grad(xent), (logits, labels))
    # exp(x - max) computed in one pass only (its fast form, and the full-range one for a row that needs it)
    assert len(re.findall(r"\btj_exp_fast_f32\(", exe.c_source)) == 1
    assert len(re.findall(r"\btj_exp_f32\(", exe.c_source)) == 1
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    want = shifted / shifted.sum(axis=1, keepdims=True)
    want[np.arange(16), labels] -= 1
    np.testing.assert_allclose(exe(logits, labels)[0], want / 16, rtol=1e-5, atol=1e-7)
    # Three passes over a row: max; exp and its sum; the gradient. The maximum's tie mask is gone
    # (the loss does not depend on the maximum: autodiff/invariance.py), and the one-hot row of the
    # labels, cheap ops on inputs only, is recomputed in the last pass rather than kept.
    assert "pass 3 of 3 over the reduced axes" in exe.c_source
    assert len(re.findall(r"kept for a later pass", exe.c_source)) == 1  # exp(x - max) alone


# ---- float sums add as np.sum does (csrc/tracejit.h tj_sum_pairwise_*) ------------------------------
PAIRWISE_LENGTHS = [1, 7, 8, 9, 17, 127, 128, 129, 257, 1000, 4097, 8192]  # around each block edge


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_and_whole_sums_are_numpys_bits(dtype):
    rng = np.random.default_rng(21)
    for n in PAIRWISE_LENGTHS:  # a new function per length: one signature each
        row_sum, whole_sum = tj.jit(lambda x: x.sum(axis=1)), tj.jit(lambda x: x[0].sum())
        x = (rng.standard_normal((3, n)) * 10.0 ** rng.uniform(-4, 4, (3, n))).astype(dtype)
        np.testing.assert_array_equal(row_sum(x), np.sum(x, axis=1), err_msg=f"n={n}")
        np.testing.assert_array_equal(whole_sum(x), np.sum(x[0]), err_msg=f"n={n}")
        assert row_sum(x).dtype == dtype


def test_a_fused_sum_of_computed_terms_is_numpys_sum_of_them():
    """The softmax denominator: exp(x - max) summed in the same loop that computes it."""
    x = np.random.default_rng(22).standard_normal((6, 1000)).astype(np.float32)

    def terms_and_sum(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e, e.sum(axis=1)

    e, total = tj.jit(terms_and_sum)(x)
    np.testing.assert_array_equal(total, np.sum(e, axis=1))
    assert "_acc_terms" not in tj.jit(terms_and_sum).lower(x).c_source  # summed in the output's row


def test_a_sum_of_a_row_kept_for_a_later_pass_is_taken_in_that_row():
    x = np.random.default_rng(23).standard_normal((5, 700)).astype(np.float32)

    def sum_then_reuse(x):  # correctly rounded ops only, so numpy's terms are ours bit for bit
        e = (x - x.max(axis=1, keepdims=True)) * np.float32(0.5)
        total = e.sum(axis=1)
        return total, (e * total[:, None]).sum(axis=1)

    f = tj.jit(sum_then_reuse)
    source = f.lower(x).c_source
    assert re.search(r"tj_sum_pairwise_f32\(v\w*_row, 700\)", source), source
    e = (x - x.max(axis=1, keepdims=True)) * np.float32(0.5)
    total, again = f(x)
    np.testing.assert_array_equal(total, np.sum(e, axis=1))
    np.testing.assert_array_equal(again, np.sum(e * np.sum(e, axis=1)[:, None], axis=1))


def test_sums_of_signed_zeros_are_positive_zero_as_in_numpy():
    z = np.full((2, 20), -0.0, np.float32)
    got = tj.jit(lambda z: z.sum(axis=1))(z)
    assert not np.any(np.signbit(got)) and not np.any(np.signbit(np.sum(z, axis=1)))


# ---- float32 exp in row passes: fast form, and the pass again where a row needs the full range ----------
def _rows_that_need_the_full_range(cols: int) -> np.ndarray:
    """Row i, shifted by its max, holds exp arguments in a different range: ordinary ones, then one
    with a subnormal result, an overflow, a nan, -inf (fast: 0) and a result just above 2^-126."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((8, cols)).astype(np.float32)
    x[1, 3] = -95.0       # exp(-95 - max) is subnormal
    x[2, :] -= 90.0
    x[2, 0] = 0.0         # the max: the others give subnormals too
    x[3, 5] = np.nan
    x[4, 6] = -np.inf     # exp(-inf) = 0 in the fast form, no rerun
    x[5, 7] = -86.0       # exp(-86 - max) just above the normal floor
    x[6, 9] = -103.5
    return x


def test_exp_in_a_row_pass_is_the_same_function_whichever_path_computes_it():
    """Rows of a softmax-like pass run the fast exp; a row with a subnormal result or a nan runs the
    pass again with tj_exp_f32. Each element must be what a plain elementwise exp (always
    tj_exp_f32) gives for it, bit for bit, and numpy's within 2 ulp, in every row."""
    x = _rows_that_need_the_full_range(300)

    def exp_and_sum(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e, e.sum(axis=1)

    row_pass = tj.jit(exp_and_sum)
    source = row_pass.lower(x).c_source
    assert "tj_exp_fast_f32(" in source and re.search(r"if \(tj_exp_slow_\d+\)", source), source
    e, total = row_pass(x)
    shifted = x - np.where(np.isnan(x).any(axis=1, keepdims=True), np.nan, x.max(axis=1, keepdims=True))
    plain = tj.jit(np.exp)(shifted)
    assert "tj_exp_fast_f32" not in tj.jit(np.exp).lower(shifted).c_source
    nan = np.isnan(plain)
    np.testing.assert_array_equal(np.isnan(e), nan)
    assert e[~nan].tobytes() == plain[~nan].tobytes()
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_max_ulp(e[~nan], np.exp(shifted)[~nan], maxulp=2)
    np.testing.assert_array_equal(total, np.sum(e, axis=1))
    assert e[1, 3] > 0 and e[1, 3] < np.finfo(np.float32).tiny and e[4, 6] == 0.0


def test_a_pass_that_rewrites_what_it_reads_keeps_the_full_range_exp():
    """A pass may run twice only if it writes no buffer it reads. The last pass here reads e back
    from the output buffer it overwrites (see stash_plan), so its exp stays tj_exp_f32."""
    x = _rows_that_need_the_full_range(64)

    def f(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return np.exp(e / e.sum(axis=1, keepdims=True))

    source = tj.jit(f).lower(x).c_source
    last_pass = source[source.index("pass 3 of 3"):]
    assert "tj_exp_f32(" in last_pass and "tj_exp_fast_f32(" not in last_pass, source
    assert "tj_exp_slow_2" in source  # the first exp pass writes only: fast form
    with np.errstate(invalid="ignore", over="ignore"):
        want = f(x)
    np.testing.assert_allclose(tj.jit(f)(x), want, rtol=1e-6, equal_nan=True)
