"""vjp_graph: the reverse-mode derivative of a Graph, built as a new Graph (IR to IR, no tape).

The joint graph holds the forward nodes unchanged, then backward nodes that each primitive's
`vjp` rule emits through a GraphBuilder (see ops/vjp_util.py for the rule signature). The sweep
visits the forward nodes in reverse, accumulates cotangents with `add`, and skips what cannot
matter: values that do not depend on a differentiated input ("inactive"), integer and bool values,
zero (None) cotangents, piecewise-constant primitives (`zero_vjp`), and max/min reductions that
the seeded outputs provably do not feel (the row maximum of a stable softmax: invariance.py).
Backward nodes that feed no output (cotangents of inactive inputs a rule emitted anyway) are
pruned at the end.

Values built here are named `ct_<n>`; the gradient of input `%x` is `%ct_x`.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .. import dtypes
from ..errors import TracejitError
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, Value
from ..ops.vjp_util import zeros
from .invariance import invariant_reductions


class NotDifferentiableError(TracejitError, TypeError):
    """The graph uses a primitive that has no VJP rule."""


def vjp_graph(
    graph: Graph,
    wrt: Sequence[int],
    *,
    seeds: Sequence[int] | None = None,
    ones: bool = False,
    name: str | None = None,
) -> Graph:
    """The joint (forward + backward) graph of `graph`.

    wrt:   indices of the graph inputs to differentiate with respect to (float inputs; others get
           zero gradients).
    seeds: indices of the outputs whose cotangents flow back (default: all outputs).
    ones:  seed every seeded output with ones (the gradient of a scalar). Otherwise each seeded
           output gets a cotangent input `%ct_<output name>`, appended after the graph's inputs.

    Returns Graph(inputs=graph.inputs + cotangent inputs, outputs=graph.outputs + one gradient per
    `wrt` index, with the shape and dtype of that input).
    """
    b = _CotangentBuilder(name or f"vjp_{graph.name}", graph)
    wrt_values = [graph.inputs[i] for i in wrt]
    seeded = [graph.outputs[i] for i in (range(len(graph.outputs)) if seeds is None else seeds)]
    held = invariant_reductions(graph, seeded)
    b.notes += [_held_note(node) for node in graph.nodes if node.outputs[0] in held]
    active = _active_values(graph, wrt_values, constant=held)
    cts: dict[Value, Value] = {}
    for out in seeded:
        seed = _ones(b, out) if ones else b.new_input(out.shape, out.dtype, name=f"ct_{out.name}")
        if out in active:
            _accumulate(b, cts, out, seed)
    _backward_sweep(b, graph, active, cts)
    grads = [cts[x] if x in cts else zeros(b, x.shape, x.dtype) for x in wrt_values]
    outputs = list(graph.outputs) + grads
    return _finish(b, len(graph.nodes), outputs, dict(zip(grads, wrt_values)))


# ---- the reverse sweep --------------------------------------------------------------------------
def _active_values(graph: Graph, wrt: list[Value], constant: set[Value]) -> set[Value]:
    """Float values that depend on a differentiated input: the only ones that carry cotangents.

    `constant` values are treated as constants (their cotangent is known to be zero: see
    invariance.py), and so are the values that depend on the inputs only through them."""
    active = {x for x in wrt if dtypes.is_float(x.dtype)}
    for node in graph.nodes:
        if any(v in active for v in node.inputs):
            active.update(v for v in node.outputs if dtypes.is_float(v.dtype) and v not in constant)
    return active


def _backward_sweep(b: "_CotangentBuilder", graph: Graph, active: set[Value], cts: dict) -> None:
    for node in reversed(graph.nodes):
        out_cts = [cts.get(v) for v in node.outputs]
        if node.prim.zero_vjp or all(c is None for c in out_cts):
            continue
        if not any(v in active for v in node.inputs):
            continue
        in_cts = _apply_rule(b, node, out_cts)
        for x, ct in zip(node.inputs, in_cts):
            if ct is not None and x in active:
                _check_cotangent(node, x, ct)
                _accumulate(b, cts, x, ct)


def _held_note(node: Node) -> str:
    where = f" at {node.loc}" if node.loc else ""
    return (f"backward: {node.prim.name} over axes {node.params['axes']}{where} held constant (the outputs "
            "do not change when it shifts), so its tie-mask gradient, zero in exact arithmetic, is left out")


def _apply_rule(b, node: Node, out_cts: list) -> list:
    rule = node.prim.vjp
    if rule is None:
        where = f" (at {node.loc})" if node.loc else ""
        raise NotDifferentiableError(
            f"tracejit cannot differentiate `{node.prim.name}`{where}: the primitive has no VJP rule. "
            "Compute that part outside the differentiated function, or differentiate with respect to "
            "arguments it does not depend on."
        )
    b.loc = node.loc
    in_cts = rule(b, node, out_cts if node.prim.multiple_results else out_cts[0])
    if len(in_cts) != len(node.inputs):
        raise TracejitError(f"internal error: the VJP rule of {node.prim.name} returned {len(in_cts)} "
                            f"cotangents for {len(node.inputs)} inputs")
    return in_cts


def _check_cotangent(node: Node, x: Value, ct: Value) -> None:
    if tuple(ct.shape) != tuple(x.shape) or ct.dtype != x.dtype:
        raise TracejitError(
            f"internal error: the VJP rule of {node.prim.name} gave a cotangent {ct!r} for the input {x!r}"
        )


def _accumulate(b: GraphBuilder, cts: dict, x: Value, ct: Value) -> None:
    cts[x] = b.emit("add", cts[x], ct) if x in cts else ct


def _ones(b: GraphBuilder, out: Value) -> Value:
    one = b.constant(np.ones((), out.dtype))
    return b.emit("broadcast_to", one, shape=out.shape) if out.shape else one


# ---- building the joint graph -------------------------------------------------------------------
class _CotangentBuilder(GraphBuilder):
    """A builder that starts with the forward graph and names what it emits `ct_<n>`."""

    def __init__(self, name: str, forward: Graph):
        super().__init__(name)
        for value in forward.inputs:
            self.inputs.append(value)
            self._used_names.add(value.name)
        for node in forward.nodes:
            self.add_node(node)
        self.notes = list(forward.notes)
        self._ct_counter = 0

    def emit(self, prim, *inputs, loc=None, name=None, **params):
        return super().emit(prim, *inputs, loc=loc, name=name or self._next_ct_name(), **params)

    def _next_ct_name(self) -> str:
        while f"ct_{self._ct_counter}" in self._used_names:
            self._ct_counter += 1
        return f"ct_{self._ct_counter}"


def _finish(b: _CotangentBuilder, n_forward: int, outputs: list[Value], grad_of: dict) -> Graph:
    """Prune backward nodes no output needs, name each gradient ct_<input>, build the graph."""
    backward = _live_nodes(b.nodes[n_forward:], outputs)
    created = {v for node in backward for v in node.outputs}
    new_names = {g: b.fresh_name(f"ct_{x.name}") for g, x in grad_of.items() if g in created}
    renamed = {v: Value(n, v.shape, v.dtype) for v, n in new_names.items()}
    backward = [_substitute(node, renamed) for node in backward]
    outputs = [renamed.get(v, v) for v in outputs]
    return Graph(tuple(b.inputs), tuple(b.nodes[:n_forward]) + tuple(backward), tuple(outputs), b.name,
                 b.unique_notes())


def _live_nodes(nodes: list[Node], outputs: list[Value]) -> list[Node]:
    live, kept = set(outputs), []
    for node in reversed(nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    return kept[::-1]


def _substitute(node: Node, renamed: dict[Value, Value]) -> Node:
    inputs = tuple(renamed.get(v, v) for v in node.inputs)
    outputs = tuple(renamed.get(v, v) for v in node.outputs)
    if inputs == node.inputs and outputs == node.outputs:
        return node
    return replace(node, inputs=inputs, outputs=outputs)
