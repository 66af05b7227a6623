"""simplify: constant folding of tiny constants and exact algebraic identities.

Every rewrite keeps numpy's result bit for bit:
  - a node whose inputs are all tiny constants becomes a constant (run with its numpy reference);
  - x + 0, x - 0, x * 1, x / 1, x ** 1 -> x; x ** 2 -> square(x), x ** 0.5 -> sqrt(x),
    x ** -1 -> reciprocal(x) (numpy's own fast paths for these exponents give the same bits);
  - -(-x) -> x; where(True, a, b) -> a (a constant condition);
  - an elementwise operand made by broadcast_to is read unbroadcast (elementwise ops broadcast
    implicitly) when the result's shape does not change;
  - reshape chains collapse, transpose chains compose; reshape / broadcast_to / astype to the
    same type and the identity transpose vanish;
  - a constant that is 0, 1, ..., n-1 (np.arange written in user code) becomes `iota`;
  - an elementwise op on splats (one-element constants broadcast, e.g. a loss seed) is computed
    once and broadcast; a reshape of a splat is a broadcast of the same constant;
  - a reduction over axes of extent 1 is the element (a float sum: 0.0 + the element).
A rewritten node keeps its output Value, so no value is renamed. Dead producers are left for DCE.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ShapeError
from ..ir.graph import Graph, Node, Value
from ..ops.registry import PRIMITIVES, Kind
from ..ops.shape_util import broadcast_shapes
from .rewrite import rewrite_node, with_nodes

FOLD_LIMIT = 64  # elements: fold only tiny constants, never materialize big arrays in the program


def simplify(graph: Graph, env: dict[Value, Value] | None = None) -> Graph:
    env = dict(env or {})
    producer: dict[Value, Node] = {}
    nodes = []
    for node in graph.nodes:
        result = _simplify_node(rewrite_node(node, env, simplify), producer, nodes)
        if isinstance(result, Value):
            env[node.outputs[0]] = result
            continue
        nodes.append(result)
        producer.update((v, result) for v in result.outputs)
    return with_nodes(graph, nodes, env)


def _simplify_node(node: Node, producer: dict, nodes: list[Node]) -> Node | Value:
    """Apply RULES until none fires. A rule returns a Value (the node's replacement), a Node (same
    outputs), or (new nodes to place first, Node): those are appended to `nodes` right away."""
    for _ in range(8):  # a rewrite may enable another (fold, then iota); a few rounds suffice
        for rule in RULES:
            result = rule(node, producer)
            if isinstance(result, Value):
                return result
            if isinstance(result, tuple):
                for extra in result[0]:
                    nodes.append(extra)
                    producer.update((v, extra) for v in extra.outputs)
                result = result[1]
            if result is not None:
                node = result
                break
        else:
            return node
    return node


# ---- constants ----------------------------------------------------------------------------------
def constant_of(value: Value, producer: dict) -> np.ndarray | None:
    """The array a tiny constant (or iota) value holds, else None."""
    node = producer.get(value)
    if node is None or value.size > FOLD_LIMIT:
        return None
    if node.prim.name == "constant":
        return node.params["value"]
    if node.prim.name == "iota":
        return np.arange(node.params["length"], dtype=node.params["dtype"])
    return None


def _as_constant(node: Node, array: np.ndarray) -> Node:
    return Node(PRIMITIVES["constant"], (), {"value": array}, node.outputs, node.loc)


def fold_constants(node: Node, producer: dict) -> Node | None:
    if node.prim.kind in (Kind.SOURCE, Kind.CONTROL) or node.prim.multiple_results or not node.inputs:
        return None
    if node.prim.name == "broadcast_to":  # a broadcast scalar stays one: smaller programs, stride-0 reads
        return None
    out = node.outputs[0]
    arrays = [constant_of(v, producer) for v in node.inputs]
    if out.size > FOLD_LIMIT or any(a is None for a in arrays):
        return None
    try:
        with np.errstate(all="ignore"):
            result = np.array(node.prim.reference(*arrays, **node.params))
    except Exception:  # e.g. an index out of range: leave it to run time, which reports it
        return None
    if result.dtype != out.dtype or result.shape != tuple(out.shape):
        return None
    return _as_constant(node, result)


def splat_of(value: Value, producer: dict) -> Value | None:
    """The one-element constant that `value` repeats everywhere (through broadcast_to and reshape),
    else None. A loss seed broadcast to every row is such a splat."""
    node = producer.get(value)
    while node is not None and node.prim.name in ("broadcast_to", "reshape"):
        value, node = node.inputs[0], producer.get(node.inputs[0])
    if node is None or node.prim.name != "constant" or value.size != 1:
        return None
    return value


def reshape_splat(node: Node, producer: dict) -> Node | None:
    """reshape of a broadcast one-element constant -> one broadcast_to of that constant."""
    if node.prim.name != "reshape" or producer.get(node.inputs[0]) is None:
        return None
    if producer[node.inputs[0]].prim.name != "broadcast_to":
        return None
    scalar = splat_of(node.inputs[0], producer)
    if scalar is None or scalar.ndim > node.outputs[0].ndim:
        return None
    return Node(PRIMITIVES["broadcast_to"], (scalar,), {"shape": tuple(node.outputs[0].shape)}, node.outputs,
                node.loc)


def fold_splats(node: Node, producer: dict):
    """An elementwise op whose operands are all splats of one-element constants computes one number:
    fold it and broadcast the result (no kernel, no stored array). Exact: numpy's reference on the
    scalars gives the bits each element would have."""
    out = node.outputs[0]
    if node.prim.kind is not Kind.ELEMENTWISE or node.prim.multiple_results or out.size <= FOLD_LIMIT:
        return None
    scalars = [splat_of(v, producer) for v in node.inputs]
    if not scalars or any(s is None for s in scalars):
        return None
    arrays = [producer[s].params["value"].reshape(()) for s in scalars]
    try:
        with np.errstate(all="ignore"):
            result = np.array(node.prim.reference(*arrays, **node.params))
    except Exception:  # leave it to run time, which reports it
        return None
    if result.dtype != out.dtype or result.size != 1:
        return None
    constant = Value(f"{out.name}_splat", (), out.dtype)
    folded = Node(PRIMITIVES["constant"], (), {"value": result.reshape(())}, (constant,), node.loc)
    return [folded], Node(PRIMITIVES["broadcast_to"], (constant,), {"shape": tuple(out.shape)}, node.outputs,
                          node.loc)


def arange_to_iota(node: Node, producer: dict) -> Node | None:
    if node.prim.name != "constant":
        return None
    value = node.params["value"]
    if value.ndim != 1 or value.size < 2 or value.dtype.kind not in "iu":
        return None
    if not np.array_equal(value, np.arange(value.size)):
        return None
    return Node(PRIMITIVES["iota"], (), {"length": int(value.size), "dtype": value.dtype}, node.outputs, node.loc)


# ---- algebraic identities -----------------------------------------------------------------------
def _is_scalar_constant(value: Value, producer: dict, number) -> bool:
    """`value` is the constant `number` everywhere; a float zero must also have its sign."""
    array = constant_of(value, producer)
    if array is None or array.size == 0 or not np.all(array == number):
        return False
    return number != 0 or array.dtype.kind != "f" or bool(np.all(np.signbit(array) == np.signbit(number)))


def _operand_if_other_is(node: Node, producer: dict, number, sides=(0, 1)) -> Value | None:
    """The operand x of a binary node whose other operand is the constant `number` everywhere,
    provided x alone already has the result's shape and dtype."""
    out = node.outputs[0]
    for side in sides:
        x, other = node.inputs[1 - side], node.inputs[side]
        if _same_type(x, out) and _is_scalar_constant(other, producer, number):
            return x
    return None


def _same_type(a: Value, b: Value) -> bool:
    return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


def drop_identities(node: Node, producer: dict) -> Value | None:
    """x + 0, x * 1, x - 0, x / 1, x ** 1 -> x. For floats the zero must have the right sign:
    -0.0 + 0.0 is +0.0 (numpy's too), so x + 0 keeps only a -0.0 and x - 0 only a +0.0."""
    name = node.prim.name
    if name == "add":
        return _operand_if_other_is(node, producer, -0.0 if node.outputs[0].dtype.kind == "f" else 0)
    if name == "multiply":
        return _operand_if_other_is(node, producer, 1)
    if name == "subtract":
        return _operand_if_other_is(node, producer, 0.0 if node.outputs[0].dtype.kind == "f" else 0, sides=(1,))
    if name in ("divide", "power"):
        return _operand_if_other_is(node, producer, 1, sides=(1,))
    if name == "negative":
        inner = producer.get(node.inputs[0])
        return inner.inputs[0] if inner is not None and inner.prim.name == "negative" else None
    if name in ("reshape", "broadcast_to", "astype", "transpose"):
        x = node.inputs[0]
        if _same_type(x, node.outputs[0]) and (name != "transpose" or node.params["perm"] == tuple(range(x.ndim))):
            return x
    if name == "where":
        return _constant_choice(node, producer)
    return None


def _constant_choice(node: Node, producer: dict) -> Value | None:
    cond = constant_of(node.inputs[0], producer)
    if cond is None or cond.size == 0 or not (cond.all() or not cond.any()):
        return None
    chosen = node.inputs[1] if cond.all() else node.inputs[2]
    return chosen if _same_type(chosen, node.outputs[0]) else None


POWER_SPECIAL = {2: "square", 0.5: "sqrt", -1: "reciprocal"}


def special_powers(node: Node, producer: dict) -> Node | None:
    if node.prim.name != "power" or node.inputs[0].dtype.kind != "f":
        return None
    x, exponent = node.inputs
    for number, prim in POWER_SPECIAL.items():
        if _same_type(x, node.outputs[0]) and _is_scalar_constant(exponent, producer, number):
            return replace(node, prim=PRIMITIVES[prim], inputs=(x,), params={})
    return None


def collapse_chains(node: Node, producer: dict) -> Node | None:
    """reshape(reshape(x)) -> reshape(x); transpose(transpose(x)) -> one transpose."""
    name = node.prim.name
    inner = producer.get(node.inputs[0]) if node.inputs else None
    if inner is None or inner.prim.name != name or name not in ("reshape", "transpose"):
        return None
    if name == "reshape":
        return replace(node, inputs=inner.inputs)
    perm = tuple(inner.params["perm"][p] for p in node.params["perm"])
    return replace(node, inputs=inner.inputs, params={"perm": perm})


def read_unbroadcast(node: Node, producer: dict) -> Node | None:
    """op(broadcast_to(a), b) -> op(a, b) for elementwise ops, when the result shape is unchanged."""
    if node.prim.kind is not Kind.ELEMENTWISE:
        return None
    inputs = list(node.inputs)
    for i, value in enumerate(inputs):
        inner = producer.get(value)
        if inner is not None and inner.prim.name == "broadcast_to":
            candidate = inputs[:i] + [inner.inputs[0]] + inputs[i + 1:]
            if _broadcast_shape(candidate) == tuple(node.outputs[0].shape):
                inputs = candidate
    return replace(node, inputs=tuple(inputs)) if inputs != list(node.inputs) else None


def _broadcast_shape(values) -> tuple | None:
    try:
        return broadcast_shapes(*(tuple(v.shape) for v in values))
    except ShapeError:
        return None


def one_element_reductions(node: Node, producer: dict):
    """A reduction over axes of extent 1 only reduces nothing: max, min and prod are the element
    itself, a float sum is 0.0 + it (numpy's: a -0.0 becomes 0.0), an int sum the element, and
    argmax/argmin are 0. Left as reductions, their results would vary along axes that other
    reductions of the same fused loop reduce, which the loop nest cannot express."""
    name = node.prim.name
    if node.prim.kind is not Kind.REDUCE or name not in ("sum", "prod", "max", "min", "argmax", "argmin"):
        return None
    x, out = node.inputs[0], node.outputs[0]
    if any(x.shape[a] != 1 for a in node.params["axes"]):
        return None
    if name in ("argmax", "argmin"):
        return _as_constant(node, np.zeros(out.shape, out.dtype))
    if name != "sum" or out.dtype.kind != "f":
        return Node(PRIMITIVES["reshape"], (x,), {"shape": tuple(out.shape)}, node.outputs, node.loc)
    element = Value(f"{out.name}_element", tuple(out.shape), out.dtype)
    zero = Value(f"{out.name}_zero", (), out.dtype)
    first = [Node(PRIMITIVES["reshape"], (x,), {"shape": tuple(out.shape)}, (element,), node.loc),
             Node(PRIMITIVES["constant"], (), {"value": np.zeros((), out.dtype)}, (zero,), node.loc)]
    return first, Node(PRIMITIVES["add"], (element, zero), {}, node.outputs, node.loc)


RULES = [fold_constants, drop_identities, special_powers, collapse_chains, read_unbroadcast, arange_to_iota,
         reshape_splat, fold_splats, one_element_reductions]
