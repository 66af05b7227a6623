"""Tracing the user's branch and body functions into closed regions for the control-flow nodes.

A region is traced with example inputs of the right types; what it reads from the enclosing code
(captured tracers, and numpy arrays it closes over) becomes trailing inputs that the node feeds, so
every region is a closed Graph. The types of what regions return must agree (both branches of a
cond; a loop body and its carry), with JAX's rule for weak Python scalars.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import dtypes, pytree
from ..errors import TracejitError, user_location, user_location_long
from ..ir.graph import Graph, Value
from .tracer import Tracer, to_value
from .tracing import ArgSpec, TracedFunction, trace

HOIST_MIN_SIZE = 64  # elements: smaller constants stay in their region (folded, or C literals there)



class ControlFlowError(TracejitError, TypeError):
    """Branches or loop bodies whose outputs do not fit together, or malformed arguments."""


# ---- tracing regions ----------------------------------------------------------------------------
def example(shape, dtype, weak=False) -> Tracer:
    """An example leaf with a given type for trace() (only its shape, dtype and weakness are read)."""
    return Tracer(None, Value("example", tuple(shape), np.dtype(dtype)), weak)


def examples_like(tree):
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [example(*_spec_fields(x)) for x in leaves])


def _spec_fields(x):
    spec = ArgSpec.of(x)
    return spec.shape, spec.dtype, spec.weak


def trace_region(fun, args: tuple, name: str, arg_names=None) -> TracedFunction:
    names = arg_names or parameter_names(fun, args)
    leaves = pytree.flatten(tuple(args))[0]
    return trace(fun, tuple(args), name=name, arg_names=names if names and len(names) == len(leaves) else None)


def parameter_names(fun, args) -> list[str] | None:
    """Region input names from the function's parameter names (carry, x, ...)."""
    try:
        params = [p.name for p in inspect.signature(fun).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return None
    names = []
    for n, arg in enumerate(args):
        base = params[n] if n < len(params) else f"arg{n}"
        leaves, treedef = pytree.flatten(arg)
        paths = pytree.leaf_paths(treedef)
        for path in paths:
            parts = [p.strip("'\"") for p in path.replace("][", "|").strip("[]").split("|") if p]
            names.append("_".join([base] + parts))
    return names


def function_name(fun, default: str) -> str:
    name = getattr(fun, "__name__", default)
    return default if not name.isidentifier() else name


def close_regions(traced: list[TracedFunction]) -> tuple[list[Graph], list[Value]]:
    """Give every region the same trailing inputs: the union of what each captured from the
    enclosing trace. Returns the regions and the enclosing values feeding those inputs."""
    union: dict[Value, Tracer] = {}
    for t in traced:
        for tracer in t.captured:
            union.setdefault(tracer.value, tracer)
    graphs = [_with_captures(t, list(union)) for t in traced]
    graphs, arrays = _hoist_constants(graphs)
    return graphs, [to_value(tracer) for tracer in union.values()] + [to_value(a) for a in arrays]


def _hoist_constants(graphs: list[Graph]) -> tuple[list[Graph], list[np.ndarray]]:
    """Move the regions' array constants (a numpy array a body closes over) to the enclosing graph,
    as trailing inputs: they are made once, not inside the loop, and stay out of the region's code."""
    hoisted = [(k, node) for k, g in enumerate(graphs) for node in g.nodes
               if node.prim.name == "constant" and node.out.size > HOIST_MIN_SIZE]
    if not hoisted:
        return graphs, []
    result = []
    for k, g in enumerate(graphs):
        mine = {node for owner, node in hoisted if owner == k}
        taken = {v.name for v in g.inputs} | {v.name for n in g.nodes for v in n.outputs}
        extra = [node.out if owner == k else Value(_fresh(node.out.name, taken), node.out.shape, node.out.dtype)
                 for owner, node in hoisted]
        result.append(Graph(g.inputs + tuple(extra), tuple(n for n in g.nodes if n not in mine), g.outputs, g.name))
    return result, [node.params["value"] for _, node in hoisted]


def _with_captures(t: TracedFunction, union: list[Value]) -> Graph:
    graph = t.graph
    n_args = len(graph.inputs) - len(t.captured)
    own = {tracer.value: v for tracer, v in zip(t.captured, graph.inputs[n_args:])}
    if list(own) == union:
        return graph
    taken = {v.name for v in graph.inputs} | {v.name for n in graph.nodes for v in n.outputs}
    inputs = list(graph.inputs[:n_args])
    for outer in union:
        inputs.append(own.get(outer) or Value(_fresh(outer.name, taken), outer.shape, outer.dtype))
    return Graph(tuple(inputs), graph.nodes, graph.outputs, graph.name)


def _fresh(name: str, taken: set) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


# ---- agreeing types -----------------------------------------------------------------------------
def _out_avals(t: TracedFunction) -> list[tuple]:
    return [(tuple(v.shape), v.dtype) for v in t.graph.outputs]


def type_text(shape, dtype) -> str:
    return f"{dtypes.short_name(dtype)}[{','.join(map(str, shape))}]"


def unify_branches(true_fun, true_t, false_fun, false_t, examples):
    """Both branches return one structure and types; a weak output takes the other side's dtype."""
    if true_t.out_treedef != false_t.out_treedef:
        raise ControlFlowError(
            f"tj.cond: true_fun and false_fun must return the same structure: true_fun returns "
            f"{true_t.out_treedef!r}, false_fun returns {false_t.out_treedef!r}.\n  at {user_location_long()}"
        )
    casts = {"true": {}, "false": {}}
    paths = pytree.leaf_paths(true_t.out_treedef)
    for i, ((ts, td), (fs, fd)) in enumerate(zip(_out_avals(true_t), _out_avals(false_t))):
        if ts == fs and td == fd:
            continue
        if ts == fs and false_t.out_weak[i] and not true_t.out_weak[i]:
            casts["false"][i] = td
        elif ts == fs and true_t.out_weak[i] and not false_t.out_weak[i]:
            casts["true"][i] = fd
        else:
            raise ControlFlowError(
                f"tj.cond: true_fun returns {type_text(ts, td)} at output {paths[i] or '[0]'}, false_fun returns "
                f"{type_text(fs, fd)}. Both branches must return the same shapes and dtypes; cast or "
                f"broadcast one of them (e.g. .astype(np.{td.name})).\n  at {user_location_long()}"
            )
    if casts["true"]:
        true_t = trace_region(_with_casts(true_fun, casts["true"]), examples, true_t.graph.name)
    if casts["false"]:
        false_t = trace_region(_with_casts(false_fun, casts["false"]), examples, false_t.graph.name)
    return true_t, false_t


def _with_casts(fun, casts: dict[int, np.dtype]):
    def cast_outputs(*args):
        leaves, tree = pytree.flatten(fun(*args))
        return pytree.unflatten(tree, [cast(x, casts[i]) if i in casts else x for i, x in enumerate(leaves)])

    cast_outputs.__signature__ = signature_of(fun)
    return cast_outputs


def signature_of(fun):
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None


def cast(x, dtype):
    if isinstance(x, Tracer):
        return x.astype(dtype)
    return np.asarray(x, dtype=dtype)


def trace_loop_body(body, carries, tree, make_args, api: str, fun_name: str, name: str, arg_names):
    """Trace body(*make_args(carry)) -> (new_carry, extra) until new_carry has the carry's types: a
    weak init leaf takes the body's dtype, a weak body output the carry's; anything else is an error.
    Returns the traced body and the final carry specs (ArgSpec per carry leaf)."""
    specs = [ArgSpec.of(x) for x in carries]
    casts: dict[int, np.dtype] = {}
    for _ in range(4):
        traced = trace_region(_with_carry_casts(body, casts), make_args(unflatten_examples(tree, specs)),
                               name, arg_names)
        _check_carry_structure(traced, tree, api, fun_name)
        changed = False
        for i, (spec, out) in enumerate(zip(specs, traced.graph.outputs)):
            out_weak, same_shape = traced.out_weak[i], tuple(out.shape) == spec.shape
            if same_shape and out.dtype == spec.dtype:
                if spec.weak and not out_weak:  # a strong result: the carry is strong too
                    specs[i], changed = ArgSpec(spec.shape, spec.dtype, False), True
            elif same_shape and spec.weak and not out_weak:  # the init was a Python scalar
                specs[i], changed = ArgSpec(spec.shape, out.dtype, False), True
            elif same_shape and out_weak and i not in casts:
                casts[i], changed = spec.dtype, True
            else:
                _carry_mismatch(api, fun_name, tree, i, spec, out)
        if not changed:
            return traced, specs
    raise ControlFlowError(f"tj.{api}: the carry types of {fun_name} do not settle (at {user_location()})")


def _with_carry_casts(body, casts):
    if not casts:
        return body

    def cast_body(*args):
        carry, extra = body(*args)
        return _with_casts(lambda: carry, casts)(), extra

    return cast_body


def _check_carry_structure(traced, tree, api, fun_name):
    out_tree = traced.out_treedef.children[0]  # the traced body returns (new_carry, extra)
    if out_tree != tree:
        raise ControlFlowError(
            f"tj.{api}: {fun_name} must return a carry with the structure of the initial value: got "
            f"{out_tree!r}, expected {tree!r}.\n  at {user_location_long()}"
        )


def _carry_mismatch(api, fun_name, tree, i, spec, out):
    path = pytree.leaf_paths(tree)[i] or "[0]"
    raise ControlFlowError(
        f"tj.{api}: {fun_name} returns {out.type_str} at carry {path}, but the carry (the initial value) is "
        f"{type_text(spec.shape, spec.dtype)}. A loop carry keeps its type: make {fun_name} return "
        f"{type_text(spec.shape, spec.dtype)} there (e.g. .astype(np.{spec.dtype.name})) or change the "
        f"initial value.\n  at {user_location_long()}"
    )


def unflatten_examples(tree, specs):
    return pytree.unflatten(tree, [example(s.shape, s.dtype, s.weak) for s in specs])


