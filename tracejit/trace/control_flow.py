"""tj.cond, tj.while_loop, tj.fori_loop and tj.scan, with the signatures and semantics of JAX's lax.

Each traces the user's branch or body functions into closed regions (values they read from the
enclosing code become trailing region inputs, fed by the node) and records one control-flow node
(ops/control.py). Outside any trace they trace themselves and run the graph with the interpreter.

Types follow JAX: both branches of a cond return the same structure, shapes and dtypes, and a loop
body returns the carry's types. A weak Python scalar in a carry (or a branch output) takes the
dtype the other side gives it; any other mismatch is an error naming the part that differs.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import dtypes, pytree
from ..errors import DTypeError, ShapeError, TracejitError, user_location, user_location_long
from ..ir.graph import Graph, Value
from ..ops.control import INDEX_DTYPE, cond_p, scan_p, while_p
from .tracer import Tracer, to_value
from .tracing import ArgSpec, TracedFunction, current_trace, is_tracing, trace


HOIST_MIN_SIZE = 64  # elements: smaller constants stay in their region (folded, or C literals there)


class ControlFlowError(TracejitError, TypeError):
    """Branches or loop bodies whose outputs do not fit together, or malformed arguments."""


# ---- public functions ---------------------------------------------------------------------------
def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands); pred is a scalar (bool or number)."""
    if not is_tracing():
        return _run_eagerly(lambda p, ops: cond(p, true_fun, false_fun, *ops), (pred, operands))
    loc = user_location()
    pred_value = _predicate(pred, "tj.cond", loc)
    examples = _examples(operands)
    true_t = _trace_region(true_fun, examples, "true_branch")
    false_t = _trace_region(false_fun, examples, "false_branch")
    true_t, false_t = _unify_branches(true_fun, true_t, false_fun, false_t, examples)
    (true_g, false_g), consts = _close_regions([true_t, false_t])
    inputs = [to_value(x) for x in pytree.flatten(operands)[0]] + consts
    outs = _emit(cond_p, [pred_value] + inputs, loc, true_branch=true_g, false_branch=false_g)
    weak = [a and b for a, b in zip(true_t.out_weak, false_t.out_weak)]
    return _tracers(true_t.out_treedef, outs, weak)


def while_loop(cond_fun, body_fun, init_val):
    """carry = init_val; while cond_fun(carry): carry = body_fun(carry). Forward-only."""
    if not is_tracing():
        return _run_eagerly(lambda init: while_loop(cond_fun, body_fun, init), (init_val,))
    loc = user_location()
    carries, tree = pytree.flatten(init_val)
    body_t, specs = _trace_loop_body(lambda c: (body_fun(c), None), carries, tree, lambda c: (c,), "while_loop",
                                     "body_fun", _name(body_fun, "body"), _arg_names(body_fun, (init_val,)))
    cond_t = _trace_region(_as_predicate(cond_fun), (_unflatten_examples(tree, specs),), _name(cond_fun, "cond"))
    (cond_g, body_g), consts = _close_regions([cond_t, body_t])
    inputs = _carry_values(carries, specs) + consts
    outs = _emit(while_p, inputs, loc, cond=cond_g, body=body_g)
    return _tracers(tree, outs, [s.weak for s in specs])


def fori_loop(lower, upper, body_fun, init_val):
    """for i in range(lower, upper): carry = body_fun(i, carry). With Python-int bounds it is a
    scan of upper - lower steps (differentiable); with traced bounds a while_loop (forward-only)."""
    if _is_static_int(lower) and _is_static_int(upper):
        lower, upper = int(lower), int(upper)

        def step(t, carry, _):
            return body_fun(t + lower if lower else t, carry), None

        names = ["i" if not lower else "t"] + (_arg_names(body_fun, (None, init_val)) or [])
        final, _ = _scan(step, init_val, None, max(upper - lower, 0), False, _name(body_fun, "body"), names,
                         what=("fori_loop", "body_fun"))
        return final

    def loop_cond(state):
        return state[0] < upper

    def loop_body(state):
        i, carry = state
        return i + 1, body_fun(i, carry)

    return while_loop(loop_cond, loop_body, (lower, init_val))[1]


def scan(f, init, xs=None, length=None, reverse=False):
    """carry = init; for each x in xs (leading axis): carry, y = f(carry, x). Returns
    (final carry, ys stacked along a new leading axis). xs may be None with `length=`."""
    steps = _scan_length(pytree.flatten(xs)[0], length)
    names = ["t"] + (_arg_names(f, (init, xs)) or [])
    return _scan(lambda t, carry, x: f(carry, x), init, xs, steps, bool(reverse), _name(f, "body"), names,
                 what=("scan", "f"))


# ---- scan, shared by scan and fori_loop --------------------------------------------------------
def _scan(step, init, xs, length: int, reverse: bool, name: str, arg_names: list[str], what):
    """The scan node for step(t, carry, x) -> (carry, y), t the step index (a weak int).
    `what`: (the user's function, the name of its argument) for error messages."""
    if not is_tracing():
        return _run_eagerly(lambda i, x: _scan(step, i, x, length, reverse, name, arg_names, what), (init, xs))
    loc = user_location()
    carries, carry_tree = pytree.flatten(init)
    x_leaves, x_tree = pytree.flatten(xs)
    x_examples = pytree.unflatten(x_tree, [_slice_example(x) for x in x_leaves])
    ys_tree = []

    def body(t, carry, x):
        new_carry, y = _scan_pair(step(t, carry, x), what)
        y_leaves, y_tree = pytree.flatten(y)
        ys_tree[:] = [y_tree]
        # the carry entering each step, stacked as extra ys: the residuals a gradient reads
        return new_carry, y_leaves + pytree.flatten(carry)[0]

    body_t, specs = _trace_loop_body(body, carries, carry_tree, lambda c: (0, c, x_examples), *what, name,
                                     arg_names)
    (body_g,), consts = _close_regions([body_t])
    inputs = _carry_values(carries, specs) + [to_value(x) for x in x_leaves] + consts
    outs = _emit(scan_p, inputs, loc, body=body_g, length=length, reverse=reverse,
                 num_carry=len(carries), num_xs=len(x_leaves))
    n_c = len(carries)
    n_y = len(body_g.outputs) - 2 * n_c
    final = _tracers(carry_tree, outs[:n_c], [s.weak for s in specs])
    ys = _tracers(ys_tree[0], outs[n_c:n_c + n_y], body_t.out_weak[n_c:n_c + n_y])
    return final, ys


def _scan_pair(result, what):
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise ControlFlowError(
            f"tj.{what[0]}: {what[1]} must return a pair (carry, y), got {type(result).__name__}. "
            f"Return (new_carry, None) when there is nothing to stack.\n  at {user_location_long()}"
        )
    return result


def _scan_length(x_leaves, length) -> int:
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in x_leaves}
    if None in lengths:
        raise ShapeError(f"tj.scan: every leaf of xs needs a leading axis to scan over (at {user_location()})")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) > 1:
        raise ShapeError(f"tj.scan: xs leaves and length= disagree on the number of steps: {sorted(lengths)} "
                         f"(at {user_location()})")
    if not lengths:
        raise ShapeError(f"tj.scan: with xs=None, pass length= (the number of steps) (at {user_location()})")
    return lengths.pop()


def _slice_example(x):
    """A stand-in for x[t] while tracing the body (shape and dtype only)."""
    spec = ArgSpec.of(x)
    return _example(spec.shape[1:], spec.dtype, spec.weak)


# ---- tracing regions ----------------------------------------------------------------------------
def _example(shape, dtype, weak=False) -> Tracer:
    """An example leaf with a given type for trace() (only its shape, dtype and weakness are read)."""
    return Tracer(None, Value("example", tuple(shape), np.dtype(dtype)), weak)


def _examples(tree):
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [_example(*_spec_fields(x)) for x in leaves])


def _spec_fields(x):
    spec = ArgSpec.of(x)
    return spec.shape, spec.dtype, spec.weak


def _trace_region(fun, args: tuple, name: str, arg_names=None) -> TracedFunction:
    names = arg_names or _arg_names(fun, args)
    leaves = pytree.flatten(tuple(args))[0]
    return trace(fun, tuple(args), name=name, arg_names=names if names and len(names) == len(leaves) else None)


def _arg_names(fun, args) -> list[str] | None:
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


def _name(fun, default: str) -> str:
    name = getattr(fun, "__name__", default)
    return default if not name.isidentifier() else name


def _close_regions(traced: list[TracedFunction]) -> tuple[list[Graph], list[Value]]:
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


def _type_text(shape, dtype) -> str:
    return f"{dtypes.short_name(dtype)}[{','.join(map(str, shape))}]"


def _unify_branches(true_fun, true_t, false_fun, false_t, examples):
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
                f"tj.cond: true_fun returns {_type_text(ts, td)} at output {paths[i] or '[0]'}, false_fun returns "
                f"{_type_text(fs, fd)}. Both branches must return the same shapes and dtypes; cast or "
                f"broadcast one of them (e.g. .astype(np.{td.name})).\n  at {user_location_long()}"
            )
    if casts["true"]:
        true_t = _trace_region(_with_casts(true_fun, casts["true"]), examples, true_t.graph.name)
    if casts["false"]:
        false_t = _trace_region(_with_casts(false_fun, casts["false"]), examples, false_t.graph.name)
    return true_t, false_t


def _with_casts(fun, casts: dict[int, np.dtype]):
    def cast_outputs(*args):
        leaves, tree = pytree.flatten(fun(*args))
        return pytree.unflatten(tree, [_cast(x, casts[i]) if i in casts else x for i, x in enumerate(leaves)])

    cast_outputs.__signature__ = _signature(fun)
    return cast_outputs


def _signature(fun):
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None


def _cast(x, dtype):
    if isinstance(x, Tracer):
        return x.astype(dtype)
    return np.asarray(x, dtype=dtype)


def _trace_loop_body(body, carries, tree, make_args, api: str, fun_name: str, name: str, arg_names):
    """Trace body(*make_args(carry)) -> (new_carry, extra) until new_carry has the carry's types: a
    weak init leaf takes the body's dtype, a weak body output the carry's; anything else is an error.
    Returns the traced body and the final carry specs (ArgSpec per carry leaf)."""
    specs = [ArgSpec.of(x) for x in carries]
    casts: dict[int, np.dtype] = {}
    for _ in range(4):
        traced = _trace_region(_with_carry_casts(body, casts), make_args(_unflatten_examples(tree, specs)),
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
        f"{_type_text(spec.shape, spec.dtype)}. A loop carry keeps its type: make {fun_name} return "
        f"{_type_text(spec.shape, spec.dtype)} there (e.g. .astype(np.{spec.dtype.name})) or change the "
        f"initial value.\n  at {user_location_long()}"
    )


def _unflatten_examples(tree, specs):
    return pytree.unflatten(tree, [_example(s.shape, s.dtype, s.weak) for s in specs])


def _carry_values(carries, specs) -> list[Value]:
    """The node inputs for the initial carries, cast where a weak init took the body's dtype."""
    values = []
    for x, spec in zip(carries, specs):
        value = to_value(x)
        if value.dtype != spec.dtype:
            value = to_value(_cast(Tracer(current_trace(), value, True), spec.dtype))
        values.append(value)
    return values


# ---- predicates, emission, eager runs -----------------------------------------------------------
def _predicate(pred, what: str, loc) -> Value:
    value = to_value(pred)
    if value.shape != ():
        raise ShapeError(
            f"{what}: the predicate must be a scalar, got {value.type_str}. Reduce it (np.all, np.any) or, "
            f"for an elementwise choice, use np.where.\n  at {user_location_long()}"
        )
    if value.dtype != dtypes.bool_:
        value = Tracer(current_trace(), value).astype(dtypes.bool_).value
    return value


def _as_predicate(cond_fun):
    def predicate(carry):
        return _predicate_tracer(cond_fun(carry))

    predicate.__signature__ = _signature(cond_fun)
    return predicate


def _predicate_tracer(result):
    value = _predicate(result, "tj.while_loop: cond_fun", None)
    return Tracer(current_trace(), value)


def _emit(prim, inputs, loc, **params) -> list[Value]:
    try:
        return current_trace().builder.emit(prim, *inputs, loc=loc, **params)
    except (ShapeError, DTypeError) as exc:
        raise ControlFlowError(f"{exc}\n  at {user_location_long()}") from None


def _tracers(tree, values, weak):
    tr = current_trace()
    return pytree.unflatten(tree, [Tracer(tr, v, w) for v, w in zip(values, weak)])


def _is_static_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _run_eagerly(fun, args):
    """Outside any trace: trace `fun(*args)`, optimize and run it with the interpreter."""
    from ..ir.interpret import evaluate
    from ..passes.pipeline import optimize  # a later stage; only the eager path needs it

    traced = trace(fun, args, name=_name(fun, "control_flow"))
    leaves = [np.asarray(x) for x in pytree.flatten(args)[0]]
    outs = evaluate(optimize(traced.graph), leaves)
    return pytree.unflatten(traced.out_treedef, [np.array(o) for o in outs])
