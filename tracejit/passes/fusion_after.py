"""What fusion decides after grouping (see passes/fusion.py): sinking, in place, order.

  sinking      an elementwise chain read by one later loop kernel only moves into it when that
               saves a stored array (an MLP's 1 - h*h is computed where the backward reads it);
  in place     a matmul epilogue stores its result over the product it read (tanh(mm + b) in
               mm's buffer) when nothing else reads the product and the loop makes one pass;
               when the result is a graph output, the gemm writes into the output's buffer;
  order        kernels run as early as their first node, so buffers die early.

A mixin of fusion's _Fuser: the methods read and update its state (group, views, writer, uses).
"""
from __future__ import annotations

from ..ir.graph import Node, Value
from ..ops.registry import Kind
from .kernels import Kernel, _identity, is_scalar_constant
from .views import View, own_view


class AfterGrouping:
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
        product its own gemm wrote when it can (see in_place_root); a graph output the kernel
        stores takes such a product into its own buffer instead (product_into_output)."""
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
        for root, v in list(kernel.stores):
            if root is v and v in self.outputs:
                self.product_into_output(kernel, v, taken)

    def relocate_views(self) -> None:
        """Views of a value stored in place (shape ops read it through them) now point at the
        storage it shares: same element layout, another root."""
        for key, view in self.views.items():
            if view.root in self.relocated:
                self.views[key] = View(self.relocated[view.root], view.offset, view.strides)
        for v in self.relocated:
            self.writer.pop(v, None)

    def in_place_root(self, kernel: Kernel, value: Value, taken: set) -> Value | None:
        """The product of one of the kernel's own gemms that `value` can be written over, or None
        (see shared_product). A graph output keeps its own buffer, which the caller allocates:
        there the product moves into it instead (product_into_output)."""
        if value in self.outputs or value in self.claimed:
            return None
        return self.shared_product(kernel, value, taken)

    def product_into_output(self, kernel: Kernel, value: Value, taken: set) -> None:
        """Let the kernel's gemm write its product straight into graph output `value`'s buffer,
        which the epilogue then updates in place (an SGD step's p - lr * (x.T @ d)): no product
        buffer, one array fewer for the loop to stream."""
        product = self.shared_product(kernel, value, taken)
        if product is not None:
            taken.add(product)
            self.relocated[product] = value

    def shared_product(self, kernel: Kernel, value: Value, taken: set) -> Value | None:
        """The product of one of the kernel's own gemms that can share storage with `value`, or
        None. Safe when the kernel's elementwise nodes are the product's only readers, all at the
        very element `value` is stored to, in the one pass over the data that also stores `value`
        (the loop reads product[i] before it writes value[i]; nothing reads product after)."""
        if not self.is_full(kernel, value) or not _single_pass(kernel):
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
