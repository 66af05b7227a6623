"""evaluate(graph, args): run any graph with each primitive's numpy reference.

This is the oracle: every C test compares the compiled result with it.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Value


def evaluate(graph: Graph, args, env: dict | None = None) -> list[np.ndarray]:
    """Outputs of `graph` on `args` (numpy arrays, in graph.inputs order). `env` carries outer values
    into regions."""
    env = dict(env or {})
    if len(args) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    for value, arg in zip(graph.inputs, args):
        env[value] = np.asarray(arg, dtype=value.dtype).reshape(value.shape)
    for node in graph.nodes:
        ins = [env[v] for v in node.inputs]
        params = node.params
        if node.subgraphs():
            params = dict(params, _env=env)
        with np.errstate(all="ignore"):
            result = node.prim.reference(*ins, **params)
        results = result if node.prim.multiple_results else [result]
        for value, out in zip(node.outputs, results):
            env[value] = _as_value(out, value)
    return [env[v] for v in graph.outputs]


def _as_value(array, value: Value) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != value.dtype or array.shape != tuple(value.shape):
        raise TypeError(
            f"reference produced {array.dtype}{list(array.shape)} for %{value.name}:{value.type_str}"
        )
    return array
