"""Gather, scatter_add, concatenate, iota and cumsum kernels -> C loop nests (one emitter each)."""
from __future__ import annotations

from .. import dtypes
from ..ir.graph import Node, Value
from ..passes.fusion import Kernel
from ..passes.views import own_view
from .c_exprs import index_expr, omp_pragma
from .c_kernel import KernelContext, KernelText, Params, Writer, function_text
from .loops import access


# ---- gather / scatter_add ----------------------------------------------------------------------
def _index_loads(ctx, node: Node, indices, index_shape, loop_vars, w: Writer, params: Params, table_shape):
    """Bounds-checked, wrapped integer indices j0, j1, ... (one per indexed axis)."""
    names = ctx.names
    js = []
    for axis, idx in enumerate(indices):
        shift = len(index_shape) - idx.ndim
        amap = tuple(j + shift if idx.shape[j] == index_shape[j + shift] else None for j in range(idx.ndim))
        acc = access(ctx.views[idx], amap, len(index_shape))
        literal = ctx.literal_of(idx)
        if literal is None:
            params.use(acc.root)
            raw = f"{names.buffer(acc.root)}[{index_expr(acc.offset, list(zip(loop_vars, acc.strides)))}]"
        else:
            raw = literal
        j = f"j{axis}"
        size = table_shape[axis]
        code = ctx.add_error(f"index {{bad}} is out of bounds for axis {axis} with size {size} "
                             f"({node.prim.name} of %{node.inputs[0].name} by %{idx.name}"
                             f"{' at ' + node.loc if node.loc else ''})")
        w(f"int64_t {j} = (int64_t){raw};",
          f"if ({j} < 0) {j} += {size};",
          f"if ({j} < 0 || {j} >= {size}) {{ *tj_bad_index = (int64_t){raw}; return {code}; }}")
        js.append(j)
    return js


def emit_gather(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    node = kernel.nodes[0]
    x, *indices = node.inputs
    out = node.out
    nb = out.ndim - (x.ndim - len(indices))
    return _emit_indexed(ctx, kernel, name, ops, table=x, indices=indices, index_shape=out.shape[:nb],
                         tail_shape=out.shape[nb:], node=node, scatter=False)


def emit_scatter_add(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    node = kernel.nodes[0]
    updates, *indices = node.inputs
    out = node.out
    nb = updates.ndim - (out.ndim - len(indices))
    return _emit_indexed(ctx, kernel, name, ops, table=out, indices=indices, index_shape=updates.shape[:nb],
                         tail_shape=updates.shape[nb:], node=node, scatter=True)


def _emit_indexed(ctx, kernel, name, ops, table, indices, index_shape, tail_shape, node, scatter):
    """gather: out[i..., t...] = x[idx(i)..., t...]; scatter_add: out[idx(i)..., t...] += upd[i..., t...]."""
    w, params, names = Writer(), Params(), ctx.names
    out = node.out
    dense = node.inputs[0] if scatter else out  # the array walked in order
    if scatter:
        params.use(out, written=True)
        w(f"memset({names.buffer(out)}, 0, {max(out.size, 0) * out.dtype.itemsize});")
    outer_vars = [f"i{n}" for n in range(len(index_shape))]
    tail_vars = [f"i{n + len(index_shape)}" for n in range(len(tail_shape))]
    for var, extent in zip(outer_vars, index_shape):
        w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
    js = _index_loads(ctx, node, indices, index_shape, outer_vars, w, params, table.shape)
    table_view = own_view(out) if scatter else ctx.views[table]
    k = len(indices)
    row = index_expr(table_view.offset, list(zip(js, table_view.strides[:k])))
    w(f"const int64_t row = {row};")
    for n, (var, extent) in enumerate(zip(tail_vars, tail_shape)):
        if n == len(tail_shape) - 1:
            w(*omp_pragma("simd", False))
        w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
    table_index = "row" + "".join(f" + {v} * {s}" if s != 1 else f" + {v}"
                                  for v, s in zip(tail_vars, table_view.strides[k:]) if s)
    dense_view = ctx.views[dense] if scatter else own_view(out)
    dense_index = index_expr(dense_view.offset, list(zip(outer_vars + tail_vars, dense_view.strides)))
    table_name = names.buffer(table_view.root)
    literal = ctx.literal_of(dense) if scatter else None
    dense_ref = literal or f"{names.buffer(dense_view.root)}[{dense_index}]"
    if scatter:
        if literal is None:
            params.use(dense_view.root)
        w(f"{table_name}[{table_index}] += {dense_ref};")
    else:
        params.use(out, written=True)
        table_literal = ctx.literal_of(table)  # a one-element constant: no storage, only indices to check
        if table_literal is None:
            params.use(table_view.root)
        w(f"{dense_ref} = {table_literal or f'{table_name}[{table_index}]'};")
    for _ in tail_vars + outer_vars:
        w.close()
    return function_text(name, kernel, ops, params, names, w, can_fail=bool(indices))


# ---- concatenate / iota ----------------------------------------------------------------------
def emit_concatenate(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    node = kernel.nodes[0]
    out, axis = node.out, node.params["axis"]
    w, params, names = Writer(), Params(), ctx.names
    params.use(out, written=True)
    out_strides = own_view(out).strides
    start = 0
    for x in node.inputs:
        if x.size:
            _copy_block(ctx, x, out, start * out_strides[axis], out_strides, w, params)
        start += x.shape[axis]
    return function_text(name, kernel, ops, params, names, w, can_fail=False)


def _copy_block(ctx, x: Value, out: Value, offset: int, out_strides, w: Writer, params: Params) -> None:
    loop_vars = [f"i{n}" for n in range(x.ndim)]
    for n, (var, extent) in enumerate(zip(loop_vars, x.shape)):
        if n == x.ndim - 1:
            w(*omp_pragma("simd", False))
        w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
    dest = f"{ctx.names.buffer(out)}[{index_expr(offset, list(zip(loop_vars, out_strides)))}]"
    literal = ctx.literal_of(x)
    if literal is None:
        view = ctx.views[x]
        params.use(view.root)
        literal = f"{ctx.names.buffer(view.root)}[{index_expr(view.offset, list(zip(loop_vars, view.strides)))}]"
    w(f"{dest} = {literal};")
    for _ in loop_vars:
        w.close()


def emit_iota(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    out = kernel.nodes[0].out
    w, params = Writer(), Params()
    params.use(out, written=True)
    w(*omp_pragma("simd", False))
    w.open(f"for (int64_t i0 = 0; i0 < {out.shape[0]}; i0++)")
    w(f"{ctx.names.buffer(out)}[i0] = ({dtypes.c_type(out.dtype)})i0;")
    w.close()
    return function_text(name, kernel, ops, params, ctx.names, w, can_fail=False)



# ---- cumsum ------------------------------------------------------------------------------------
def emit_scan(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    """cumsum along `axis`: the loops of the axes before it; then the first position along it,
    copied, as numpy's accumulate does (-0.0 stays -0.0); then the others in order, each adding the
    one before it. The axes after it are innermost and vectorized."""
    node = kernel.nodes[0]
    (x,), out, axis = node.inputs, node.out, node.params["axis"]
    w, params, names = Writer(), Params(), ctx.names
    params.use(out, written=True)
    loop_vars = [f"i{n}" for n in range(x.ndim)]
    out_strides = own_view(out).strides
    term = ctx.literal_of(x)
    if term is None:
        view = ctx.views[x]
        params.use(view.root)
        term = f"{names.buffer(view.root)}[{index_expr(view.offset, list(zip(loop_vars, view.strides)))}]"
    here = f"{names.buffer(out)}[{index_expr(0, list(zip(loop_vars, out_strides)))}]"
    before = f"{names.buffer(out)}[{index_expr(-out_strides[axis], list(zip(loop_vars, out_strides)))}]"
    for var, extent in zip(loop_vars[:axis], x.shape[:axis]):
        w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
    scan_var, inner = loop_vars[axis], list(zip(loop_vars[axis + 1:], x.shape[axis + 1:]))
    for first, header, statement in ((True, f"const int64_t {scan_var} = 0;", f"{here} = {term};"),
                                     (False, None, f"{here} = {before} + {term};")):
        if first:  # a block of its own for the first position
            w("{")
            w.depth += 1
            w(header)
        else:
            w.open(f"for (int64_t {scan_var} = 1; {scan_var} < {x.shape[axis]}; {scan_var}++)")
        for n, (var, extent) in enumerate(inner):
            if n == len(inner) - 1:
                w(*omp_pragma("simd", False))
            w.open(f"for (int64_t {var} = 0; {var} < {extent}; {var}++)")
        w(statement)
        for _ in range(len(inner) + 1):
            w.close()
    for _ in loop_vars[:axis]:
        w.close()
    return function_text(name, kernel, ops, params, names, w, can_fail=False)


EMITTERS = {"gather": emit_gather, "scatter_add": emit_scatter_add, "concatenate": emit_concatenate,
            "iota": emit_iota, "scan": emit_scan}
