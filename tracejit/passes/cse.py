"""eliminate_common_subexpressions: one node per distinct (primitive, inputs, params).

Every primitive is pure, so a node that repeats an earlier one (same primitive, same input values,
equal params; operands in either order for commutative ones) is dropped and its outputs replaced
by the earlier node's. This is how a backward graph reuses forward values (`logits - m` computed
once in softmax cross-entropy) and how the many small constants VJP rules emit become one each.
Regions are processed on their own (they never reuse values of the enclosing graph they did not
already read).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..ir.graph import Graph, Node, Value
from .rewrite import rewrite_node, with_nodes

_INLINE_BYTES = 256  # constant arrays larger than this are keyed by a digest of their bytes


def eliminate_common_subexpressions(graph: Graph, env: dict[Value, Value] | None = None) -> Graph:
    env = dict(env or {})
    seen: dict[tuple, Node] = {}
    nodes = []
    for node in graph.nodes:
        node = rewrite_node(node, env, eliminate_common_subexpressions)
        key = node_key(node)
        earlier = seen.get(key)
        if earlier is not None and _same_types(earlier, node):
            env.update(zip(node.outputs, earlier.outputs))
            continue
        seen.setdefault(key, node)
        nodes.append(node)
    return with_nodes(graph, nodes, env)


def node_key(node: Node) -> tuple:
    inputs = node.inputs
    if node.prim.commutative:
        inputs = tuple(sorted(inputs, key=id))
    return (node.prim.name, inputs, freeze(node.params))


def _same_types(a: Node, b: Node) -> bool:
    return len(a.outputs) == len(b.outputs) and all(
        x.shape == y.shape and x.dtype == y.dtype for x, y in zip(a.outputs, b.outputs)
    )


def freeze(value):
    """A hashable, exact stand-in for a params value: arrays by dtype, shape and bytes; regions
    (Graphs) by identity; floats by their bits (so 0.0 and -0.0 differ)."""
    if isinstance(value, np.ndarray):
        data = value.tobytes()
        if len(data) > _INLINE_BYTES:
            data = hashlib.blake2b(data, digest_size=32).digest()
        return ("array", value.dtype.str, value.shape, data)
    if isinstance(value, Graph):
        return ("graph", id(value))
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.tobytes())
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple((k, freeze(v)) for k, v in sorted(value.items()))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return (type(value).__name__, value)
