"""Loop kernels -> C: elementwise chains, reductions and their epilogues over one domain.

The loop nest (which loops, which level and pass each value belongs to) comes from loops.py;
this file writes it out: outer loops over the kept axes, one inner pass per phase over the
reduced axes with the accumulators of its reductions, `omp simd` on innermost loops and
`omp parallel for` on the outermost one above PARALLEL_MIN_ELEMENTS (in dynamic chunks when
its iterations are independent, see c_exprs.dynamic_schedule).
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from ..ir.graph import Node, Value
from ..ops.registry import Kind
from ..passes.fusion import Kernel
from ..passes.views import own_view
from .c_exprs import (PARALLEL_MIN_ELEMENTS, REDUCTIONS, dynamic_schedule, index_expr, is_pairwise_sum,
                      local_type, omp_pragma, pairwise_sum)
from .c_kernel import KernelContext, KernelText, Params, Writer, emit_gemm, function_text
from .loops import Access, LoopNest, access, build_nest, is_alias, operand_map, reduction_phase


class LoopEmitter:
    def __init__(self, ctx: KernelContext, kernel: Kernel):
        self.ctx, self.kernel = ctx, kernel
        self.names = ctx.names
        self.members = kernel.member_values
        self.params = Params()
        self.w = Writer()
        self.ndim = len(kernel.domain)
        self.accesses: dict = {}  # (value, amap) -> Access
        self.nest: LoopNest = build_nest(kernel, self.collect_accesses())
        self.stashes: list = []  # see stash_plan
        self.scratch: dict = {}  # see scratch_plan
        self.fast_flag: str | None = None  # see emit_phase: ops with a fast form (c_fast) take it
        self.touched: tuple[set, set] | None = None  # (roots read, roots written) while recording
        self.error_flags: dict = {}  # Node -> its flag: ops whose numpy raises on some values (c_error)

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
        if self.touched is not None:
            self.touched[0].add(acc.root)
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
        in_dtypes = [v.dtype for v in node.inputs]
        name = self.names.of(out)
        fast = self.fast_flag and has_fast_form(node) and node.prim.c_fast(args, in_dtypes)
        if fast:
            self.w(f"const {local_type(out.dtype)} {name} = {fast[0]};", f"{self.fast_flag} |= {fast[1]};")
        else:
            expr = node.prim.c_expr(args, in_dtypes, out.dtype, **node.params)
            self.w(f"const {local_type(out.dtype)} {name} = {expr};")
        if node in self.error_flags:
            condition, _ = node.prim.c_error(in_dtypes)
            self.w(f"{self.error_flags[node]} |= {condition.format(*args)};")
        scope[out] = name

    def reduction(self, node: Node, scope: dict, loops, index_var: str, terms: int = 0, rows: dict | None = None):
        """The Reduction record (accumulators, update, result) of a reduce node; `index_var`
        is the position along the reduced axis (for argmax/argmin). `terms`: the extent of the
        one sequential loop the reduction runs over, if it does (a float sum then adds as np.sum);
        `rows`: {value: pointer} for values that loop writes contiguously anyway (see terms_rows)."""
        x = node.inputs[0]
        operand = self.operand(x, node, scope, loops)
        if not operand.isidentifier():  # a load: give it a name, the update reads it several times
            local = self.names.fresh(f"{x.name}_i")
            self.w(f"const {local_type(x.dtype)} {local} = {operand};")
            operand = local
        acc = self.names.of(node.out, "_acc")
        if is_pairwise_sum(node.prim.name, x.dtype, node.out.dtype, terms):
            return pairwise_sum(acc, operand, index_var, terms, node.out.dtype, (rows or {}).get(x))
        return REDUCTIONS[node.prim.name](acc, operand, index_var, x.dtype, node.out.dtype)

    def store(self, dest: Value, src: Value, scope: dict, loops) -> None:
        value = scope[src] if src in self.members else self.load(src, None, loops)
        self.params.use(dest, written=True)
        if self.touched is not None:
            self.touched[1].add(dest)
        acc = self.store_access(dest, src)
        self.w(f"{self.names.buffer(dest)}[{self.index(acc, loops)}] = {value};")

    # loops
    def open_loops(self, loops, pragmas: dict) -> None:
        flags = "".join(f" reduction(|:{flag})" for flag in self.error_flags.values())
        for n, loop in enumerate(loops):
            self.w(*[line + flags if line.startswith("#pragma omp") else line for line in pragmas.get(n, [])])
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
        self.declare_error_flags()
        big = nest.size >= PARALLEL_MIN_ELEMENTS
        if nest.num_phases == 0:
            self.emit_flat(big)
        elif self.reduces_leading_axes():
            self.emit_leading_reduction()
        else:
            self.emit_phased(big)
        self.return_errors()
        return function_text(name, self.kernel, ops, self.params, self.names, self.w,
                             can_fail=bool(self.error_flags))

    def declare_error_flags(self) -> None:
        """One flag per op that numpy would raise on for some values (an integer power with a
        negative exponent): the loops OR its condition in (a reduction clause on every loop)."""
        for node in self.kernel.nodes:
            if node.prim.kind is Kind.ELEMENTWISE and node.prim.c_error is not None \
                    and node.prim.c_error([v.dtype for v in node.inputs]) is not None:
                self.error_flags[node] = self.names.fresh(f"{node.out.name}_invalid")
        self.w(*[f"int {flag} = 0;" for flag in self.error_flags.values()])

    def return_errors(self) -> None:
        for node, flag in self.error_flags.items():
            _, message = node.prim.c_error([v.dtype for v in node.inputs])
            where = f" (at {node.loc})" if node.loc else ""
            self.w(f"if ({flag}) return {self.ctx.add_error(message + where)};")

    def reduces_leading_axes(self) -> bool:
        """A one-pass reduction over axes that all come before the kept axes (a column sum): then
        the kept axis is the contiguous one, so it goes innermost with one accumulator per
        element of it, instead of a strided inner loop per kept element."""
        nest, kernel = self.nest, self.kernel
        if nest.num_phases != 1 or len(nest.outer) != 1 or not nest.inner or nest.outer[0].extent > 4096:
            return False
        if max(d for loop in nest.inner for d in loop.axes) > min(nest.outer[0].axes):
            return False
        reductions = [n for n in kernel.nodes if n.prim.kind is Kind.REDUCE]
        if not all(_reduction_record(n).simd for n in reductions):  # arg reductions need their index
            return False
        return all(nest.after.get(v, 0) == 0 for v in nest.after)

    def emit_leading_reduction(self) -> None:
        nest, kernel = self.nest, self.kernel
        (outer,) = nest.outer
        k = outer.var
        scope: dict = {}
        reductions = [n for n in kernel.nodes if n.prim.kind is Kind.REDUCE]
        stores = [(d, s) for d, s in kernel.stores if s in self.members and nest.level[s] == "full"]
        body = Writer()
        body.depth = self.w.depth + len(nest.inner) + 1
        outer_writer, self.w = self.w, body
        loops = nest.inner + [outer]
        for node in self.needed_full_nodes([n.inputs[0] for n in reductions] + [s for _, s in stores]):
            self.statement(node, scope, loops)
        records = [(node, self.reduction(node, scope, loops, "0")) for node in reductions]
        accumulators = [_parse_decl(d) for _, red in records for d in red.decls]
        for _, red in records:
            self.w(_index_accumulators(red.update, accumulators, k))
        for dest, src in stores:
            self.store(dest, src, scope, loops)
        self.w = outer_writer
        self.w("/* the reduced axes lead: one accumulator per kept element, the kept axis innermost */")
        self.w(*[f"{ctype} {name}[{outer.extent}];" for ctype, name, _ in accumulators])
        self.open_loops([outer], {0: omp_pragma("simd", False)})
        self.w(*[f"{name}[{k}] = {init};" for _, name, init in accumulators])
        self.close_loops([outer])
        self.open_loops(nest.inner + [outer], {len(nest.inner): omp_pragma("simd", False)})
        self.w.lines.extend(body.lines)
        self.close_loops(nest.inner + [outer])
        self.open_loops([outer], {0: omp_pragma("simd", False)})
        for node, red in records:
            self.finish_reduction(node, replace(red, result=_index_accumulators(red.result, accumulators, k)), scope)
        self.outer_statements(0, scope)
        for dest, src in kernel.stores:
            if src not in self.members or nest.level[src] == "outer":
                self.store(dest, src, scope, [outer])
        self.close_loops([outer])

    def emit_flat(self, big: bool) -> None:
        """No reduced axes to loop over: one loop nest, every value computed in its body."""
        loops = self.nest.outer
        pragmas = {}
        if loops:
            last = len(loops) - 1
            pragmas[last] = omp_pragma("simd", False)
            if big:
                pragmas[0] = omp_pragma("parallel for simd" if last == 0 else "parallel for", True,
                                        self.outer_schedule())
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
        self.scratch = self.scratch_plan()
        outer_pragmas = {0: omp_pragma("parallel for", True, self.outer_schedule())} if big and nest.outer else {}
        self.open_loops(nest.outer, outer_pragmas)
        for u, (name, _) in self.scratch.items():
            self.w(f"{local_type(u.dtype)} {name}[{nest.inner[0].extent}];  /* %{u.name}, kept for a later pass */")
        scope: dict = {}
        self.outer_statements(-1, scope)
        for phase in range(nest.num_phases):
            self.emit_phase(phase, scope, parallel=big and not nest.outer)
            self.outer_statements(phase, scope)
        for dest, src in self.kernel.stores:
            if src not in self.members or nest.level[src] == "outer":
                self.store(dest, src, scope, nest.outer)
        self.close_loops(nest.outer)

    def outer_schedule(self) -> str:
        """Dynamic chunks for a parallel outermost loop: its iterations are independent."""
        first = self.nest.outer[0].extent
        return dynamic_schedule(first, self.nest.size // max(1, first))

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

    def scratch_plan(self) -> dict:
        """{value: (row array name, pass that writes it)}: full values that a later pass would
        recompute through two or more ops, kept instead in a per-row array (the reduced extent,
        at most 4096 elements, stays in L1): exp(x - max) in a softmax gradient runs once.
        A value of the first pass made only of cheap ops (a one-hot row from labels) is
        recomputed where it is read: its loads cost what the row's store and load would, and the
        first pass stays a pure read (W3: 115 against 140 us)."""
        nest = self.nest
        if len(nest.inner) != 1 or nest.inner[0].extent > 4096 or nest.num_phases < 2:
            return {}
        stashed = {u for _, u, _, _ in self.stashes}
        plan: dict = {}
        for phase in range(1, nest.num_phases):
            for node in self.needed_full_nodes(self.phase_roots(phase), set(plan)):
                if nest.phase[node.outputs[0]] != phase:
                    continue
                for u in node.inputs:
                    if (u in self.members and nest.level.get(u) == "full" and nest.phase[u] < phase
                            and u not in stashed and u not in plan and self.worth_keeping(u)):
                        plan[u] = (self.names.fresh(f"{u.name}_row"), nest.phase[u])
        return plan

    def worth_keeping(self, u: Value) -> bool:
        chain = [n for n in self.needed_full_nodes([u]) if not is_alias(n)]
        if len(chain) < 2:
            return False
        return self.nest.phase[u] > 0 or not all(n.prim.cheap for n in chain)

    def phase_roots(self, phase: int) -> list:
        """What pass `phase` must produce: its reductions' inputs and its stores' values."""
        nest, kernel = self.nest, self.kernel
        roots = [n.inputs[0] for n in kernel.nodes if n.prim.kind is Kind.REDUCE and reduction_phase(nest, n) == phase]
        roots += [s for _, s in kernel.stores if s in self.members and nest.phase.get(s) == phase]
        return roots + [u for _, u, write, _ in self.stashes if write == phase]

    def emit_phase(self, phase: int, outer_scope: dict, parallel: bool) -> None:
        """One pass over the reduced axes: its accumulators, its loop, then its reductions'
        results. Ops with a fast form (Primitive.c_fast: float32 exp, csrc/tracejit.h 1b) take it
        and OR a flag wherever it is not right; a row that sets it (rare for exp: an overflow,
        a subnormal result, a nan) runs the pass again with their full forms. Only a pass that
        writes no buffer it reads can run twice."""
        nest, kernel = self.nest, self.kernel
        reductions = [n for n in kernel.nodes if n.prim.kind is Kind.REDUCE and reduction_phase(nest, n) == phase]
        stores = [(d, s) for d, s in kernel.stores if s in self.members and nest.phase.get(s) == phase]
        stores += [(d, u) for d, u, write, _ in self.stashes if write == phase]
        reloaded = {u: d for d, u, _, read in self.stashes if read == phase}
        kept = {u: name for u, (name, write) in self.scratch.items() if write < phase}
        keep = [(u, name) for u, (name, write) in self.scratch.items() if write == phase]
        roots = [n.inputs[0] for n in reductions] + [s for _, s in stores] + [u for u, _ in keep]
        needed = self.needed_full_nodes(roots, set(reloaded) | set(kept))
        pass_parts = (reductions, stores, reloaded, kept, keep, needed, outer_scope, parallel)
        self.w(f"/* pass {phase + 1} of {nest.num_phases} over the reduced axes */")
        fast_ops = sorted({n.prim.name for n in needed if has_fast_form(n)})
        flag = f"tj_{'_'.join(fast_ops)}_slow_{phase + 1}" if fast_ops else None  # tj_exp_slow_2
        body, records, (reads, writes) = self.phase_body(*pass_parts, fast_flag=flag)
        if flag and (reads | set(reloaded.values())) & writes:
            flag = None
            body, records, _ = self.phase_body(*pass_parts, fast_flag=None)
        for _, red in records:
            self.w(*red.decls)
        if flag:
            self.w(f"int {flag} = 0;")
        self.phase_loop(body, records, parallel, flag)
        if flag:
            self.w.open(f"if ({flag})")
            self.w(f"/* {', '.join(fast_ops)}: the fast form was not right in this row; the pass again, full form */")
            slow_body, slow_records, _ = self.phase_body(*pass_parts, fast_flag=None)
            for _, red in slow_records:
                initialized = [_parse_decl(d) for d in red.decls if " = " in d]  # not the terms rows
                self.w(*[f"{name} = {init};" for _, name, init in initialized])
            self.phase_loop(slow_body, slow_records, parallel, None)
            self.w.close()
        for node, red in records:
            self.finish_reduction(node, red, outer_scope)

    def phase_body(self, reductions, stores, reloaded, kept, keep, needed, outer_scope, parallel, fast_flag):
        """The statements of one pass's loop body (a Writer at the depth of the innermost loop),
        its reductions' records, and the buffers it reads and writes."""
        nest = self.nest
        loops = nest.outer + nest.inner
        index_var = nest.inner[-1].var if nest.inner else "0"
        body = Writer()
        body.depth = self.w.depth + len(nest.inner)
        outer_writer, self.w = self.w, body
        self.fast_flag, self.touched = fast_flag, (set(), set())
        try:
            scope = dict(outer_scope)
            for u, dest in reloaded.items():
                scope[u] = f"{self.names.buffer(dest)}[{self.index(self.store_access(dest, u), loops)}]"
            for u, name in kept.items():
                scope[u] = f"{name}[{index_var}]"
            for node in needed:
                self.statement(node, scope, loops)
            for u, name in keep:
                self.w(f"{name}[{index_var}] = {scope[u]};")
            terms = nest.inner[0].extent if len(nest.inner) == 1 and not parallel else 0
            rows = self.terms_rows(keep, stores) if terms else {}
            records = [(node, self.reduction(node, scope, loops, index_var, terms, rows)) for node in reductions]
            for _, red in records:
                if red.update:
                    self.w(red.update)
            for dest, src in stores:
                self.store(dest, src, scope, loops)
            return body, records, self.touched
        finally:
            self.w, self.fast_flag, self.touched = outer_writer, None, None

    def phase_loop(self, body: Writer, records, parallel: bool, flag: str | None) -> None:
        """The pass's loops around `body`, with its reductions' OpenMP clauses (and the flag's)."""
        simd = all(red.simd for _, red in records)
        clauses = "".join(f" reduction({c})" for _, red in records for c in red.clauses)
        if flag:
            clauses += f" reduction(|:{flag})"
        self.open_loops(self.nest.inner, self.inner_pragmas(simd, clauses, parallel))
        self.w.lines.extend(body.lines)
        self.close_loops(self.nest.inner)

    def terms_rows(self, keep, stores) -> dict:
        """{value: pointer to its row}: values this pass writes whole and contiguously along its one
        inner loop, into a row kept for a later pass or into a row of an output. A float sum of
        such a value adds that row in place (the softmax denominator sums the exps it just
        stored) rather than a copy of it."""
        rows = {u: name for u, name in keep}
        (inner,) = self.nest.inner
        for dest, src in stores:
            acc = self.store_access(dest, src)
            if src not in rows and acc.strides[inner.axes[-1]] == 1 and np.dtype(dest.dtype) == np.dtype(src.dtype):
                start = self.index(replace(acc, strides=tuple(0 if d in inner.axes else st
                                                              for d, st in enumerate(acc.strides))), self.nest.outer)
                rows[src] = self.names.buffer(dest) if start == "0" else f"{self.names.buffer(dest)} + {start}"
        return rows

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


def has_fast_form(node: Node) -> bool:
    prim = node.prim
    return prim.c_fast is not None and prim.c_fast(["x"] * len(node.inputs), [v.dtype for v in node.inputs]) is not None


def _reduction_record(node: Node):
    """The reduction table's record for `node`, with placeholder names (to read its flags)."""
    x = node.inputs[0]
    return REDUCTIONS[node.prim.name]("acc", "x", "0", x.dtype, node.out.dtype)


def _parse_decl(decl: str) -> tuple[str, str, str]:
    """'double v3_acc = 0;' -> ('double', 'v3_acc', '0')."""
    ctype, name, _, init = decl.rstrip(";").split(" ", 3)
    return ctype, name, init


def _index_accumulators(text: str, accumulators, index: str) -> str:
    """Turn scalar accumulators into elements of accumulator arrays (`acc` -> `acc[i0]`)."""
    for _, name, _ in sorted(accumulators, key=lambda a: -len(a[1])):
        text = re.sub(rf"\b{name}\b", f"{name}[{index}]", text)
    return text

