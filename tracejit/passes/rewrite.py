"""Node rewriting shared by the passes: replace input values, and run a pass inside regions."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..ir.graph import Graph, Node, Value


def rewrite_node(node: Node, env: dict[Value, Value], region_pass: Callable | None = None) -> Node:
    """`node` reading env[v] instead of v; its regions (branches, loop bodies) are rewritten by
    region_pass(region, env), which sees the same replacements for the outer values it reads."""
    inputs = tuple(env.get(v, v) for v in node.inputs)
    params = node.params
    if region_pass is not None and node.subgraphs():
        params = {k: _map_graphs(v, lambda g: region_pass(g, env)) for k, v in params.items()}
    if params is node.params and all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    return replace(node, inputs=inputs, params=params)


def _map_graphs(value, fn):
    if isinstance(value, Graph):
        return fn(value)
    if isinstance(value, tuple) and value and all(isinstance(g, Graph) for g in value):
        return tuple(fn(g) for g in value)
    return value


def with_nodes(graph: Graph, nodes: list[Node], env: dict[Value, Value]) -> Graph:
    return replace(graph, nodes=tuple(nodes), outputs=tuple(env.get(v, v) for v in graph.outputs))
