"""fuse(graph) -> KernelGraph: group nodes into kernels, and decide which values get storage.

Kernels (one C function each):
  loop         elementwise nodes, reductions and keepdims reshapes over one iteration domain.
               A value's `axis_map` says which domain axis each of its axes runs along (None: a
               size-1 axis read at index 0). Reductions of one kernel all reduce the same domain
               axes; values that do not vary along them ("outer" values: row max, row sum, their
               epilogue) are computed once per outer iteration, so softmax is one kernel.
  matmul       BLAS gemm; a following elementwise loop over its output rides along (epilogue).
  gather, scatter_add, concatenate, iota: one loop nest each.
Shape ops do not make kernels: their outputs are Views (strides) of a root value's storage;
a copy loop kernel materializes a view only where strides cannot express it (a reshape of a
transposed value, a BLAS operand with unit-stride in neither axis, a graph output).

Values that live only inside a kernel stay C locals; a value is stored when something outside
its kernel (another kernel, a shape op, the graph outputs) needs it. After grouping, `finish`
sinks chains into their readers, stores epilogues in place and orders the kernels
(passes/fusion_after.py); the Kernel and KernelGraph records are in passes/kernels.py.
"""
from __future__ import annotations

import math

from ..ir.graph import Graph, Node, Value
from .fusion_after import AfterGrouping
from .kernels import Kernel, KernelGraph, _find, _identity, is_scalar_constant, is_unit_reshape  # noqa: F401 (re-exported)
from .views import View, broadcast_view, is_contiguous, own_view, reshape_view, slice_view, transpose_view


class _Fuser(AfterGrouping):
    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer = graph.producers()
        self.uses = graph.uses()
        self.kernels: list[Kernel] = []
        self.group: dict[Value, Kernel] = {}  # value computed inside a loop kernel -> kernel
        self.views: dict[Value, View] = {v: own_view(v) for v in graph.inputs}
        self.writer: dict[Value, Kernel] = {}  # root value -> kernel that stores it
        self.outputs = set(graph.outputs)
        self.order = {n: i for i, n in enumerate(graph.nodes)}
        self.claimed: set[Value] = set()  # roots that already became a graph output
        self.relocated: dict[Value, Value] = {}  # value stored in place -> the root it overwrote

    # -- bookkeeping ------------------------------------------------------------------------
    def new_kernel(self, kind, **fields) -> Kernel:
        kernel = Kernel(kind, **fields)
        self.kernels.append(kernel)
        return kernel

    def group_of(self, value) -> Kernel | None:
        kernel = self.group.get(value)
        return _find(kernel) if kernel is not None else None

    def reaches(self, start: Kernel, target: Kernel) -> bool:
        """Does `start` depend (transitively) on `target`?"""
        seen, stack = set(), [_find(start)]
        while stack:
            k = stack.pop()
            if k is target:
                return True
            if k in seen:
                continue
            seen.add(k)
            stack.extend(_find(d) for d in k.deps)
            stack.extend(_find(m) for m in k.matmuls)
        return False

    def view(self, value: Value) -> View:
        """The storage view of `value`, forcing a loop member to be stored."""
        if value not in self.views:
            kernel = self.group_of(value)
            if kernel is None:
                raise AssertionError(f"no storage for %{value.name}")
            self.views[value] = own_view(value)
            self.writer[value] = kernel
        return self.views[value]

    def source_kernel(self, value: Value) -> Kernel | None:
        """The kernel that writes the storage `value` is read from (None: input or constant)."""
        kernel = self.group_of(value)
        if kernel is not None:
            return kernel
        root = self.views[value].root
        writer = self.writer.get(root)
        return _find(writer) if writer is not None else None

    def external_deps(self, node: Node, members: set) -> set:
        deps = set()
        for v in node.inputs:
            if v in members or is_scalar_constant(self.producer.get(v)):
                continue
            source = self.source_kernel(v)
            if source is not None:
                deps.add(source)
        return deps

    # -- the pass ---------------------------------------------------------------------------
    def run(self) -> KernelGraph:
        for node in self.graph.nodes:
            handler = getattr(self, f"visit_{node.prim.kind.name.lower()}", None)
            if handler is None:
                from ..errors import TracejitError

                raise TracejitError(f"the C backend cannot compile {node.prim.name} nodes yet")
            handler(node)
        outputs = [self.output_value(v, n) for n, v in enumerate(self.graph.outputs)]
        kernels = self.finish()
        roots = []
        for v in list(self.graph.inputs) + [view.root for view in self.views.values()]:
            if v not in roots:
                roots.append(v)
        return KernelGraph(self.graph, kernels, self.views, outputs, roots)

    # sources
    def visit_source(self, node: Node) -> None:
        if node.prim.name == "iota":
            kernel = self.new_kernel("iota", nodes=[node])
            self.store(kernel, node.out)
        else:
            self.views[node.out] = own_view(node.out)

    def store(self, kernel: Kernel, value: Value, dest: Value | None = None) -> None:
        dest = dest or value
        kernel.stores.append((dest, value))
        self.views[dest] = own_view(dest)
        self.writer[dest] = kernel

    # shape ops: views where strides can say it
    def visit_shape(self, node: Node) -> None:
        (x, *rest) = node.inputs
        if node.prim.name == "concatenate":
            return self.visit_concatenate(node)
        kernel = self.group_of(x)
        if kernel is not None and is_unit_reshape(node) and kernel.kind == "loop":
            kernel.nodes.append(node)
            self.group[node.out] = kernel
            kernel.axis_map[node.out] = _unit_reshape_map(kernel.axis_map[x], x.shape, node.out.shape)
            return
        view = self.view(x)
        name, out = node.prim.name, node.out
        if name == "transpose":
            self.views[out] = transpose_view(view, node.params["perm"])
        elif name == "broadcast_to":
            self.views[out] = broadcast_view(view, x.shape, out.shape)
        elif name == "slice":
            self.views[out] = slice_view(view, node.params["starts"], node.params["steps"])
        else:  # reshape
            reshaped = reshape_view(view, x.shape, out.shape)
            if reshaped is None:
                reshaped = reshape_view(self.views[self.materialize(x)], x.shape, out.shape)
            self.views[out] = reshaped

    def materialize(self, value: Value) -> Value:
        """A contiguous copy of `value` (read through its view) in new storage."""
        copy = Value(f"{value.name}_copy", value.shape, value.dtype)
        kernel = self.new_kernel("loop", domain=value.shape, axis_map={value: _identity(value)})
        kernel.axis_map[copy] = _identity(value)
        source = self.source_kernel(value)
        if source is not None:
            kernel.deps.add(source)
        self.store(kernel, value, copy)
        return copy

    def single_node_kernel(self, kind: str, node: Node) -> None:
        """A kernel of `node` alone, reading its inputs through their views (concatenate, gather,
        scatter_add, scan: each has an emitter of its own in codegen/c_indexed.py)."""
        kernel = self.new_kernel(kind, nodes=[node])
        for v in node.inputs:
            self.view(v)
        kernel.deps |= self.external_deps(node, set())
        self.store(kernel, node.out)

    def visit_concatenate(self, node: Node) -> None:
        self.single_node_kernel("concatenate", node)

    def visit_gather(self, node: Node) -> None:
        self.single_node_kernel("gather", node)

    def visit_scan(self, node: Node) -> None:
        self.single_node_kernel("scan", node)

    def visit_scatter(self, node: Node) -> None:
        self.single_node_kernel("scatter_add", node)

    def visit_matmul(self, node: Node) -> None:
        operands = tuple(self.blas_operand(v) for v in node.inputs)
        kernel = self.new_kernel("matmul", nodes=[node], operands=operands)
        for v in operands:
            source = self.source_kernel(v)
            if source is not None:
                kernel.deps.add(source)
        self.store(kernel, node.out)

    def blas_operand(self, value: Value) -> Value:
        """`value`, or a contiguous copy when BLAS cannot read its view (unit stride needed)."""
        view = self.view(value)
        if blas_layout(view, value.shape) is None:
            return self.materialize(value)
        return value

    # control flow: one kernel per node; codegen/c_control.py compiles its regions and the loop
    def visit_control(self, node: Node) -> None:
        operands = tuple(self.control_operand(v) for v in node.inputs)
        kernel = self.new_kernel("control", nodes=[node], operands=operands)
        kernel.deps |= {k for k in map(self.source_kernel, operands) if k is not None}
        for out in node.outputs:
            self.store(kernel, out)

    def control_operand(self, value: Value) -> Value:
        """`value` when it is a scalar literal or contiguous in its storage, else a contiguous copy."""
        if is_scalar_constant(self.producer.get(value)):
            return value
        return value if is_contiguous(self.view(value), value.shape) else self.materialize(value)

    # elementwise and reductions: loop kernels
    def visit_elementwise(self, node: Node) -> None:
        candidates = []
        for v in node.inputs:
            kernel = self.group_of(v)
            if kernel is not None and kernel not in candidates:
                candidates.append(kernel)
        # the largest domain first: a row value joins the row kernel that makes its inputs rather
        # than a small kernel of per-row scalars, which would make that kernel store its rows
        candidates.sort(key=lambda k: -math.prod(k.domain))
        for base in candidates:
            if self.try_join(node, base, candidates):
                return
        self.start_loop(node)

    def try_join(self, node: Node, base: Kernel, candidates: list[Kernel]) -> bool:
        mergeable = [k for k in candidates if k is not base and self.can_merge(base, k)]
        members = {v for k in [base, *mergeable] for v in k.member_values}
        amap = _elementwise_map(node, base, mergeable, self.group_of)
        if amap is None:
            return False
        deps = self.external_deps(node, members)
        group = [base, *mergeable]
        if any(d in group or any(self.reaches(d, g) for g in group) for d in deps):
            return False
        for k in mergeable:
            self.merge(base, k)
        for v in node.inputs:
            if v not in members and not is_scalar_constant(self.producer.get(v)):
                self.view(v)
        base.nodes.append(node)
        base.axis_map[node.out] = amap
        base.deps |= deps
        self.group[node.out] = base
        return True

    def can_merge(self, base: Kernel, other: Kernel) -> bool:
        if other.kind != "loop" or base.kind != "loop" or other.domain != base.domain:
            return False
        if base.reduce_axes and other.reduce_axes and base.reduce_axes != other.reduce_axes:
            return False
        return not self.reaches(base, other) and not self.reaches(other, base)

    def merge(self, base: Kernel, other: Kernel) -> None:
        base.nodes = sorted(base.nodes + other.nodes, key=self.order.__getitem__)
        base.axis_map.update(other.axis_map)
        base.deps |= other.deps
        base.matmuls += other.matmuls
        base.stores += other.stores
        base.reduce_axes = base.reduce_axes or other.reduce_axes
        other.merged_into = base
        for dest, _ in other.stores:
            self.writer[dest] = base

    def start_loop(self, node: Node) -> None:
        kernel = self.new_kernel("loop", domain=node.out.shape, nodes=[node])
        kernel.axis_map[node.out] = _identity(node.out)
        for v in node.inputs:
            if not is_scalar_constant(self.producer.get(v)):
                self.view(v)
        epilogue_of = self.matmul_epilogue_target(node)
        if epilogue_of is not None:
            kernel.matmuls.append(epilogue_of)
            # the product is computed inside this kernel's function: later readers wait for it
            self.writer[epilogue_of.stores[0][0]] = kernel
        kernel.deps |= self.external_deps(node, set())
        self.group[node.out] = kernel

    def matmul_epilogue_target(self, node: Node) -> Kernel | None:
        """The matmul kernel whose first consumer is this elementwise node over its whole output
        (readers after it, such as a gather of a few elements, read the stored product)."""
        for v in node.inputs:
            writer = self.writer.get(v)
            if (writer is not None and writer.kind == "matmul" and writer.merged_into is None
                    and not writer.stores[0][0] in self.outputs and v.shape == node.out.shape
                    and all(self.order[u] >= self.order[node] for u in self.uses.get(v, ()))
                    and not writer.has_epilogue):
                writer.has_epilogue = True
                return writer
        return None

    def visit_reduce(self, node: Node) -> None:
        (x,) = node.inputs
        kernel = self.group_of(x)
        if kernel is not None and kernel.kind == "loop":
            axes = _reduce_axes(kernel, x, node.params["axes"])
            if axes is not None:
                kernel.reduce_axes = axes
                kernel.nodes.append(node)
                kernel.axis_map[node.out] = _drop_axes(kernel.axis_map[x], node.params["axes"])
                self.group[node.out] = kernel
                return
        self.view(x)
        kernel = self.new_kernel("loop", domain=x.shape, nodes=[node])
        kernel.reduce_axes = frozenset(node.params["axes"])
        kernel.axis_map[x] = _identity(x)
        kernel.axis_map[node.out] = _drop_axes(_identity(x), node.params["axes"])
        kernel.deps |= self.external_deps(node, set())
        self.group[node.out] = kernel

    # -- after all nodes ----------------------------------------------------------------------
    def output_value(self, value: Value, index: int) -> Value:
        """The stored value that becomes graph output `index`: the value's own storage when it
        is a fresh contiguous kernel result not claimed yet, else a copy."""
        view = self.view(value) if not is_scalar_constant(self.producer.get(value)) else None
        claimed = self.claimed
        if view is not None and view.root in self.writer and view.root not in claimed and view.offset == 0 \
                and view.root.size == value.size and is_contiguous(view, value.shape):
            claimed.add(view.root)
            return view.root
        dest = Value(f"out{index}", value.shape, value.dtype)
        kernel = self.new_kernel("loop", domain=value.shape, axis_map={value: _identity(value)})
        kernel.axis_map[dest] = _identity(value)
        source = self.source_kernel(value) if view is not None else None
        if source is not None:
            kernel.deps.add(source)
        self.store(kernel, value, dest)
        claimed.add(dest)
        return dest

    def finish(self) -> list[Kernel]:
        live = [k for k in self.kernels if k.merged_into is None]
        for kernel in live:
            if kernel.kind == "loop":
                self.sink_into_consumers(kernel)
        for kernel in live:
            if kernel.kind == "loop":
                self.add_member_stores(kernel)
        self.relocate_views()
        epilogues = {id(m) for k in live for m in k.matmuls}
        ordered = _topological(sorted(live, key=self.start_positions()))
        return [k for k in ordered if id(k) not in epilogues]

def _drop_axes(amap, axes) -> tuple:
    return tuple(d for i, d in enumerate(amap) if i not in axes)


def _unit_reshape_map(amap, in_shape, out_shape) -> tuple:
    mapped = iter([d for d, n in zip(amap, in_shape) if n != 1])
    return tuple(next(mapped) if n != 1 else None for n in out_shape)


def _covers_domain(kernel: Kernel, amap) -> bool:
    wanted = {d for d, n in enumerate(kernel.domain) if n != 1}
    return wanted <= set(a for a in amap if a is not None)


def _reduce_axes(kernel: Kernel, x: Value, axes) -> frozenset | None:
    """The domain axes this reduction would reduce inside `kernel`, or None if it cannot join."""
    amap = kernel.axis_map[x]
    mapped = [amap[a] for a in axes]
    if not mapped or any(d is None for d in mapped) or not _covers_domain(kernel, amap):
        return None
    mapped = frozenset(mapped)
    if kernel.reduce_axes and mapped != kernel.reduce_axes:
        return None
    return mapped


def _elementwise_map(node: Node, base: Kernel, merged: list, group_of) -> tuple | None:
    """The axis map of node.out inside `base` (merged with `merged`), or None if it cannot join."""
    out = node.out
    group = [base, *merged]
    domain = base.domain
    reduce_axes = base.reduce_axes or next((k.reduce_axes for k in merged if k.reduce_axes), frozenset())
    candidates: list[set] = [set() for _ in out.shape]
    inside = [v for v in node.inputs if group_of(v) in group]
    for v in inside:
        amap = group_of(v).axis_map[v]
        shift = out.ndim - v.ndim
        for j, d in enumerate(amap):
            if v.shape[j] == out.shape[j + shift] and out.shape[j + shift] != 1:
                candidates[j + shift].add(d)
    if tuple(out.shape) == tuple(domain):
        amap = _identity(out)
    else:
        amap = []
        for j, n in enumerate(out.shape):
            if n == 1:
                amap.append(None)
            elif len(candidates[j]) == 1 and None not in candidates[j]:
                amap.append(next(iter(candidates[j])))
            else:
                return None
        amap = tuple(amap)
    for j, (c, d) in enumerate(zip(candidates, amap)):
        if out.shape[j] != 1 and c and c != {d}:
            return None
    mapped = [d for d in amap if d is not None]
    if len(set(mapped)) != len(mapped) or any(domain[d] != out.shape[j] for j, d in enumerate(amap) if d is not None):
        return None
    # an in-kernel value may be broadcast only along reduced axes (computed once per row)
    for v in inside:
        shift = out.ndim - v.ndim
        for j, n in enumerate(v.shape):
            if n == 1 and out.shape[j + shift] != 1 and amap[j + shift] not in reduce_axes:
                return None
        for j in range(shift):
            if out.shape[j] != 1 and amap[j] not in reduce_axes:
                return None
    if any(d in reduce_axes for d in mapped) and not _covers_domain(base, amap):
        return None
    return amap


def blas_layout(view: View, shape) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a matrix view for BLAS, or None if it needs a copy."""
    rows, cols = shape[-2], shape[-1]
    row_stride, col_stride = view.strides[-2], view.strides[-1]
    if rows == 1:
        row_stride = max(cols, 1) if col_stride == 1 or cols == 1 else row_stride
    if cols == 1:
        col_stride = 1 if row_stride >= 1 else col_stride
    if col_stride == 1 and row_stride >= max(cols, 1):
        return False, row_stride
    if row_stride == 1 and col_stride >= max(rows, 1):
        return True, col_stride
    return None


def _topological(kernels: list[Kernel]) -> list[Kernel]:
    index = {id(k): i for i, k in enumerate(kernels)}
    done, order = set(), []

    def visit(k):
        if id(k) in done:
            return
        done.add(id(k))
        for d in sorted({_find(d) for d in k.deps} | {_find(m) for m in k.matmuls}, key=lambda d: index.get(id(d), -1)):
            if d is not k:
                visit(d)
        order.append(k)

    for k in kernels:
        visit(k)
    return order


def fuse(graph: Graph) -> KernelGraph:
    """Group `graph`'s nodes into kernels (see the module docstring)."""
    return _Fuser(graph).run()


def kernel_ops(kernel: Kernel) -> list[str]:
    return [n.prim.name for n in kernel.all_nodes() if n.prim.name != "reshape"] or ["copy"]


__all__ = ["Kernel", "KernelGraph", "fuse", "blas_layout", "is_scalar_constant", "kernel_ops"]
