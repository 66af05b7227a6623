"""to_python(graph): a graph as readable, runnable numpy source, one statement per node.

What a source-to-source AD tool hands its users: `tj.make_ir(tj.grad(f))(x).python()` is the
derivative written out in numpy. Each statement uses the numpy call whose result is bit for bit
the one the primitive's reference (the interpreter) gives, so the source is also a check of the IR.

The spellings live with the ops: each Primitive's `py_expr` (ops/<family>.py, shared pieces in
ops/py_spelling.py) writes its node as one expression, and may add module-level text (large
constants decoded from base64, the scatter_add helper). This module only lays out statements,
names and the module; control flow (cond/while/scan) is here because its regions become nested
functions rather than one expression.
"""
from __future__ import annotations

import keyword

from ..errors import TracejitError
from ..ops.py_spelling import PyModule, dtype_text
from .graph import Graph, Node, Value


def to_python(graph: Graph) -> str:
    names = _Names()
    module = PyModule()
    function = _function(graph, names.fresh(graph.name), names, module, tuple_return=False)
    blocks = ["import base64\nimport numpy as np" if module.constants else "import numpy as np"]
    blocks += module.helpers
    if module.constants:
        blocks.append("\n".join(module.constants))
    blocks.append("\n".join(function))
    return "\n\n\n".join(blocks) + "\n"


def _function(graph: Graph, name: str, names: "_Names", module: PyModule, tuple_return: bool) -> list[str]:
    """`def name(inputs): ...` with one statement per node (regions become nested functions)."""
    params = ", ".join(names.of(v) for v in graph.inputs)
    body = [line for node in graph.nodes for line in _statement(node, names, module)]
    outs = [names.of(v) for v in graph.outputs]
    if tuple_return or len(outs) != 1:
        body.append(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    else:
        body.append(f"return {outs[0]}")
    return [f"def {name}({params}):"] + ["    " + line for line in body]


# names the module itself defines; scatter_add is the helper ops/index.py adds (SCATTER_ADD_HELPER)
MODULE_NAMES = ("np", "base64", "scatter_add")


class _Names:
    """IR value names -> Python identifiers: %13 -> v13; keywords and `np` get a trailing _."""

    def __init__(self):
        self._names: dict[Value, str] = {}
        self._taken: set[str] = {*MODULE_NAMES, "range", "reversed"}

    def identifier(self, text: str) -> str:
        ident = "".join(c if c.isalnum() or c == "_" else "_" for c in text) or "v"
        if ident[0].isdigit():
            ident = "v" + ident
        if keyword.iskeyword(ident) or ident in MODULE_NAMES:
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


def _statement(node: Node, names: _Names, module: PyModule) -> list[str]:
    if node.prim.name in CONTROL:
        return CONTROL[node.prim.name](node, names, module)
    if node.prim.py_expr is None:
        raise TracejitError(f"to_python: no numpy spelling for primitive `{node.prim.name}` yet")
    args = [names.of(v) for v in node.inputs]
    targets = ", ".join(names.of(v) for v in node.outputs)
    text = f"{targets} = {node.prim.py_expr(args, node.params, node, module)}"
    return [f"{text.ljust(60)}  # {node.loc}" if node.loc else text]


# ---- control flow: regions become nested functions ----------------------------------------------
def _region(node: Node, key: str, names: _Names, module: PyModule) -> tuple[str, list[str]]:
    name = names.fresh(f"{node.prim.name}_{key}")
    return name, _function(node.params[key], name, names, module, tuple_return=True)


def _targets(node: Node, names: _Names) -> str:
    outs = [names.of(v) for v in node.outputs]
    return ", ".join(outs) + ("," if len(outs) == 1 else "")


def _cond(node: Node, names: _Names, module: PyModule) -> list[str]:
    pred, *operands = [names.of(v) for v in node.inputs]
    true_name, true_lines = _region(node, "true_branch", names, module)
    false_name, false_lines = _region(node, "false_branch", names, module)
    call = f"({true_name} if {pred} else {false_name})({', '.join(operands)})"
    return true_lines + false_lines + [f"{_targets(node, names)} = {call}"]


def _while(node: Node, names: _Names, module: PyModule) -> list[str]:
    args = [names.of(v) for v in node.inputs]
    n = len(node.outputs)
    carries, consts = args[:n], args[n:]
    cond_name, cond_lines = _region(node, "cond", names, module)
    body_name, body_lines = _region(node, "body", names, module)
    state = names.fresh("carry")
    extra = "".join(f", {c}" for c in consts)
    return cond_lines + body_lines + [
        f"{state} = ({', '.join(carries)}{',' if n == 1 else ''})",
        f"while {cond_name}(*{state}{extra})[0]:",
        f"    {state} = {body_name}(*{state}{extra})",
        f"{_targets(node, names)} = {state}",
    ]


def _scan(node: Node, names: _Names, module: PyModule) -> list[str]:
    p = node.params
    nc, nx, length = p["num_carry"], p["num_xs"], p["length"]
    args = [names.of(v) for v in node.inputs]
    carries, xs, consts = args[:nc], args[nc:nc + nx], args[nc + nx:]
    body_name, body_lines = _region(node, "body", names, module)
    state, step, t = names.fresh("carry"), names.fresh("step"), names.fresh("t")
    ys = [names.of(v) for v in node.outputs[nc:]]
    loop = f"reversed(range({length}))" if p["reverse"] else f"range({length})"
    call_args = ", ".join([f"np.int64({t})", f"*{state}"] + [f"{x}[{t}]" for x in xs] + consts)
    lines = body_lines + [f"{state} = ({', '.join(carries)}{',' if nc == 1 else ''})"]
    lines += [f"{y} = np.empty({tuple(v.shape)}, {dtype_text(v.dtype)})" for y, v in zip(ys, node.outputs[nc:])]
    lines += [f"for {t} in {loop}:", f"    {step} = {body_name}({call_args})", f"    {state} = {step}[:{nc}]"]
    lines += [f"    {y}[{t}] = {step}[{nc + k}]" for k, y in enumerate(ys)]
    carry_names = [names.of(v) for v in node.outputs[:nc]]
    if carry_names:
        lines.append(f"{', '.join(carry_names)}{',' if nc == 1 else ''} = {state}")
    return lines


CONTROL = {"cond": _cond, "while": _while, "scan": _scan}
