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
from ..passes.views import is_contiguous, own_view
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

    def __init__(self, names, views, producer, errors, uses=None):
        self.names, self.views, self.producer, self.errors = names, views, producer, errors
        self.uses = uses  # Value -> reader nodes, when known (the top-level program)

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
def emit_gemm(ctx: KernelContext, kernel: Kernel, w: Writer, params: Params,
              update: "GemmUpdate | None" = None) -> None:
    """C[b] = A[b] @ B[b] through cblas, one call per batch index (broadcast batch strides).
    With `update`, C is update.dest and receives dest = base + alpha * (A @ B) instead."""
    node = kernel.nodes[0]
    a, b = kernel.operands
    out = update.dest if update is not None else node.out
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = out.shape[:-2]
    names = ctx.names
    for root, written in ((ctx.views[a].root, False), (ctx.views[b].root, False), (out, True)):
        params.use(root, written)
    if m == 0 or n == 0 or out.size == 0:
        return
    if update is not None:
        update.copy_base(ctx, w, params)
    if k == 0:
        if update is None:
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
    alpha, beta = (update.alpha, "1") if update is not None else ("1", "0")
    w(f"tj_gemm_{dtypes.short_name(out.dtype)}({trans(ta)}, {trans(tb)}, {m}, {n}, {k}, {alpha}, {pa}, {lda}, "
      f"{pb}, {ldb}, {beta}, {names.buffer(out)} + {index_expr(0, c_terms)}, {n});")
    for _ in batch:
        w.close()


def emit_matmul_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    w, params = Writer(), Params()
    emit_gemm(ctx, kernel, w, params)
    return function_text(name, kernel, ops, params, ctx.names, w, can_fail=False)


# ---- dest = base + alpha * (A @ B): the gemm accumulates into the destination --------------------
@dataclass
class GemmUpdate:
    """A loop epilogue `base - s * mm` (or `base + s * mm`, `base ± mm`) over a matmul's whole
    output, with s a scalar: BLAS computes it (C = base, then C += alpha * A @ B, beta = 1), so
    the product never gets a buffer of its own and no loop reads it back (an SGD update).
    BLAS rounds `C + alpha * acc` its own way (a fused multiply-add in its kernels), so an
    element may differ from the two separately rounded numpy operations in the last bit."""

    dest: Value
    base: Value
    alpha: str  # C expression
    scale_root: Value | None = None  # storage the scalar s is read from (None: a literal)

    def copy_base(self, ctx: KernelContext, w: Writer, params: Params) -> None:
        view = ctx.views[self.base]
        params.use(view.root)
        src = f"{ctx.names.buffer(view.root)} + {view.offset}" if view.offset else ctx.names.buffer(view.root)
        w(f"memcpy({ctx.names.buffer(self.dest)}, {src}, {self.dest.size * self.dest.dtype.itemsize});")


def gemm_update(ctx: KernelContext, kernel: Kernel) -> GemmUpdate | None:
    """The GemmUpdate a loop kernel spells, or None (see GemmUpdate)."""
    if kernel.kind != "loop" or len(kernel.matmuls) != 1 or len(kernel.stores) != 1:
        return None
    mm = kernel.matmuls[0].nodes[0].out
    dest, result = kernel.stores[0]
    if ctx.uses is None or any(r not in kernel.nodes for r in ctx.uses.get(mm, ())):
        return None  # another kernel reads the product: it needs its own buffer
    if mm.ndim != 2 or mm.dtype.kind != "f" or tuple(result.shape) != tuple(mm.shape) or result.dtype != mm.dtype:
        return None
    form = _affine_form(ctx, kernel.nodes, mm, result)
    if form is None:
        return None
    base, alpha, scale_root = form
    view = ctx.views.get(base)
    if (base is mm or base in kernel.member_values or view is None or ctx.literal_of(base) is not None
            or tuple(base.shape) != tuple(mm.shape) or base.dtype != mm.dtype or not is_contiguous(view, base.shape)):
        return None
    return GemmUpdate(dest, base, alpha, scale_root)


def _affine_form(ctx: KernelContext, nodes, mm: Value, result: Value):
    """(base, alpha, scale root) when `nodes` compute result = base + alpha * mm: `base ± mm`,
    or `multiply(s, mm)` followed by `base + that` / `base - that`."""
    if not nodes or nodes[-1].out is not result or len(nodes) > 2 or len(nodes[-1].inputs) != 2:
        return None
    scaled, scale, scale_root = mm, "1", None
    if len(nodes) == 2:
        found = _scale_of(ctx, nodes[0], mm)
        if found is None:
            return None
        scaled, (scale, scale_root) = nodes[0].out, found
    name, (x, y) = nodes[-1].prim.name, nodes[-1].inputs
    if name == "add" and (x is scaled) != (y is scaled):
        return (y if x is scaled else x), scale, scale_root
    if name == "subtract" and y is scaled and x is not scaled:
        return x, f"-({scale})", scale_root
    return None


def _scale_of(ctx: KernelContext, node, mm: Value) -> tuple[str, Value | None] | None:
    """(C expression, storage root or None) of s in `multiply(s, mm)` / `multiply(mm, s)` with s
    a scalar, else None."""
    if node.prim.name != "multiply" or mm not in node.inputs:
        return None
    (s,) = [v for v in node.inputs if v is not mm] or [None]
    if s is None or s.size != 1 or s.dtype != mm.dtype or node.out.shape != mm.shape:
        return None
    literal = ctx.literal_of(s)
    if literal is not None:
        return literal, None
    view = ctx.views.get(s)
    return None if view is None else (f"{ctx.names.buffer(view.root)}[{view.offset}]", view.root)


def emit_gemm_update(ctx: KernelContext, kernel: Kernel, update: GemmUpdate, name: str, ops) -> KernelText:
    w, params = Writer(), Params()
    if update.scale_root is not None:
        params.use(update.scale_root)
    w("/* dest = base + alpha * (A @ B): BLAS accumulates into a copy of base (beta = 1) */")
    emit_gemm(ctx, kernel.matmuls[0], w, params, update)
    return function_text(name, kernel, ops, params, ctx.names, w, can_fail=False)


def emit_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops: list[str]) -> KernelText:
    from .c_indexed import EMITTERS
    from .c_loop import LoopEmitter

    if kernel.kind == "loop":
        update = gemm_update(ctx, kernel)
        if update is not None:
            return emit_gemm_update(ctx, kernel, update, name, ops)
        return LoopEmitter(ctx, kernel).emit(name, ops)
    if kernel.kind == "control":  # its regions compile through emit_kernel again
        from .c_control import emit_control

        return emit_control(ctx, kernel, name, ops)
    emitter = {"matmul": emit_matmul_kernel, **EMITTERS}[kernel.kind]
    return emitter(ctx, kernel, name, ops)
