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
its kernel (another kernel, a shape op, the graph outputs) needs it. After grouping (finish):
  sinking      an elementwise chain read by one later loop kernel only moves into it when that
               saves a stored array (an MLP's 1 - h*h is computed where the backward reads it);
  in place     a matmul epilogue stores its result over the product it read (tanh(mm + b) in
               mm's buffer) when nothing else reads the product and the loop makes one pass;
  order        kernels run as early as their first node, so buffers die early (plan_workspace
               in codegen/c_program.py packs the temporaries by these lifetimes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from ..ops.registry import Kind
from .views import View, broadcast_view, is_contiguous, own_view, reshape_view, slice_view, transpose_view


@dataclass(eq=False)
class Kernel:
    kind: str  # "loop" | "matmul" | "gather" | "scatter_add" | "concatenate" | "iota" | "control"
    nodes: list[Node] = field(default_factory=list)
    domain: tuple[int, ...] = ()
    reduce_axes: frozenset = frozenset()
    axis_map: dict = field(default_factory=dict)  # Value -> tuple[int | None, ...] (loop kernels)
    stores: list = field(default_factory=list)  # (dest Value, source Value): dest gets storage
    deps: set = field(default_factory=set)  # kernels whose stored values this one reads
    matmuls: list = field(default_factory=list)  # matmul kernels run first (loop epilogue)
    operands: tuple = ()  # matmul: the (possibly materialized) A and B values; control: its inputs
    merged_into: "Kernel | None" = None
    has_epilogue: bool = False  # matmul: a loop kernel runs over its output in the same function
    name: str = ""

    @property
    def member_values(self) -> set:
        return {v for n in self.nodes for v in n.outputs}

    def all_nodes(self) -> list[Node]:
        return [n for m in self.matmuls for n in m.nodes] + list(self.nodes)


@dataclass
class KernelGraph:
    graph: Graph
    kernels: list[Kernel]  # in execution order
    views: dict  # Value -> View, for every value read from storage
    outputs: list[Value]  # one distinct stored value per graph output, in order
    roots: list[Value]  # every value with storage (inputs, constants, stored values)


def _find(kernel: Kernel) -> Kernel:
    while kernel.merged_into is not None:
        kernel = kernel.merged_into
    return kernel


def is_scalar_constant(node: Node | None) -> bool:
    return node is not None and node.prim.name == "constant" and node.out.size == 1


def is_unit_reshape(node: Node) -> bool:
    """A reshape that only adds or removes size-1 axes (keepdims, expand_dims, squeeze)."""
    if node.prim.name != "reshape":
        return False
    (x,) = node.inputs
    return [d for d in x.shape if d != 1] == [d for d in node.out.shape if d != 1]


class _Fuser:
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

    def visit_concatenate(self, node: Node) -> None:
        kernel = self.new_kernel("concatenate", nodes=[node])
        for v in node.inputs:
            self.view(v)
        kernel.deps |= self.external_deps(node, set())
        self.store(kernel, node.out)

    def visit_gather(self, node: Node) -> None:
        kernel = self.new_kernel("gather", nodes=[node])
        for v in node.inputs:
            self.view(v)
        kernel.deps |= self.external_deps(node, set())
        self.store(kernel, node.out)

    def visit_scatter(self, node: Node) -> None:
        kernel = self.new_kernel("scatter_add", nodes=[node])
        for v in node.inputs:
            self.view(v)
        kernel.deps |= self.external_deps(node, set())
        self.store(kernel, node.out)

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

    # -- sinking: compute a value in the kernel that reads it, not store it for that kernel -----
    def sink_into_consumers(self, kernel: Kernel) -> None:
        """Move elementwise chains whose every reader sits in one later loop kernel into that
        kernel, when it then loads at most one new array: the value is no longer written and
        read back (an MLP's tanh' = 1 - h*h moves from the forward kernel, which stores h anyway,
        into the backward one). The nodes still run once; only where changes."""
        for node in reversed(list(kernel.nodes)):
            if node not in kernel.nodes or len(kernel.nodes) < 2:
                continue
            consumer = self.sole_consumer(kernel, node.outputs[0])
            chain = self.sinkable_chain(kernel, node, consumer) if consumer is not None else None
            if chain is not None:
                self.move_nodes(kernel, consumer, *chain)

    def sole_consumer(self, kernel: Kernel, value: Value) -> Kernel | None:
        """The one other loop kernel, over the same domain, in which every reader of `value` sits."""
        readers = self.uses.get(value, ())
        found = {self.group_of(u.outputs[0]) for u in readers}
        if len(found) != 1 or value in self.outputs or not self.is_full(kernel, value):
            return None
        (consumer,) = found
        if consumer is None or consumer is kernel or consumer.kind != "loop" or consumer.domain != kernel.domain:
            return None
        return consumer

    def is_full(self, kernel: Kernel, value: Value) -> bool:
        return tuple(value.shape) == tuple(kernel.domain) and kernel.axis_map.get(value) == _identity(value)

    def sinkable_chain(self, kernel: Kernel, node: Node, consumer: Kernel) -> tuple[list, set] | None:
        """(nodes to move, values the consumer then reads from storage), or None if moving would
        store a value that is not stored now, form a cycle, or add more than one full load."""
        chain, frontier, members = [node], set(), kernel.member_values
        for n in chain:
            if n.prim.kind is not Kind.ELEMENTWISE or n.prim.multiple_results:
                return None
            for u in n.inputs:
                if is_scalar_constant(self.producer.get(u)) or u in frontier or u in {c.out for c in chain}:
                    continue
                if u not in members or self.stored_anyway(kernel, u, chain):
                    frontier.add(u)
                elif self.is_full(kernel, u) and all(r in chain or self.group_of(r.outputs[0]) is consumer
                                                     for r in self.uses[u]):
                    chain.append(self.producer[u])
                else:
                    return None
        consumer_reads = {u for n in consumer.nodes for u in n.inputs}
        new_loads = [u for u in frontier if u not in consumer_reads and u.size == node.outputs[0].size]
        sources = {k for k in map(self.source_kernel, frontier - members) if k is not None} | \
                  ({kernel} if frontier & members else set())
        if len(new_loads) > 1 or len(chain) >= len(kernel.nodes) \
                or any(k is consumer or self.reaches(k, consumer) for k in sources):
            return None
        return chain, frontier

    def stored_anyway(self, kernel: Kernel, value: Value, chain: list) -> bool:
        """Whether `kernel` must store `value` whatever moves (a reader outside it, or an output)."""
        return value in self.outputs or any(r not in chain and self.group_of(r.outputs[0]) is not kernel
                                            for r in self.uses.get(value, ()))

    def move_nodes(self, kernel: Kernel, consumer: Kernel, chain: list, frontier: set) -> None:
        members = kernel.member_values
        for n in chain:
            kernel.nodes.remove(n)
            v = n.outputs[0]
            consumer.axis_map[v] = kernel.axis_map[v]
            self.group[v] = consumer
            if v in self.views and self.views[v].root is v:  # registered for the consumer's read
                del self.views[v]
                self.writer.pop(v, None)
        consumer.nodes = sorted(consumer.nodes + chain, key=self.order.__getitem__)
        for u in frontier:
            if u in members:
                self.view(u)
                consumer.deps.add(kernel)
            elif not is_scalar_constant(self.producer.get(u)):
                source = self.source_kernel(u)
                if source is not None:
                    consumer.deps.add(source)

    def start_positions(self):
        """Where each kernel would like to run: as early as its first node (a loop carrying a
        matmul epilogue as early as the matmul), so a weight gradient's gemm runs, and frees its
        operands, right when they are ready instead of after the whole backward pass."""
        position = {id(k): i for i, k in enumerate(self.kernels)}
        return lambda kernel: min([position[id(kernel)]] + [position[id(m)] for m in kernel.matmuls])

    def add_member_stores(self, kernel: Kernel) -> None:
        """Store each member value that something outside the kernel reads, in place of a
        product its own gemm wrote when it can (see in_place_root)."""
        stored = {src for _, src in kernel.stores}
        taken: set = set()
        for node in kernel.nodes:
            for v in node.outputs:
                if v in stored:
                    continue
                registered = v in self.views and self.views[v].root is v
                if registered or any(self.group_of(u.outputs[0]) is not kernel for u in self.uses.get(v, ())):
                    root = self.in_place_root(kernel, v, taken) or v
                    taken.add(root)
                    kernel.stores.append((root, v))
                    self.views[v] = own_view(v)
                    self.writer[root] = kernel
                    if root is not v:
                        self.relocated[v] = root

    def relocate_views(self) -> None:
        """Views of a value stored in place (shape ops read it through them) now point at the
        storage it shares: same element layout, another root."""
        for key, view in self.views.items():
            if view.root in self.relocated:
                self.views[key] = View(self.relocated[view.root], view.offset, view.strides)
        for v in self.relocated:
            self.writer.pop(v, None)

    def in_place_root(self, kernel: Kernel, value: Value, taken: set) -> Value | None:
        """The product of one of the kernel's own gemms that `value` can be written over, or None.
        Safe when the kernel's elementwise nodes are the product's only readers, all at the very
        element `value` is stored to, in the one pass over the data that also stores `value`
        (the loop reads product[i] before it writes value[i]; nothing reads product after)."""
        if value in self.outputs or value in self.claimed or not self.is_full(kernel, value) \
                or not _single_pass(kernel):
            return None
        for matmul in kernel.matmuls:
            product = matmul.stores[0][0]
            readers = self.uses.get(product, ())
            if (product in taken or product in self.outputs or product.shape != value.shape
                    or product.dtype != value.dtype or not readers):
                continue
            if all(r.prim.kind is Kind.ELEMENTWISE and self.group_of(r.outputs[0]) is kernel
                   and self.is_full(kernel, r.outputs[0]) for r in readers):
                return product
        return None


def _single_pass(kernel: Kernel) -> bool:
    """Whether the loop kernel makes one pass over its data: no full-size value waits for a
    reduction of the same kernel (a softmax makes three)."""
    after_reduction: set = set()
    for node in kernel.nodes:
        if node.prim.kind is Kind.REDUCE or any(u in after_reduction for u in node.inputs):
            after_reduction.update(node.outputs)
            amap = kernel.axis_map.get(node.outputs[0], ())
            if node.prim.kind is not Kind.REDUCE and any(d in kernel.reduce_axes for d in amap if d is not None):
                return False
    return True


def _identity(value: Value) -> tuple:
    return tuple(range(len(value.shape)))


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
