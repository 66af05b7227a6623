"""Structured control flow: cond, while and scan. Each node holds its regions (closed sub-graphs)
in params; everything a region reads arrives through the node's inputs (captured outer values are
trailing "consts"), so a region never refers to a value of the enclosing graph.

  cond(pred, *operands)          true_branch, false_branch: (*operands) -> outs
  while(*carries, *consts)       cond: (*carries, *consts) -> bool[];  body: (*carries, *consts) -> carries
  scan(*carries, *xs, *consts)   body: (t:i64[], *carries, *x[t], *consts) -> (*carries, *y[t])
                                 outputs: the final carries, then each y stacked over `length` steps
                                 (t runs length-1 .. 0 when reverse); params num_carry, num_xs

Gradients: cond -> a cond over the branches' pullbacks; scan -> a scan in the other direction over
the carries saved at each step (a y of the body that is one of its carry inputs is such a stack:
the front end adds them, DCE drops them when no gradient needs them); while -> an error. A
pullback reads the region outputs it needs (tanh's result, say) from the forward node's outputs
instead of recomputing them. The VJP rules build regions with autodiff's vjp_graph (imported
late: control flow is the one place where a rule differentiates a graph of its own).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError, TracejitError
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, Value
from ..ir.interpret import evaluate
from .registry import Aval, Kind, Primitive, register
from .vjp_util import zeros

INDEX_DTYPE = dtypes.int64  # the type of a scan's step index `t`


# ---- checks shared by the shape rules -----------------------------------------------------------
def _aval_text(aval) -> str:
    return f"{dtypes.short_name(aval.dtype)}[{','.join(map(str, aval.shape))}]"


def _same(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and np.dtype(a.dtype) == np.dtype(b.dtype)


def _check_types(what: str, got, expected) -> None:
    """got[i] and expected[i] (avals or Values) agree in number, shape and dtype."""
    if len(got) != len(expected):
        raise ShapeError(f"{what}: {len(got)} values where {len(expected)} are expected")
    for i, (g, e) in enumerate(zip(got, expected)):
        if not _same(g, e):
            raise ShapeError(f"{what}: value {i} is {_aval_text(g)}, expected {_aval_text(e)}")


def _avals(values) -> list[Aval]:
    return [Aval(tuple(v.shape), np.dtype(v.dtype)) for v in values]


def _check_predicate(what: str, aval) -> None:
    if tuple(aval.shape) != () or np.dtype(aval.dtype) != dtypes.bool_:
        raise DTypeError(f"{what}: the predicate must be a scalar bool, got {_aval_text(aval)}")


# ---- cond ---------------------------------------------------------------------------------------
def _cond_rule(pred, *operands, true_branch: Graph, false_branch: Graph):
    _check_predicate("cond", pred)
    for label, branch in (("true_branch", true_branch), ("false_branch", false_branch)):
        _check_types(f"cond: inputs of {label}", operands, branch.inputs)
    _check_types("cond: outputs of false_branch vs true_branch", false_branch.outputs, true_branch.outputs)
    return _avals(true_branch.outputs)


def _cond_reference(pred, *operands, true_branch, false_branch, _env=None):
    return evaluate(true_branch if bool(pred) else false_branch, operands)


def _cond_vjp(b, node: Node, cts):
    """A cond over the pullbacks of the two branches: the taken branch's backward runs. Branch
    outputs the backward reads come from the forward node instead of being recomputed."""
    pred, *operands = node.inputs
    wrt = [i for i, v in enumerate(operands) if dtypes.is_float(v.dtype)]
    seeds = [k for k, v in enumerate(node.outputs) if dtypes.is_float(v.dtype) and cts[k] is not None]
    keys = ("true_branch", "false_branch")
    pullbacks = {key: Pullback(node.params[key], wrt, seeds) for key in keys}
    reused = sorted(set().union(*(pb.reused for pb in pullbacks.values())))
    branches = {key: pullbacks[key].region(reused) for key in keys}
    forward = [node.outputs[k] for k in reused]
    grads = b.emit(cond_p, pred, *operands, *forward, *[cts[k] for k in seeds], **branches)
    in_cts = [None] * len(node.inputs)
    for i, grad in zip(wrt, grads):
        in_cts[1 + i] = grad
    return in_cts


class Pullback:
    """The derivative of a region: vjp_graph's joint graph, and which of the region's outputs its
    backward part reads (a control node's outputs hold those already: no need to recompute them)."""

    def __init__(self, graph: Graph, wrt: list[int], seeds: list[int]):
        from ..autodiff.vjp import vjp_graph

        self.graph, self.n_seeds = graph, len(seeds)
        self.joint = vjp_graph(graph, wrt, seeds=seeds, name=f"{graph.name}_vjp")
        backward = self.joint.nodes[len(graph.nodes):]
        reads = {v for n in backward for v in n.inputs} | set(self.joint.outputs[len(graph.outputs):])
        inputs = set(graph.inputs)
        first = {}
        for k, v in enumerate(graph.outputs):
            if v in reads and v not in inputs:
                first.setdefault(v, k)
        self.reused = sorted(first.values())

    def emit(self, bb: GraphBuilder, inputs: list[Value], forward: dict[int, Value], cts: list[Value]) -> list[Value]:
        """Inline the joint graph into `bb`; `forward` gives the Values of reused outputs. Returns
        the cotangents of the `wrt` inputs."""
        bound = {self.graph.outputs[k]: v for k, v in forward.items()}
        outs = inline(bb, self.joint, list(inputs) + list(cts), bound)
        return outs[len(self.graph.outputs):]

    def region(self, reused: list[int]) -> Graph:
        """(*inputs, *reused outputs, *output cotangents) -> input cotangents (a cond's pullback)."""
        g = self.graph
        bb = GraphBuilder(f"{g.name}_vjp")
        inputs = [bb.new_input(v.shape, v.dtype, name=v.name) for v in g.inputs]
        forward = {k: bb.new_input(g.outputs[k].shape, g.outputs[k].dtype, name=g.outputs[k].name) for k in reused}
        cts = [bb.new_input(v.shape, v.dtype, name=v.name) for v in self.joint.inputs[len(g.inputs):]]
        return bb.build(self.emit(bb, inputs, forward, cts))


def _cond_prune(node: Node, live: list[bool]) -> Node:
    """Drop the outputs nobody reads from the node and from both branches."""
    keep = lambda g: Graph(g.inputs, g.nodes, tuple(v for v, l in zip(g.outputs, live) if l), g.name)
    params = dict(node.params, true_branch=keep(node.params["true_branch"]),
                  false_branch=keep(node.params["false_branch"]))
    return replace(node, params=params, outputs=tuple(v for v, l in zip(node.outputs, live) if l))


# ---- while --------------------------------------------------------------------------------------
def _while_rule(*args, cond: Graph, body: Graph):
    carries = args[:len(body.outputs)]
    _check_types("while: inputs of cond", args, cond.inputs)
    _check_types("while: inputs of body", args, body.inputs)
    _check_types("while: body outputs vs carries", body.outputs, carries)
    if len(cond.outputs) != 1:
        raise ShapeError(f"while: cond returns {len(cond.outputs)} values, expected one predicate")
    _check_predicate("while: cond", cond.outputs[0])
    return _avals(carries)


def _while_reference(*args, cond, body, _env=None):
    carries, consts = list(args[:len(body.outputs)]), list(args[len(body.outputs):])
    while bool(evaluate(cond, carries + consts)[0]):
        carries = evaluate(body, carries + consts)
    return carries


def _while_vjp(b, node: Node, cts):
    from ..autodiff.vjp import NotDifferentiableError

    where = f" (at {node.loc})" if node.loc else ""
    raise NotDifferentiableError(
        f"tj.while_loop is forward-only{where}: its trip count depends on the data, so there is no "
        "fixed sequence of steps to run backward. For a gradient, loop with tj.fori_loop and Python-int "
        "bounds, or tj.scan (both save the carry of each step); tj.fori_loop with traced bounds is a "
        "while_loop too. Or compute the loop outside the differentiated function."
    )


# ---- scan ---------------------------------------------------------------------------------------
def _split(values, num_carry: int, num_xs: int):
    values = list(values)
    return values[:num_carry], values[num_carry:num_carry + num_xs], values[num_carry + num_xs:]


def _scan_rule(*args, body: Graph, length: int, reverse: bool, num_carry: int, num_xs: int):
    carries, xs, consts = _split(args, num_carry, num_xs)
    for x in xs:
        if not x.shape or x.shape[0] != length:
            raise ShapeError(f"scan: xs value {_aval_text(x)} does not have the leading axis of length {length}")
    slices = [Aval(tuple(x.shape[1:]), x.dtype) for x in xs]
    expected = [Aval((), INDEX_DTYPE)] + list(carries) + slices + list(consts)
    _check_types("scan: inputs of body", expected, body.inputs)
    _check_types("scan: body's carry outputs vs carries", body.outputs[:num_carry], carries)
    ys = [Aval((length,) + tuple(y.shape), y.dtype) for y in body.outputs[num_carry:]]
    return _avals(carries) + ys


def _scan_reference(*args, body, length, reverse, num_carry, num_xs, _env=None):
    carries, xs, consts = _split(args, num_carry, num_xs)
    ys = [np.empty((length,) + tuple(y.shape), y.dtype) for y in body.outputs[num_carry:]]
    for t in reversed(range(length)) if reverse else range(length):
        outs = evaluate(body, [np.int64(t)] + carries + [x[t] for x in xs] + consts)
        carries = outs[:num_carry]
        for stacked, y in zip(ys, outs[num_carry:]):
            stacked[t] = y
    return list(carries) + ys


def _scan_prune(node: Node, live: list[bool]) -> Node:
    """Drop unread ys (every carry stays: the next step reads it)."""
    nc = node.params["num_carry"]
    keep = [True] * nc + list(live[nc:])
    body = node.params["body"]
    body = Graph(body.inputs, body.nodes, tuple(v for v, k in zip(body.outputs, keep) if k), body.name)
    return replace(node, params=dict(node.params, body=body),
                   outputs=tuple(v for v, k in zip(node.outputs, keep) if k))


def _scan_vjp(b, node: Node, cts):
    """A scan in the other direction over the saved carries: at step t it runs the body's pullback
    from the carry that entered step t, passing the carry's cotangent back to step t-1 and summing
    the consts' cotangents in accumulator carries. Body outputs the backward reads (tanh's result,
    say) are read from their stacks, not recomputed: a y's from the node's ys, a carry's from the
    saved carries shifted by one step."""
    p = node.params
    nc, nx, length = p["num_carry"], p["num_xs"], p["length"]
    carries, xs, consts = _split(node.inputs, nc, nx)
    plan = _ScanPullback(p["body"], nc, nx, len(consts), [ct is not None for ct in cts[nc:]], length)
    ct_carries = [_ct_or_zeros(b, cts[j], node.outputs[j]) for j in plan.float_c]
    accumulators = [zeros(b, consts[j].shape, consts[j].dtype) for j in plan.float_k]
    ct_ys = [cts[nc + k] for k in plan.float_y]
    saved = _saved_carries(b, node)
    reused = [node.outputs[k] if k >= nc else _next_carries(b, saved[k], node.outputs[k], p["reverse"])
              for k in plan.reused]
    outs = b.emit(
        scan_p, *ct_carries, *accumulators, *saved, *xs, *reused, *ct_ys, *consts,
        body=plan.body(), length=length, reverse=not p["reverse"],
        num_carry=len(ct_carries) + len(accumulators), num_xs=nc + nx + len(reused) + len(ct_ys),
    )
    g_c, g_k, g_x = _cut(outs, len(plan.float_c), len(plan.float_k))
    in_cts = [None] * len(node.inputs)
    for positions, grads in ((plan.float_c, g_c), ([nc + j for j in plan.float_x], g_x),
                             ([nc + nx + j for j in plan.float_k], g_k)):
        for i, grad in zip(positions, grads):
            in_cts[i] = grad
    return in_cts


def _next_carries(b, saved: Value, final: Value, reverse: bool) -> Value:
    """The carry each step produced, stacked: the saved carries shifted one step, then the final one."""
    last = b.emit("reshape", final, shape=(1,) + tuple(final.shape))
    length = saved.shape[0]
    if length == 1:
        return last
    rank = len(saved.shape)
    start, stop = (1, length) if not reverse else (0, length - 1)
    rest = b.emit("slice", saved, starts=(start,) + (0,) * (rank - 1), stops=(stop,) + tuple(saved.shape[1:]),
                  steps=(1,) * rank)
    return b.emit("concatenate", *((rest, last) if not reverse else (last, rest)), axis=0)


class _ScanPullback:
    """Which parts of a scan carry cotangents, and the backward body that computes them."""

    def __init__(self, body: Graph, nc: int, nx: int, nk: int, y_has_ct: list[bool], length: int):
        self.fwd, self.nc, self.nx, self.nk = body, nc, nx, nk
        ins = body.inputs[1:]
        self.float_c = [j for j in range(nc) if dtypes.is_float(ins[j].dtype)]
        self.float_x = [j for j in range(nx) if dtypes.is_float(ins[nc + j].dtype)]
        self.float_k = [j for j in range(nk) if dtypes.is_float(ins[nc + nx + j].dtype)]
        self.float_y = [k for k, has_ct in enumerate(y_has_ct)
                        if has_ct and dtypes.is_float(body.outputs[nc + k].dtype)]
        wrt = [1 + j for j in self.float_c] + [1 + nc + j for j in self.float_x] + \
              [1 + nc + nx + j for j in self.float_k]
        self.pullback = Pullback(body, wrt, self.float_c + [nc + k for k in self.float_y])
        self.reused = self.pullback.reused if length > 0 else []

    def body(self) -> Graph:
        """(t, *ct_carries, *accumulators, *carries[t], *x[t], *reused outputs[t], *ct_y[t], *consts)
        -> (*ct_carries of step t-1, *accumulators + ct_consts[t], *ct_x[t])"""
        fwd, nc, nx = self.fwd, self.nc, self.nx
        bb = GraphBuilder(f"{fwd.name}_vjp")
        t = bb.new_input((), INDEX_DTYPE, name=fwd.inputs[0].name)
        new = lambda v, prefix="": bb.new_input(v.shape, v.dtype, name=prefix + v.name)
        ct_c = [new(fwd.inputs[1 + j], "ct_") for j in self.float_c]
        acc = [new(fwd.inputs[1 + nc + nx + j], "ct_") for j in self.float_k]
        primal = [new(v) for v in fwd.inputs[1:1 + nc + nx]]
        forward = {k: new(fwd.outputs[k]) for k in self.reused}
        ct_y = [new(fwd.outputs[nc + k], "ct_") for k in self.float_y]
        consts = [new(v) for v in fwd.inputs[1 + nc + nx:]]
        grads = self.pullback.emit(bb, [t] + primal + consts, forward, ct_c + ct_y)
        g_c, g_x, g_k = _cut(grads, len(self.float_c), len(self.float_x))
        summed = [bb.emit("add", a, g, name=a.name) for a, g in zip(acc, g_k)]
        return bb.build(g_c + summed + g_x)


def _cut(values, *sizes):
    parts, start = [], 0
    for size in sizes:
        parts.append(values[start:start + size])
        start += size
    return parts + [values[start:]]


def _saved_carries(b, node: Node) -> list[Value]:
    """The carry that entered each step, stacked: ys of the node whose body output is the carry input
    itself, or else a second forward scan that stacks them (a scan built by a rule, not the front end)."""
    nc, body = node.params["num_carry"], node.params["body"]
    ys = list(zip(body.outputs[nc:], node.outputs[nc:]))
    found = {}
    for j, carry in enumerate(body.inputs[1:1 + nc]):
        found[j] = next((stacked for y, stacked in ys if y is carry), None)
    if all(v is not None for v in found.values()):
        return [found[j] for j in range(nc)]
    saving = Graph(body.inputs, body.nodes, body.outputs + body.inputs[1:1 + nc], body.name)
    outs = b.emit(scan_p, *node.inputs, **dict(node.params, body=saving))
    return outs[len(node.outputs):]


# ---- helpers ------------------------------------------------------------------------------------
def _ct_or_zeros(b, ct: Value | None, like: Value) -> Value:
    return ct if ct is not None else zeros(b, like.shape, like.dtype)


def inline(b: GraphBuilder, graph: Graph, inputs: list[Value], bound: dict | None = None) -> list[Value]:
    """Emit `graph`'s nodes into `b`, feeding `inputs` to its inputs; return its outputs' new Values.
    `bound` gives Values for some of the graph's values: nodes computing only those are skipped."""
    if len(inputs) != len(graph.inputs):
        raise TracejitError(f"internal error: inlining {graph.name} with {len(inputs)} of {len(graph.inputs)} inputs")
    env: dict[Value, Value] = dict(zip(graph.inputs, inputs))
    env.update(bound or {})
    for node in graph.nodes:
        if all(v in env for v in node.outputs):
            continue
        hint = node.outputs[0].name if len(node.outputs) == 1 and not node.outputs[0].name.isdigit() else None
        outs = b.emit(node.prim, *[env[v] for v in node.inputs], loc=node.loc, name=hint, **node.params)
        env.update(zip(node.outputs, outs if node.prim.multiple_results else [outs]))
    return [env[v] for v in graph.outputs]


cond_p = register(Primitive("cond", Kind.CONTROL, _cond_rule, _cond_reference, vjp=_cond_vjp,
                            multiple_results=True, prune_outputs=_cond_prune))
while_p = register(Primitive("while", Kind.CONTROL, _while_rule, _while_reference, vjp=_while_vjp,
                             multiple_results=True))
scan_p = register(Primitive("scan", Kind.CONTROL, _scan_rule, _scan_reference, vjp=_scan_vjp,
                            multiple_results=True, prune_outputs=_scan_prune))
