"""eliminate_dead_code: drop nodes whose outputs no output depends on (regions included)."""
from __future__ import annotations

from dataclasses import replace

from ..ir.graph import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            node = _prune_outputs(node, live)
            node = _prune_regions(node)
            kept.append(node)
            live.update(node.inputs)
    return replace(graph, nodes=tuple(reversed(kept)))


def _prune_outputs(node, live):
    """Control flow drops the outputs nobody reads (its own rule says which it can drop safely)."""
    flags = [v in live for v in node.outputs]
    if node.prim.prune_outputs is None or all(flags):
        return node
    return node.prim.prune_outputs(node, flags)


def _prune_regions(node):
    if not node.subgraphs():
        return node
    params = {
        k: tuple(eliminate_dead_code(g) for g in v) if isinstance(v, tuple) and v and isinstance(v[0], Graph)
        else eliminate_dead_code(v) if isinstance(v, Graph) else v
        for k, v in node.params.items()
    }
    return replace(node, params=params)
