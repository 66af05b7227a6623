"""verify(graph): SSA form, every use defined before it, and types re-derived by the shape rules."""
from __future__ import annotations

from ..errors import TracejitError
from .graph import Graph, Value


class IRVerificationError(TracejitError):
    """A graph broke an IR invariant: a bug in a pass or a rule, never a user error."""


def verify(graph: Graph, outer: frozenset = frozenset()) -> None:
    """Raise IRVerificationError naming the first broken invariant. `outer`: values a region may read."""
    from ..ops.registry import Aval

    defined: set[Value] = set(outer)
    names: set[str] = set()

    def define(value: Value, where: str) -> None:
        if value in defined and value not in outer:
            raise IRVerificationError(f"%{value.name} defined twice ({where})")
        if value.name in names:
            raise IRVerificationError(f"name %{value.name} used by two values ({where})")
        defined.add(value)
        names.add(value.name)

    for value in graph.inputs:
        define(value, "graph input")
    for node in graph.nodes:
        for value in node.inputs:
            if value not in defined:
                raise IRVerificationError(f"{node.prim.name} uses %{value.name} before it is defined")
        for sub in node.subgraphs():
            verify(sub, frozenset(defined))
        expected = node.prim.shape_rule(*[Aval(v.shape, v.dtype) for v in node.inputs], **node.params)
        expected = expected if node.prim.multiple_results else [expected]
        if len(expected) != len(node.outputs):
            raise IRVerificationError(f"{node.prim.name}: {len(node.outputs)} outputs, rule gives {len(expected)}")
        for value, aval in zip(node.outputs, expected):
            if tuple(value.shape) != tuple(aval.shape) or value.dtype != aval.dtype:
                raise IRVerificationError(
                    f"{node.prim.name}: %{value.name} has type {value.type_str}, rule gives {aval}"
                )
            define(value, node.prim.name)
    for value in graph.outputs:
        if value not in defined:
            raise IRVerificationError(f"output %{value.name} is not defined")
