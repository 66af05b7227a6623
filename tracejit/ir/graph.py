"""The graph IR: typed SSA values, nodes applying primitives, and graphs (possibly nested as regions)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dtypes


@dataclass(frozen=True, eq=False)
class Value:
    """One SSA value: defined once (graph input or node output), identified by object identity."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # not np.prod: ~5 us a call, and the passes ask thousands of times

    @property
    def type_str(self) -> str:
        return f"{dtypes.short_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type_str}"


@dataclass(frozen=True, eq=False)
class Node:
    """outputs = prim(*inputs, **params). `loc` is the user's 'file.py:LINE' that produced it."""

    prim: Any  # ops.registry.Primitive (not imported: ir/ sits below ops/)
    inputs: tuple[Value, ...]
    params: dict = field(default_factory=dict)
    outputs: tuple[Value, ...] = ()
    loc: str | None = None

    @property
    def out(self) -> Value:
        """The single output of a one-output node."""
        (value,) = self.outputs
        return value

    def subgraphs(self) -> list["Graph"]:
        """Nested regions held in params (branches and loop bodies of control-flow nodes)."""
        found = []
        for value in self.params.values():
            if isinstance(value, Graph):
                found.append(value)
            elif isinstance(value, tuple) and value and all(isinstance(v, Graph) for v in value):
                found.extend(value)
        return found


@dataclass(frozen=True, eq=False)
class Graph:
    """A function: inputs, nodes in a valid execution order, outputs (values of inputs or nodes)."""

    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]
    name: str = "main"
    notes: tuple[str, ...] = ()  # what a transformation decided, printed with the IR (autodiff's cuts)

    def producers(self) -> dict[Value, Node]:
        return {v: node for node in self.nodes for v in node.outputs}

    def uses(self) -> dict[Value, list[Node]]:
        table: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for v in node.inputs:
                table.setdefault(v, []).append(node)
        return table

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)
