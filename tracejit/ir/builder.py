"""GraphBuilder: the one way nodes are made. Runs the shape rule, names the value, records the node.

Used by the tracer, by autodiff (VJP rules emit through it) and by passes alike.
"""
from __future__ import annotations

import numpy as np

from ..errors import TracejitError
from .graph import Graph, Node, Value


def _primitive(prim):
    if isinstance(prim, str):
        return _registry().PRIMITIVES[prim]
    return prim


def _registry():
    """ops.registry, imported on first use (ir/ sits below ops/) and then kept: an import
    statement in emit's path cost ~1 us per node, a tenth of tracing an MLP step."""
    global _REGISTRY
    if _REGISTRY is None:
        from ..ops import registry

        _REGISTRY = registry
    return _REGISTRY


_REGISTRY = None


class GraphBuilder:
    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.loc: str | None = None  # source location stamped on nodes emitted without one
        self.notes: list[str] = []  # Graph.notes of the graph built, and of graphs inlined into it
        self._used_names: set[str] = set()
        self._counter = 0

    # -- naming -------------------------------------------------------------------------------
    def fresh_name(self, hint: str | None = None) -> str:
        if hint:
            hint = "".join(c if c.isalnum() or c == "_" else "_" for c in hint).strip("_") or "v"
            if hint not in self._used_names:
                self._used_names.add(hint)
                return hint
        while True:
            name = f"{hint}{self._counter}" if hint else str(self._counter)
            self._counter += 1
            if name not in self._used_names:
                self._used_names.add(name)
                return name

    # -- construction -------------------------------------------------------------------------
    def new_input(self, shape, dtype, name: str | None = None) -> Value:
        value = Value(self.fresh_name(name or "in"), tuple(int(d) for d in shape), np.dtype(dtype))
        self.inputs.append(value)
        return value

    def emit(self, prim, *inputs: Value, loc: str | None = None, name: str | None = None, **params):
        """Append prim(*inputs, **params); return its output Value (a list when multiple_results)."""
        prim = _primitive(prim)
        avals = prim.shape_rule(*[_aval(v) for v in inputs], **params)
        out_avals = avals if prim.multiple_results else [avals]
        outputs = tuple(
            Value(self.fresh_name(name), tuple(int(d) for d in aval.shape), np.dtype(aval.dtype)) for aval in out_avals
        )
        self.nodes.append(Node(prim, tuple(inputs), params, outputs, loc or self.loc))
        return list(outputs) if prim.multiple_results else outputs[0]

    def add_node(self, node: Node) -> None:
        """Append an already-built node (used when copying graphs); its names must be fresh."""
        for value in node.outputs:
            self._used_names.add(value.name)
        self.nodes.append(node)

    def constant(self, value, dtype=None, loc: str | None = None) -> Value:
        array = np.asarray(value, dtype=dtype)
        return self.emit("constant", value=array, loc=loc)

    def build(self, outputs) -> Graph:
        return Graph(tuple(self.inputs), tuple(self.nodes), tuple(outputs), self.name, self.unique_notes())

    def unique_notes(self) -> tuple[str, ...]:
        """The notes once each, in order (a graph inlined twice brings its notes twice)."""
        return tuple(dict.fromkeys(self.notes))


def _aval(value):
    if not isinstance(value, Value):
        raise TracejitError(f"internal error: expected an IR Value, got {type(value).__name__}")
    return _registry().Aval(value.shape, value.dtype)
