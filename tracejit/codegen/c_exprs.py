"""Small C pieces: typed literals, index arithmetic, OpenMP pragmas, and the reduction table.

Reductions get their C from one table here (the reduction emitter is generic), so a new
reduction needs one entry, not a branch in the emitter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import dtypes

# Loops with at least this many iterations (whole domain) run on several threads.
PARALLEL_MIN_ELEMENTS = 100_000

# A parallel loop is cut into about this many chunks that the threads take in turn, rather than
# one fixed share per thread: a worker that starts late (woken from its passive sleep, or
# preempted on a busy machine) then does less, instead of the whole loop waiting for its half.
# Used only where no reduction crosses iterations, so results do not depend on the schedule.
PARALLEL_CHUNKS = 16
MIN_CHUNK_ELEMENTS = 4096  # below this the shared chunk counter costs more than it balances


def local_type(dtype) -> str:
    """C type of a local holding one element. bool elements are 1-byte `bool` in memory, but
    locals are `int` (always 0 or 1): gcc does not vectorize loops with `_Bool` temporaries."""
    return "int" if np.dtype(dtype) == dtypes.bool_ else dtypes.c_type(dtype)


def c_literal(value, dtype) -> str:
    """An exact C literal of `dtype` (typed, so float32 arithmetic stays float32)."""
    dtype = np.dtype(dtype)
    if dtype == dtypes.bool_:
        return "true" if bool(value) else "false"
    if dtype.kind in "iu":
        return _int_literal(int(value), dtype)
    x = float(value)
    if math.isnan(x):
        return "NAN" if dtype == dtypes.float32 else "(double)NAN"
    if math.isinf(x):
        return ("INFINITY" if x > 0 else "(-INFINITY)") if dtype == dtypes.float32 else \
            ("(double)INFINITY" if x > 0 else "(-(double)INFINITY)")
    text = str(np.float32(x)) if dtype == dtypes.float32 else repr(x)
    if not any(c in text for c in ".en"):
        text += ".0"
    if dtype == dtypes.float32:
        text += "f"
    return f"({text})" if text.startswith("-") else text


def _int_literal(x: int, dtype) -> str:
    bits = 32 if dtype == dtypes.int32 else 64
    if x == -(1 << (bits - 1)):
        return f"INT{bits}_MIN"
    text = str(x) if bits == 32 else f"INT64_C({x})"
    return f"({text})" if x < 0 else text


def index_expr(offset: int, terms: list[tuple[str, int]]) -> str:
    """offset + sum(var * stride), leaving out zero strides and a zero offset."""
    parts = [var if stride == 1 else f"{var} * {stride}" for var, stride in terms if stride != 0]
    if offset:
        parts.append(str(offset))
    return " + ".join(parts).replace("+ -", "- ") or "0"


def omp_pragma(text: str, parallel: bool, schedule: str = "") -> list[str]:
    """`#pragma omp <text>`; a `parallel for` pragma is used only when OpenMP is on (with
    `schedule`, see dynamic_schedule), and falls back to its simd part (if any) otherwise."""
    if not parallel:
        return [f"#pragma omp {text}"] if text else []
    fallback = text.replace("parallel for simd", "simd") if "parallel for simd" in text else ""
    lines = ["#ifdef _OPENMP", f"#pragma omp {text}{schedule}"]
    if fallback:
        lines += ["#else", f"#pragma omp {fallback}"]
    return lines + ["#endif"]


def dynamic_schedule(iterations: int, elements_per_iteration: int) -> str:
    """` schedule(dynamic, chunk)` for a parallel loop of `iterations` independent iterations:
    about PARALLEL_CHUNKS chunks of at least MIN_CHUNK_ELEMENTS elements each. A flat loop's
    chunks are whole cache lines (64 elements), so every chunk starts vector-aligned."""
    chunk = max(-(-iterations // PARALLEL_CHUNKS), -(-MIN_CHUNK_ELEMENTS // max(1, elements_per_iteration)))
    if elements_per_iteration == 1:
        chunk = -(-chunk // 64) * 64
    return f" schedule(dynamic, {chunk})"


# ---- reductions ------------------------------------------------------------------------------
@dataclass
class Reduction:
    decls: list[str]  # accumulator declarations (before the loop)
    update: str  # statement(s) run per element (`{x}` is a local, `{i}` the reduced index)
    clauses: list[str]  # OpenMP reduction clauses; empty with simd=False
    result: str  # expression of the final value
    simd: bool = True  # can run under `omp simd` / `omp parallel for ... reduction`


def _lowest(dtype) -> str:
    if dtypes.is_float(dtype):
        return "(-INFINITY)"
    if dtype == dtypes.bool_:
        return "false"
    return "INT32_MIN" if dtype == dtypes.int32 else "INT64_MIN"


def _highest(dtype) -> str:
    if dtypes.is_float(dtype):
        return "INFINITY"
    if dtype == dtypes.bool_:
        return "true"
    return "INT32_MAX" if dtype == dtypes.int32 else "INT64_MAX"


def _accumulate(op, init):
    def make(acc, x, i, in_dtype, out_dtype):
        ctype = dtypes.c_type(out_dtype)
        acc_type = "double" if out_dtype == dtypes.float32 else ctype  # numpy-level accuracy
        result = f"({ctype}){acc}" if acc_type != ctype else acc
        return Reduction([f"{acc_type} {acc} = {init};"], f"{acc} {op}= {x};", [f"{op}:{acc}"], result)

    return make


def _extremum(cmp, omp_op, bound, bool_op, bool_omp):
    def make(acc, x, i, in_dtype, out_dtype):
        ctype = dtypes.c_type(out_dtype)
        if out_dtype == dtypes.bool_:
            return Reduction([f"int {acc} = {bound(out_dtype)};"], f"{acc} = {acc} {bool_op} {x};",
                             [f"{bool_omp}:{acc}"], acc)
        decls = [f"{ctype} {acc} = {bound(out_dtype)};"]
        update = f"{acc} = {x} {cmp} {acc} ? {x} : {acc};"
        clauses = [f"{omp_op}:{acc}"]
        if not dtypes.is_float(out_dtype):
            return Reduction(decls, update, clauses, acc)
        nan = f"{acc}_nan"  # numpy propagates NaN; OpenMP's max/min would drop it
        nan_value = "NAN" if out_dtype == dtypes.float32 else "(double)NAN"
        return Reduction(decls + [f"int {nan} = 0;"], f"{update} {nan} |= {x} != {x};",
                         clauses + [f"|:{nan}"], f"{nan} ? {nan_value} : {acc}")

    return make


def _arg_extremum(cmp, bound):
    def make(acc, x, i, in_dtype, out_dtype):
        best = f"{acc}_best"
        nan_wins = f" || ({x} != {x} && {best} == {best})" if dtypes.is_float(in_dtype) else ""
        decls = [f"{local_type(in_dtype)} {best} = {bound(in_dtype)};", f"int64_t {acc} = 0;"]
        update = f"if ({x} {cmp} {best}{nan_wins}) {{ {best} = {x}; {acc} = {i}; }}"
        return Reduction(decls, update, [], acc, simd=False)  # first max wins: sequential

    return make


# Sums of float rows up to this many terms store their terms in a row on the stack and add them
# as numpy does (tj_sum_pairwise_*): the same bits as np.sum. Longer ones (and parallel ones)
# accumulate in double.
PAIRWISE_MAX_TERMS = 8192


def pairwise_sum(acc: str, x: str, i: str, extent: int, dtype, row: str | None = None) -> Reduction:
    """A sum over one loop of `extent` iterations: each term goes to {acc}_terms[i], and the
    result is tj_sum_pairwise_* of that row (see csrc/tracejit.h). `row`: where the loop already
    writes these very terms contiguously (a row kept for a later pass, or a row of an output),
    summed there instead of copied (no declarations, no update)."""
    add = f"tj_sum_pairwise_{dtypes.short_name(dtype)}"
    if row is not None:
        return Reduction([], "", [], f"{add}({row}, {extent})")
    return Reduction([f"{dtypes.c_type(dtype)} {acc}_terms[{extent}];"], f"{acc}_terms[{i}] = {x};", [],
                     f"{add}({acc}_terms, {extent})")


def is_pairwise_sum(prim_name: str, in_dtype, out_dtype, extent: int) -> bool:
    return (prim_name == "sum" and np.dtype(out_dtype).kind == "f" and np.dtype(in_dtype) == np.dtype(out_dtype)
            and 0 < extent <= PAIRWISE_MAX_TERMS)


REDUCTIONS = {
    "sum": _accumulate("+", "0"),
    "prod": _accumulate("*", "1"),
    "max": _extremum(">", "max", _lowest, "|", "|"),
    "min": _extremum("<", "min", _highest, "&", "&"),
    "argmax": _arg_extremum(">", _lowest),
    "argmin": _arg_extremum("<", _highest),
}
