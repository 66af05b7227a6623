"""rewrite_indexing: respell nodes whose Primitive has a `rewrite` rule in denser ops.

The rules live on the records (ops/index.py): a gather of a few elements of an elementwise
result moves onto the operands, and a one-hot scatter_add becomes a `where` select. Either way
no (n, k) array of the original spelling is stored, and the loop kernels fuse what remains
(W3's cross-entropy gradient becomes one elementwise pass in the softmax row kernel). The sum
rule (ops/reduce.py) then drops the row sum of such a select: it is the update itself.
The nodes a rule emits go where the rewritten node stood; the rewritten node's output is
replaced by the rule's result everywhere, and producers left without readers are DCE's job.
Run simplify afterwards: the rules emit reshapes of reshapes and the like.
"""
from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Value
from .rewrite import rewrite_node, with_nodes


def rewrite_indexing(graph: Graph, env: dict[Value, Value] | None = None) -> Graph:
    env = dict(env or {})
    b = _builder_beside(graph)
    producer: dict = {}
    uses = _use_counts(graph)
    for node in graph.nodes:
        node = rewrite_node(node, env, rewrite_indexing)
        rule = node.prim.rewrite
        result = None
        if rule is not None and not node.prim.multiple_results:
            b.loc = node.loc
            start = len(b.nodes)
            result = rule(b, node, producer, uses)
            if result is None:
                del b.nodes[start:]  # a rule that declines leaves nothing behind
        if result is not None and result is not node.out:
            env[node.out] = result
            for emitted in b.nodes[start:]:
                producer.update((v, emitted) for v in emitted.outputs)
            continue
        b.nodes.append(node)
        producer.update((v, node) for v in node.outputs)
    return with_nodes(graph, b.nodes, env)


def _builder_beside(graph: Graph) -> GraphBuilder:
    """A builder whose fresh names do not collide with the graph's own."""
    b = GraphBuilder(graph.name)
    for value in list(graph.inputs) + [v for n in graph.nodes for v in n.outputs]:
        b.fresh_name(value.name)
    return b


def _use_counts(graph: Graph) -> dict:
    counts: dict = {}
    for node in graph.nodes:
        for v in set(node.inputs):
            counts[v] = counts.get(v, 0) + 1
    for v in graph.outputs:
        counts[v] = counts.get(v, 0) + 1
    return counts


__all__ = ["rewrite_indexing"]
