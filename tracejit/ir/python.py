"""to_python(graph): a graph as readable, runnable numpy source, one statement per node.

What a source-to-source AD tool hands its users: `tj.make_ir(tj.grad(f))(x).python()` is the
derivative written out in numpy. Each statement uses the numpy call whose result is bit for bit
the one the primitive's reference (the interpreter) gives, so the source is also a check of the IR.
Large constants become module-level names decoded from base64 (runnable, if not readable).
"""
from __future__ import annotations

import base64
import keyword

import numpy as np

from ..errors import TracejitError
from .graph import Graph, Node, Value

INLINE_CONSTANT = 16  # constants up to this many elements are written out as literals

UNARY_CALLS = {
    "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sinh", "cosh", "sin", "cos", "tan", "arctan",
    "floor", "ceil", "trunc", "rint", "reciprocal", "square", "abs", "sign", "maximum", "minimum",
    "logical_and", "logical_or", "logical_not",
}
OPERATORS = {
    "add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**", "matmul": "@",
    "less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=", "equal": "==", "not_equal": "!=",
}
REDUCTIONS = {"sum", "prod", "max", "min", "argmax", "argmin"}

SCATTER_ADD_HELPER = '''

def scatter_add(updates, indices, shape):
    """zeros(shape) with updates added at the (possibly repeated) positions `indices`."""
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, indices, updates)
    return out
'''


def to_python(graph: Graph) -> str:
    names = _Names()
    constants: list[str] = []
    function = _function(graph, names.fresh(graph.name), names, constants, tuple_return=False)
    blocks = ["import base64\nimport numpy as np" if constants else "import numpy as np"]
    if _uses(graph, "scatter_add"):
        blocks.append(SCATTER_ADD_HELPER.strip("\n"))
    if constants:
        blocks.append("\n".join(constants))
    blocks.append("\n".join(function))
    return "\n\n\n".join(blocks) + "\n"


def _function(graph: Graph, name: str, names: "_Names", constants: list[str], tuple_return: bool) -> list[str]:
    """`def name(inputs): ...` with one statement per node (regions become nested functions)."""
    params = ", ".join(names.of(v) for v in graph.inputs)
    body = [line for node in graph.nodes for line in _statement(node, names, constants)]
    outs = [names.of(v) for v in graph.outputs]
    if tuple_return or len(outs) != 1:
        body.append(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    else:
        body.append(f"return {outs[0]}")
    return [f"def {name}({params}):"] + ["    " + line for line in body]


def _uses(graph: Graph, prim_name: str) -> bool:
    return any(node.prim.name == prim_name or any(_uses(g, prim_name) for g in node.subgraphs())
               for node in graph.nodes)


class _Names:
    """IR value names -> Python identifiers: %13 -> v13; keywords and `np` get a trailing _."""

    def __init__(self):
        self._names: dict[Value, str] = {}
        self._taken: set[str] = {"np", "base64", "scatter_add", "range", "reversed"}

    def identifier(self, text: str) -> str:
        ident = "".join(c if c.isalnum() or c == "_" else "_" for c in text) or "v"
        if ident[0].isdigit():
            ident = "v" + ident
        if keyword.iskeyword(ident) or ident in ("np", "base64", "scatter_add"):
            ident += "_"
        return ident

    def of(self, value: Value) -> str:
        if value not in self._names:
            self._names[value] = self.fresh(value.name)
        return self._names[value]

    def fresh(self, text: str) -> str:
        base = name = self.identifier(text)
        n = 1
        while name in self._taken:
            name, n = f"{base}_{n}", n + 1
        self._taken.add(name)
        return name


def _statement(node: Node, names: _Names, constants: list[str]) -> list[str]:
    if node.prim.name in CONTROL:
        return CONTROL[node.prim.name](node, names, constants)
    args = [names.of(v) for v in node.inputs]
    targets = ", ".join(names.of(v) for v in node.outputs)
    text = f"{targets} = {_expression(node, args, constants)}"
    return [f"{text.ljust(60)}  # {node.loc}" if node.loc else text]


# ---- control flow: regions become nested functions ----------------------------------------------
def _region(node: Node, key: str, names: _Names, constants: list[str]) -> tuple[str, list[str]]:
    name = names.fresh(f"{node.prim.name}_{key}")
    return name, _function(node.params[key], name, names, constants, tuple_return=True)


def _targets(node: Node, names: _Names) -> str:
    outs = [names.of(v) for v in node.outputs]
    return ", ".join(outs) + ("," if len(outs) == 1 else "")


def _cond(node: Node, names: _Names, constants: list[str]) -> list[str]:
    pred, *operands = [names.of(v) for v in node.inputs]
    true_name, true_lines = _region(node, "true_branch", names, constants)
    false_name, false_lines = _region(node, "false_branch", names, constants)
    call = f"({true_name} if {pred} else {false_name})({', '.join(operands)})"
    return true_lines + false_lines + [f"{_targets(node, names)} = {call}"]


def _while(node: Node, names: _Names, constants: list[str]) -> list[str]:
    args = [names.of(v) for v in node.inputs]
    n = len(node.outputs)
    carries, consts = args[:n], args[n:]
    cond_name, cond_lines = _region(node, "cond", names, constants)
    body_name, body_lines = _region(node, "body", names, constants)
    state = names.fresh("carry")
    extra = "".join(f", {c}" for c in consts)
    return cond_lines + body_lines + [
        f"{state} = ({', '.join(carries)}{',' if n == 1 else ''})",
        f"while {cond_name}(*{state}{extra})[0]:",
        f"    {state} = {body_name}(*{state}{extra})",
        f"{_targets(node, names)} = {state}",
    ]


def _scan(node: Node, names: _Names, constants: list[str]) -> list[str]:
    p = node.params
    nc, nx, length = p["num_carry"], p["num_xs"], p["length"]
    args = [names.of(v) for v in node.inputs]
    carries, xs, consts = args[:nc], args[nc:nc + nx], args[nc + nx:]
    body_name, body_lines = _region(node, "body", names, constants)
    state, step, t = names.fresh("carry"), names.fresh("step"), names.fresh("t")
    ys = [names.of(v) for v in node.outputs[nc:]]
    loop = f"reversed(range({length}))" if p["reverse"] else f"range({length})"
    call_args = ", ".join([f"np.int64({t})", f"*{state}"] + [f"{x}[{t}]" for x in xs] + consts)
    lines = body_lines + [f"{state} = ({', '.join(carries)}{',' if nc == 1 else ''})"]
    lines += [f"{y} = np.empty({tuple(v.shape)}, {_dtype(v.dtype)})" for y, v in zip(ys, node.outputs[nc:])]
    lines += [f"for {t} in {loop}:", f"    {step} = {body_name}({call_args})", f"    {state} = {step}[:{nc}]"]
    lines += [f"    {y}[{t}] = {step}[{nc + k}]" for k, y in enumerate(ys)]
    carry_names = [names.of(v) for v in node.outputs[:nc]]
    if carry_names:
        lines.append(f"{', '.join(carry_names)}{',' if nc == 1 else ''} = {state}")
    return lines


CONTROL = {"cond": _cond, "while": _while, "scan": _scan}


def _expression(node: Node, a: list[str], constants: list[str]) -> str:
    name, p = node.prim.name, node.params
    if name in OPERATORS:
        return f"{a[0]} {OPERATORS[name]} {a[1]}"
    if name == "negative":
        return f"-{a[0]}"
    if name in UNARY_CALLS:
        return f"np.{name}({', '.join(a)})"
    if name in REDUCTIONS:
        return _reduction(name, a[0], p["axes"], node.inputs[0].dtype)
    if name in SHAPE_AND_INDEX:
        return SHAPE_AND_INDEX[name](a, p, node)
    if name == "constant":
        return _constant(p["value"], constants)
    if name == "iota":
        return f"np.arange({p['length']}, dtype={_dtype(p['dtype'])})"
    raise TracejitError(f"to_python: no numpy spelling for primitive `{name}` yet")


def _reduction(name: str, x: str, axes: tuple, dtype) -> str:
    axis = axes[0] if len(axes) == 1 else tuple(axes)
    exact_dtype = f", dtype={_dtype(dtype)}" if name in ("sum", "prod") and np.dtype(dtype).kind != "f" else ""
    return f"np.{name}({x}, axis={axis}{exact_dtype})"


def _slice_text(p) -> str:
    parts = []
    for start, stop, step in zip(p["starts"], p["stops"], p["steps"]):
        stop_text = "" if stop < 0 else str(stop)  # stop -1 with a negative step: run to the start
        text = f"{start or ''}:{stop_text}" + (f":{step}" if step != 1 else "")
        parts.append(text)
    return ", ".join(parts)


def _transpose(a, p, node) -> str:
    if len(p["perm"]) == 2:
        return f"{a[0]}.T"
    return f"{a[0]}.transpose({', '.join(map(str, p['perm']))})"


SHAPE_AND_INDEX = {
    "where": lambda a, p, node: f"np.where({a[0]}, {a[1]}, {a[2]})",
    "astype": lambda a, p, node: f"{a[0]}.astype({_dtype(p['dtype'])})",
    "reshape": lambda a, p, node: f"np.reshape({a[0]}, {tuple(p['shape'])})",
    "transpose": _transpose,
    "broadcast_to": lambda a, p, node: f"np.broadcast_to({a[0]}, {tuple(p['shape'])})",
    "slice": lambda a, p, node: f"{a[0]}[{_slice_text(p)}]",
    "concatenate": lambda a, p, node: f"np.concatenate([{', '.join(a)}], axis={p['axis']})",
    "gather": lambda a, p, node: f"{a[0]}[{', '.join(a[1:])}]",
    "scatter_add": lambda a, p, node: f"scatter_add({a[0]}, ({', '.join(a[1:])},), {tuple(p['shape'])})",
}


def _dtype(dtype) -> str:
    return f"np.{np.dtype(dtype).name}"


def _constant(value: np.ndarray, constants: list[str]) -> str:
    if value.ndim == 0:
        return f"{_dtype(value.dtype)}({_literal(value[()])})"
    if value.size <= INLINE_CONSTANT:
        items = _nested(value.tolist())
        return f"np.array({items}, dtype={_dtype(value.dtype)})"
    name = f"CONSTANT_{len(constants)}"
    data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
    constants.append(
        f'{name} = np.frombuffer(base64.b64decode("{data}"), dtype={_dtype(value.dtype)}).reshape({value.shape})'
    )
    return f"{name}.copy()"


def _nested(items) -> str:
    if isinstance(items, list):
        return "[" + ", ".join(_nested(x) for x in items) + "]"
    return _literal(items)


def _literal(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "True" if x else "False"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if np.isnan(x):
            return "np.nan"
        if np.isinf(x):
            return "np.inf" if x > 0 else "-np.inf"
        return repr(x)
    return str(int(x))
