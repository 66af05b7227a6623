"""Kernel -> C function text: the pieces every emitter shares, the BLAS call, and the dispatch
to one emitter per kernel kind (loop: c_loop.py; gather, scatter_add, concatenate, iota:
c_indexed.py; matmul: here; control flow: c_control.py).

Each function takes the storage it reads (`const T *TJ_RESTRICT`) and writes (`T *TJ_RESTRICT`),
named after the IR values; kernels that can fail (index checks) return a non-zero error code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes
from ..ir.graph import Value
from ..passes.fusion import Kernel, blas_layout, is_scalar_constant
from ..passes.views import own_view
from .c_exprs import c_literal, index_expr


class Writer:
    """Lines of C with indentation."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 1

    def __call__(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line if line.startswith("#") else "    " * self.depth + line)

    def open(self, header: str) -> None:
        self(header + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self("}")


@dataclass
class KernelText:
    name: str
    text: str
    params: list = field(default_factory=list)  # (root Value, written: bool) in parameter order
    can_fail: bool = False


class KernelContext:
    """What every kernel emitter needs from the program: names, views, constants, error codes."""

    def __init__(self, names, views, producer, errors):
        self.names, self.views, self.producer, self.errors = names, views, producer, errors

    def literal_of(self, value: Value) -> str | None:
        """The C literal standing for `value` when it reads a scalar constant, else None."""
        view = self.views.get(value)
        root = view.root if view is not None else value
        node = self.producer.get(root)
        if is_scalar_constant(node):
            return c_literal(node.params["value"].reshape(-1)[0], root.dtype)
        return None

    def add_error(self, message: str) -> int:
        self.errors.append(message)
        return len(self.errors)


class Params:
    def __init__(self):
        self.order: list[Value] = []
        self.written: set[Value] = set()

    def use(self, root: Value, written: bool = False) -> None:
        if root not in self.order:
            self.order.append(root)
        if written:
            self.written.add(root)

    def signature(self, names) -> str:
        parts = []
        for root in self.order:
            const = "" if root in self.written else "const "
            parts.append(f"{const}{dtypes.c_type(root.dtype)} *TJ_RESTRICT {names.buffer(root)}")
        return ", ".join(parts) or "void"


def fused_comment(kernel: Kernel, ops: list[str]) -> str:
    locs = []
    for node in kernel.all_nodes():
        if node.loc and node.loc not in locs:
            locs.append(node.loc)
    where = f"  ({', '.join(locs)})" if locs else ""
    return f"/* fused: {', '.join(ops)}{where.replace('*/', '* /')} */"


def function_text(name, kernel, ops, params: Params, names, w: Writer, can_fail: bool) -> KernelText:
    ret = "int" if can_fail else "void"
    sig = params.signature(names)
    extra = ", int64_t *TJ_RESTRICT tj_bad_index" if can_fail else ""
    if extra and sig == "void":
        sig, extra = extra[2:], ""
    head = [fused_comment(kernel, ops), f"static {ret} {name}({sig}{extra})", "{"]
    tail = ["    return 0;"] if can_fail else []
    return KernelText(name, "\n".join(head + w.lines + tail + ["}"]), list(params.order), can_fail)


# ---- matmul --------------------------------------------------------------------------------------
def emit_gemm(ctx: KernelContext, kernel: Kernel, w: Writer, params: Params) -> None:
    """C[b] = A[b] @ B[b] through cblas, one call per batch index (broadcast batch strides).
    alpha = 1 and beta = 0 only: an epilogue folded into BLAS as `beta * C + alpha * acc` would
    round differently from numpy's separately rounded operations (API.md: same results)."""
    node = kernel.nodes[0]
    a, b = kernel.operands
    out = ctx.views[node.out].root  # the product's own buffer, or the graph output it is written into
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = out.shape[:-2]
    names = ctx.names
    for root, written in ((ctx.views[a].root, False), (ctx.views[b].root, False), (out, True)):
        params.use(root, written)
    if m == 0 or n == 0 or out.size == 0:
        return
    if k == 0:
        w(f"memset({names.buffer(out)}, 0, {out.size * out.dtype.itemsize});")
        return
    loops = [f"b{j}" for j in range(len(batch))]
    for var, extent in zip(loops, batch):
        w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
    operands = []
    for value in (a, b):
        view = ctx.views[value]
        trans, ld = blas_layout(view, value.shape)
        shift = len(batch) - (value.ndim - 2)
        terms = [(loops[j + shift], s if value.shape[j] != 1 else 0) for j, s in enumerate(view.strides[:-2])]
        operands.append((trans, ld, f"{names.buffer(view.root)} + {index_expr(view.offset, terms)}"))
    c_terms = list(zip(loops, [int(x) for x in own_view(out).strides[:-2]]))
    (ta, lda, pa), (tb, ldb, pb) = operands
    trans = lambda t: "TJ_TRANS" if t else "TJ_NO_TRANS"  # noqa: E731
    w(f"tj_gemm_{dtypes.short_name(out.dtype)}({trans(ta)}, {trans(tb)}, {m}, {n}, {k}, 1, {pa}, {lda}, "
      f"{pb}, {ldb}, 0, {names.buffer(out)} + {index_expr(0, c_terms)}, {n});")
    for _ in batch:
        w.close()


def emit_matmul_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    w, params = Writer(), Params()
    emit_gemm(ctx, kernel, w, params)
    return function_text(name, kernel, ops, params, ctx.names, w, can_fail=False)


def emit_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops: list[str]) -> KernelText:
    from .c_indexed import EMITTERS
    from .c_loop import LoopEmitter

    if kernel.kind == "loop":
        return LoopEmitter(ctx, kernel).emit(name, ops)
    if kernel.kind == "control":  # its regions compile through emit_kernel again
        from .c_control import emit_control

        return emit_control(ctx, kernel, name, ops)
    emitter = {"matmul": emit_matmul_kernel, **EMITTERS}[kernel.kind]
    return emitter(ctx, kernel, name, ops)
