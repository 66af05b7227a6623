"""Kernel -> C function text. One emitter per kernel kind: loop (elementwise + reductions),
matmul (BLAS, with an optional loop epilogue), gather, scatter_add, concatenate, iota.

Each function takes the storage it reads (`const T *TJ_RESTRICT`) and writes (`T *TJ_RESTRICT`),
named after the IR values; kernels that can fail (index checks) return a non-zero error code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes
from ..ir.graph import Node, Value
from ..ops.registry import Kind
from ..passes.fusion import Kernel, blas_layout, is_scalar_constant
from ..passes.views import own_view
from .c_exprs import PARALLEL_MIN_ELEMENTS, REDUCTIONS, c_literal, index_expr, local_type, omp_pragma
from .loops import Access, LoopNest, access, build_nest, is_alias, operand_map, reduction_phase


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


class _Params:
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
    return f"/* fused: {', '.join(ops)}{where} */"


# ---- loop kernels ------------------------------------------------------------------------------
class LoopEmitter:
    def __init__(self, ctx: KernelContext, kernel: Kernel):
        self.ctx, self.kernel = ctx, kernel
        self.names = ctx.names
        self.members = kernel.member_values
        self.params = _Params()
        self.w = Writer()
        self.ndim = len(kernel.domain)
        self.accesses: dict = {}  # (value, amap) -> Access
        self.nest: LoopNest = build_nest(kernel, self.collect_accesses())
        self.vars: dict[int, str] = {}  # domain axis -> loop variable (its loop's innermost axis)
        self.strides_of: dict = {}

    # accesses and expressions
    def load_map(self, value: Value, consumer: Node | None) -> tuple:
        return operand_map(self.kernel, value, consumer)

    def access_of(self, value: Value, amap: tuple) -> Access:
        key = (value, amap)
        if key not in self.accesses:
            self.accesses[key] = access(self.ctx.views[value], amap, self.ndim)
        return self.accesses[key]

    def store_access(self, dest: Value, src: Value) -> Access:
        return access(own_view(dest), self.kernel.axis_map[src], self.ndim)

    def collect_accesses(self) -> list[Access]:
        found = []
        for node in self.kernel.nodes:
            for v in node.inputs:
                if v not in self.members and self.ctx.literal_of(v) is None:
                    found.append(self.access_of(v, self.load_map(v, node)))
        for dest, src in self.kernel.stores:
            if src not in self.members and self.ctx.literal_of(src) is None:
                found.append(self.access_of(src, self.kernel.axis_map[src]))
            found.append(self.store_access(dest, src))
        return found

    def index(self, acc: Access, loops) -> str:
        return index_expr(acc.offset, [(loop.var, acc.strides[loop.axes[-1]]) for loop in loops])

    def load(self, value: Value, consumer: Node | None, loops) -> str:
        literal = self.ctx.literal_of(value)
        if literal is not None:
            return literal
        acc = self.access_of(value, self.load_map(value, consumer))
        self.params.use(acc.root)
        return f"{self.names.buffer(acc.root)}[{self.index(acc, loops)}]"

    # statements
    def operand(self, value: Value, consumer: Node, scope: dict, loops) -> str:
        if value in self.members:
            return scope[value]
        return self.load(value, consumer, loops)

    def statement(self, node: Node, scope: dict, loops) -> None:
        out = node.out
        if is_alias(node):
            scope[out] = self.operand(node.inputs[0], node, scope, loops)
            return
        args = [self.operand(v, node, scope, loops) for v in node.inputs]
        expr = node.prim.c_expr(args, [v.dtype for v in node.inputs], out.dtype, **node.params)
        name = self.names.of(out)
        self.w(f"const {local_type(out.dtype)} {name} = {expr};")
        scope[out] = name

    def reduction(self, node: Node, scope: dict, loops, index_var: str) -> tuple:
        """(Reduction record, local holding the input element) for a reduce node."""
        x = node.inputs[0]
        operand = self.operand(x, node, scope, loops)
        if not operand.isidentifier():  # a load: give it a name, the update reads it several times
            local = self.names.fresh(f"{x.name}_i")
            self.w(f"const {local_type(x.dtype)} {local} = {operand};")
            operand = local
        acc = self.names.of(node.out, "_acc")
        return REDUCTIONS[node.prim.name](acc, operand, index_var, x.dtype, node.out.dtype)

    def store(self, dest: Value, src: Value, scope: dict, loops) -> None:
        value = scope[src] if src in self.members else self.load(src, None, loops)
        self.params.use(dest, written=True)
        acc = self.store_access(dest, src)
        self.w(f"{self.names.buffer(dest)}[{self.index(acc, loops)}] = {value};")

    # loops
    def open_loops(self, loops, pragmas: dict) -> None:
        for n, loop in enumerate(loops):
            self.w(*pragmas.get(n, []))
            self.w.open(f"for (int64_t {loop.var} = 0; {loop.var} < {loop.extent}; {loop.var}++)")

    def close_loops(self, loops) -> None:
        for _ in loops:
            self.w.close()

    def emit(self, name: str, ops: list[str]) -> KernelText:
        nest = self.nest
        for n, loop in enumerate(nest.outer + nest.inner):
            loop.var = f"i{n}"
        for matmul in self.kernel.matmuls:
            emit_gemm(self.ctx, matmul, self.w, self.params)
        big = nest.size >= PARALLEL_MIN_ELEMENTS
        if nest.num_phases == 0:
            self.emit_flat(big)
        else:
            self.emit_phased(big)
        return _function(name, self.kernel, ops, self.params, self.names, self.w, can_fail=False)

    def emit_flat(self, big: bool) -> None:
        """No reduced axes to loop over: one loop nest, every value computed in its body."""
        loops = self.nest.outer
        pragmas = {}
        if loops:
            last = len(loops) - 1
            pragmas[last] = omp_pragma("simd", False)
            if big:
                pragmas[0] = omp_pragma("parallel for simd" if last == 0 else "parallel for", True)
        self.open_loops(loops, pragmas)
        scope: dict = {}
        for node in self.kernel.nodes:
            if node.prim.kind is Kind.REDUCE:  # over size-1 axes only: one element
                red = self.reduction(node, scope, loops, "0")
                self.w(*red.decls, red.update)
                self.finish_reduction(node, red, scope)
            else:
                self.statement(node, scope, loops)
        for dest, src in self.kernel.stores:
            self.store(dest, src, scope, loops)
        self.close_loops(loops)

    def finish_reduction(self, node, red, scope) -> None:
        name = self.names.of(node.out)
        self.w(f"const {local_type(node.out.dtype)} {name} = {red.result};")
        scope[node.out] = name

    def emit_phased(self, big: bool) -> None:
        nest = self.nest
        self.stashes = self.stash_plan()
        outer_pragmas = {0: omp_pragma("parallel for", True)} if big and nest.outer else {}
        self.open_loops(nest.outer, outer_pragmas)
        scope: dict = {}
        self.outer_statements(-1, scope)
        for phase in range(nest.num_phases):
            self.emit_phase(phase, scope, parallel=big and not nest.outer)
            self.outer_statements(phase, scope)
        for dest, src in self.kernel.stores:
            if src not in self.members or nest.level[src] == "outer":
                self.store(dest, src, scope, nest.outer)
        self.close_loops(nest.outer)

    def outer_statements(self, after: int, scope: dict) -> None:
        for node in self.kernel.nodes:
            v = node.outputs[0]
            if self.nest.level[v] == "outer" and self.nest.after.get(v) == after and node.prim.kind is not Kind.REDUCE:
                self.statement(node, scope, self.nest.outer)

    def stash_plan(self) -> list:
        """(dest, value, phase written, phase read): a full value that a later pass would
        recompute through two or more ops is instead written into that pass's output buffer
        (same element) and read back there (softmax: exp(x - max) is not computed twice)."""
        plan = []
        nest, kernel = self.nest, self.kernel
        for dest, src in kernel.stores:
            later = nest.phase.get(src, 0) if src in self.members else 0
            if later == 0:
                continue
            chain = self.needed_full_nodes([src])
            earlier = [n for n in chain if nest.phase[n.outputs[0]] < later]
            frontier = {u for n in chain if nest.phase[n.outputs[0]] == later for u in n.inputs
                        if nest.phase.get(u, later) < later and nest.level.get(u) == "full"}
            if len([n for n in earlier if not is_alias(n)]) >= 2 and len(frontier) == 1:
                (u,) = frontier
                if u.dtype == dest.dtype and kernel.axis_map[u] == kernel.axis_map[src]:
                    plan.append((dest, u, nest.phase[u], later))
        return plan

    def emit_phase(self, phase: int, outer_scope: dict, parallel: bool) -> None:
        nest, kernel = self.nest, self.kernel
        reductions = [n for n in kernel.nodes if n.prim.kind is Kind.REDUCE and reduction_phase(nest, n) == phase]
        stores = [(d, s) for d, s in kernel.stores if s in self.members and nest.phase.get(s) == phase]
        stores += [(d, u) for d, u, write, _ in self.stashes if write == phase]
        reloaded = {u: d for d, u, _, read in self.stashes if read == phase}
        needed = self.needed_full_nodes([n.inputs[0] for n in reductions] + [s for _, s in stores], set(reloaded))
        loops = nest.outer + nest.inner
        index_var = nest.inner[-1].var if nest.inner else "0"
        self.w(f"/* pass {phase + 1} of {nest.num_phases} over the reduced axes */")
        # accumulators are declared before the loops; their updates are written inside
        body = Writer()
        body.depth = self.w.depth + len(nest.inner)
        outer_writer, self.w = self.w, body
        scope = dict(outer_scope)
        for u, dest in reloaded.items():
            scope[u] = f"{self.names.buffer(dest)}[{self.index(self.store_access(dest, u), loops)}]"
        for node in needed:
            self.statement(node, scope, loops)
        records = [(node, self.reduction(node, scope, loops, index_var)) for node in reductions]
        for _, red in records:
            self.w(red.update)
        for dest, src in stores:
            self.store(dest, src, scope, loops)
        self.w = outer_writer
        for _, red in records:
            self.w(*red.decls)
        simd = all(red.simd for _, red in records)
        clauses = "".join(f" reduction({c})" for _, red in records for c in red.clauses)
        self.open_loops(nest.inner, self.inner_pragmas(simd, clauses, parallel))
        self.w.lines.extend(body.lines)
        self.close_loops(nest.inner)
        for node, red in records:
            self.finish_reduction(node, red, outer_scope)

    def inner_pragmas(self, simd: bool, clauses: str, parallel: bool) -> dict:
        if not self.nest.inner or not simd:
            return {}
        last = len(self.nest.inner) - 1
        pragmas = {last: omp_pragma(f"simd{clauses}", False)}
        if parallel:
            text = f"parallel for simd{clauses}" if last == 0 else f"parallel for{clauses}"
            pragmas[0] = omp_pragma(text, True)
        return pragmas

    def needed_full_nodes(self, roots: list[Value], available: set = frozenset()) -> list[Node]:
        """Full-level member nodes that `roots` depend on (stopping at `available`), in kernel order."""
        producer = {v: n for n in self.kernel.nodes for v in n.outputs}
        wanted, stack = set(), [r for r in roots if r in producer]
        while stack:
            v = stack.pop()
            if v in wanted or v in available or self.nest.level.get(v) != "full":
                continue
            wanted.add(v)
            stack.extend(u for u in producer[v].inputs if u in producer)
        return [n for n in self.kernel.nodes if n.outputs[0] in wanted and n.prim.kind is not Kind.REDUCE]


def _function(name, kernel, ops, params: _Params, names, w: Writer, can_fail: bool) -> KernelText:
    ret = "int" if can_fail else "void"
    sig = params.signature(names)
    extra = ", int64_t *TJ_RESTRICT tj_bad_index" if can_fail else ""
    if extra and sig == "void":
        sig, extra = extra[2:], ""
    head = [fused_comment(kernel, ops), f"static {ret} {name}({sig}{extra})", "{"]
    tail = ["    return 0;"] if can_fail else []
    return KernelText(name, "\n".join(head + w.lines + tail + ["}"]), list(params.order), can_fail)


# ---- matmul --------------------------------------------------------------------------------------
def emit_gemm(ctx: KernelContext, kernel: Kernel, w: Writer, params: _Params) -> None:
    """C[b] = A[b] @ B[b] through cblas, one call per batch index (broadcast batch strides)."""
    node = kernel.nodes[0]
    a, b = kernel.operands
    out = node.out
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
    w(f"tj_gemm_{dtypes.short_name(out.dtype)}({trans(ta)}, {trans(tb)}, {m}, {n}, {k}, {pa}, {lda}, {pb}, {ldb}, "
      f"{names.buffer(out)} + {index_expr(0, c_terms)}, {n});")
    for _ in batch:
        w.close()


def emit_matmul_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    w, params = Writer(), _Params()
    emit_gemm(ctx, kernel, w, params)
    return _function(name, kernel, ops, params, ctx.names, w, can_fail=False)


# ---- gather / scatter_add ----------------------------------------------------------------------
def _index_loads(ctx, node: Node, indices, index_shape, loop_vars, w: Writer, params: _Params, table_shape):
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
    w, params, names = Writer(), _Params(), ctx.names
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
        params.use(table_view.root)
        params.use(out, written=True)
        w(f"{dense_ref} = {table_name}[{table_index}];")
    for _ in tail_vars + outer_vars:
        w.close()
    return _function(name, kernel, ops, params, names, w, can_fail=bool(indices))


# ---- concatenate / iota ----------------------------------------------------------------------
def emit_concatenate(ctx: KernelContext, kernel: Kernel, name: str, ops) -> KernelText:
    node = kernel.nodes[0]
    out, axis = node.out, node.params["axis"]
    w, params, names = Writer(), _Params(), ctx.names
    params.use(out, written=True)
    out_strides = own_view(out).strides
    start = 0
    for x in node.inputs:
        if x.size:
            _copy_block(ctx, x, out, start * out_strides[axis], out_strides, w, params)
        start += x.shape[axis]
    return _function(name, kernel, ops, params, names, w, can_fail=False)


def _copy_block(ctx, x: Value, out: Value, offset: int, out_strides, w: Writer, params: _Params) -> None:
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
    w, params = Writer(), _Params()
    params.use(out, written=True)
    w(*omp_pragma("simd", False))
    w.open(f"for (int64_t i0 = 0; i0 < {out.shape[0]}; i0++)")
    w(f"{ctx.names.buffer(out)}[i0] = ({dtypes.c_type(out.dtype)})i0;")
    w.close()
    return _function(name, kernel, ops, params, ctx.names, w, can_fail=False)


def emit_kernel(ctx: KernelContext, kernel: Kernel, name: str, ops: list[str]) -> KernelText:
    if kernel.kind == "loop":
        return LoopEmitter(ctx, kernel).emit(name, ops)
    if kernel.kind == "control":  # its regions compile through emit_kernel again
        from .c_control import emit_control

        return emit_control(ctx, kernel, name, ops)
    emitter = {"matmul": emit_matmul_kernel, "gather": emit_gather, "scatter_add": emit_scatter_add,
               "concatenate": emit_concatenate, "iota": emit_iota}[kernel.kind]
    return emitter(ctx, kernel, name, ops)
