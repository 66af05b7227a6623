"""The Primitive record and the table of all primitives. Each op is declared once, in ops/<family>.py."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np


class Kind(enum.Enum):
    ELEMENTWISE = "elementwise"  # out[i] = f(in0[i], in1[i], ...) with numpy broadcasting
    REDUCE = "reduce"  # reduction over `axes` (the axes are dropped from the shape)
    SHAPE = "shape"  # reshape / transpose / broadcast / slice / concatenate: data movement only
    GATHER = "gather"  # x[idx0, idx1, ...] with integer arrays
    SCATTER = "scatter"  # scatter_add: the transpose of gather
    MATMUL = "matmul"  # BLAS-backed
    SOURCE = "source"  # constants and iota: no array inputs
    CONTROL = "control"  # cond / while: nodes holding sub-graphs
    SCAN = "scan"  # out[..., i, ...] = out[..., i - 1, ...] + x[..., i, ...] along `axis` (cumsum)


class Aval(NamedTuple):
    """Abstract value: what a shape rule knows of an array."""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True, eq=False)
class Primitive:
    """All the rules of one op, on one screen.

    shape_rule(*avals, **params) -> Aval, or a list of Avals when multiple_results.
    reference(*arrays, **params) -> numpy result (the interpreter's oracle semantics).
    vjp(b, node, cts) -> one cotangent Value (or None for zero) per input; it emits IR through
        the GraphBuilder `b`, never computes numbers. None means "not differentiable".
    zero_vjp: piecewise-constant op (floor, sign, comparisons): its inputs get zero cotangents.
    c_expr(args, in_dtypes, out_dtype, **params) -> C expression; elementwise ops only.
    c_error(in_dtypes) -> (C condition over {0}, {1}, ..., message) or None: where the condition
        holds, numpy raises (the message starts with the exception's name: "ValueError: ...").
        A loop ORs the condition into a flag; the kernel returns the error after its loops.
    cheap: a few instructions in C (no call, no division): a later loop pass recomputes it from the
        kernel's inputs rather than keeping it in a per-row array (codegen/c_loop.py scratch_plan).
    c_fast(args, in_dtypes) -> (C expression, C flag expression) of a faster form that is right
        wherever the flag is 0, or None for these dtypes. A loop pass that can run twice uses it
        and ORs the flag; if set, the pass runs again with c_expr (codegen/c_loop.py).
    prune_outputs(node, live) -> the node without the outputs whose `live` flag is False (control
        flow: drops them from its regions too); None means every output is kept while one is live.
    rewrite(b, node, producer, uses) -> an equivalent Value emitted through `b` in cheaper, denser
        ops (a one-hot scatter as a select the loop kernels fuse), or None to keep the node;
        applied by passes/index_rewrites.py. `uses` counts the readers of each value.
    py_expr(args, params, node, ctx) -> the op as one numpy expression for ir/python.py (to_python);
        ctx is an ops/py_spelling.PyModule for module-level constants and helpers. Control flow
        has none: ir/python.py writes its regions out as nested functions.
    """

    name: str
    kind: Kind
    shape_rule: Callable
    reference: Callable
    vjp: Callable | None = None
    zero_vjp: bool = False
    c_expr: Callable | None = None
    c_fast: Callable | None = None
    c_error: Callable | None = None
    cheap: bool = False
    multiple_results: bool = False
    commutative: bool = False
    prune_outputs: Callable | None = None
    rewrite: Callable | None = None
    py_expr: Callable | None = None

    def __repr__(self) -> str:
        return f"<prim {self.name}>"


PRIMITIVES: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    """Add `prim` to the table, refusing an op that lacks a rule its kind requires."""
    if prim.name in PRIMITIVES:
        raise ValueError(f"primitive {prim.name!r} registered twice")
    if prim.shape_rule is None or prim.reference is None:
        raise ValueError(f"primitive {prim.name!r} needs a shape_rule and a reference")
    if prim.kind is Kind.ELEMENTWISE and prim.c_expr is None:
        raise ValueError(f"elementwise primitive {prim.name!r} needs a c_expr")
    PRIMITIVES[prim.name] = prim
    return prim


def c_template(fmt: str) -> Callable:
    """A c_expr from a format string: {0},{1},{2} operands; {t} short dtype of the last operand
    (f32/f64/i32/i64/bool); {f} libm suffix ('f' for float32, '' otherwise); {T} output C type."""
    from .. import dtypes

    def render(args, in_dtypes, out_dtype, **params):
        last = in_dtypes[-1]
        return fmt.format(
            *args,
            t=dtypes.short_name(last),
            f="f" if last == dtypes.float32 else "",
            T=dtypes.c_type(out_dtype),
        )

    render.template = fmt
    return render


def differentiable(prim: Primitive) -> bool:
    return prim.vjp is not None or prim.zero_vjp
