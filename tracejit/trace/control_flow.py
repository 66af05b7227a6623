"""tj.cond, tj.while_loop, tj.fori_loop and tj.scan, with the signatures and semantics of JAX's lax.

Each traces the user's branch or body functions into closed regions (values they read from the
enclosing code become trailing region inputs, fed by the node) and records one control-flow node
(ops/control.py). Outside any trace they trace themselves and run the graph with the interpreter.

Types follow JAX: both branches of a cond return the same structure, shapes and dtypes, and a loop
body returns the carry's types. A weak Python scalar in a carry (or a branch output) takes the
dtype the other side gives it; any other mismatch is an error naming the part that differs.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes, pytree
from ..errors import DTypeError, ShapeError, user_location, user_location_long
from ..ir.graph import Value
from ..ops.control import cond_p, scan_p, while_p
from .regions import (
    ControlFlowError, cast, close_regions, example, examples_like, function_name, signature_of,
    parameter_names, trace_loop_body, trace_region, unflatten_examples, unify_branches,
)
from .tracer import Tracer, to_value
from .tracing import ArgSpec, current_trace, is_tracing, trace


# ---- public functions ---------------------------------------------------------------------------
def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands); pred is a scalar (bool or number)."""
    if not is_tracing():
        return _run_eagerly(lambda p, ops: cond(p, true_fun, false_fun, *ops), (pred, operands))
    loc = user_location()
    pred_value = _predicate(pred, "tj.cond")
    examples = examples_like(operands)
    true_t = trace_region(true_fun, examples, "true_branch")
    false_t = trace_region(false_fun, examples, "false_branch")
    true_t, false_t = unify_branches(true_fun, true_t, false_fun, false_t, examples)
    (true_g, false_g), consts = close_regions([true_t, false_t])
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
    body_t, specs = trace_loop_body(lambda c: (body_fun(c), None), carries, tree, lambda c: (c,), "while_loop",
                                     "body_fun", function_name(body_fun, "body"), parameter_names(body_fun, (init_val,)))
    cond_t = trace_region(_as_predicate(cond_fun), (unflatten_examples(tree, specs),), function_name(cond_fun, "cond"))
    (cond_g, body_g), consts = close_regions([cond_t, body_t])
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

        names = ["i" if not lower else "t"] + (parameter_names(body_fun, (None, init_val)) or [])
        final, _ = _scan(step, init_val, None, max(upper - lower, 0), False, function_name(body_fun, "body"), names,
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
    names = ["t"] + (parameter_names(f, (init, xs)) or [])
    return _scan(lambda t, carry, x: f(carry, x), init, xs, steps, bool(reverse), function_name(f, "body"), names,
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

    body_t, specs = trace_loop_body(body, carries, carry_tree, lambda c: (0, c, x_examples), *what, name,
                                     arg_names)
    (body_g,), consts = close_regions([body_t])
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
    return example(spec.shape[1:], spec.dtype, spec.weak)


def _carry_values(carries, specs) -> list[Value]:
    """The node inputs for the initial carries, cast where a weak init took the body's dtype."""
    values = []
    for x, spec in zip(carries, specs):
        value = to_value(x)
        if value.dtype != spec.dtype:
            value = to_value(cast(Tracer(current_trace(), value, True), spec.dtype))
        values.append(value)
    return values


# ---- predicates, emission, eager runs -----------------------------------------------------------
def _predicate(pred, what: str) -> Value:
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

    predicate.__signature__ = signature_of(cond_fun)
    return predicate


def _predicate_tracer(result):
    value = _predicate(result, "tj.while_loop: cond_fun")
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

    traced = trace(fun, args, name=function_name(fun, "control_flow"))
    leaves = [np.asarray(x) for x in pytree.flatten(args)[0]]
    outs = evaluate(optimize(traced.graph), leaves)
    return pytree.unflatten(traced.out_treedef, [np.array(o) for o in outs])
