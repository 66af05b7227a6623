"""The kernel graph that fusion produces and code generation consumes: Kernel, KernelGraph.

A Kernel is one C function (see passes/fusion.py for the kinds); a KernelGraph is the program:
kernels in execution order, the View through which every stored value is read, and the roots
that get storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value


@dataclass(eq=False)
class Kernel:
    kind: str  # "loop" | "matmul" | "gather" | "scatter_add" | "concatenate" | "iota" | "scan" | "control"
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


def _identity(value: Value) -> tuple:
    return tuple(range(len(value.shape)))
