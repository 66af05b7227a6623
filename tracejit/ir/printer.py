"""Graph -> text, the single textual form of the IR (make_ir, lower().ir, the CLI, golden tests).

    def main(%x:f32[128,784], %W1:f32[784,512]):
      %3:f32[128,512] = matmul %x, %W1                      # train.py:9
      return %3
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Node, Value

LOC_COLUMN = 56


def format_graph(graph: Graph, indent: int = 0) -> str:
    pad = "  " * indent
    params = ", ".join(f"%{v.name}:{v.type_str}" for v in graph.inputs)
    lines = [f"{pad}def {graph.name}({params}):"]
    lines += [f"{pad}  # {note}" for note in graph.notes]
    for node in graph.nodes:
        lines.extend(format_node(node, indent + 1))
    outs = ", ".join(f"%{v.name}" for v in graph.outputs)
    lines.append(f"{pad}  return {outs}")
    return "\n".join(lines)


def format_node(node: Node, indent: int = 1) -> list[str]:
    pad = "  " * indent
    outs = ", ".join(f"%{v.name}:{v.type_str}" for v in node.outputs)
    args = ", ".join(f"%{v.name}" for v in node.inputs)
    params = format_params(node.params)
    text = f"{pad}{outs} = {node.prim.name}{params}{' ' + args if args else ''}"
    if node.loc:
        text = f"{text.ljust(LOC_COLUMN)}  # {node.loc}"
    lines = [text]
    for key, value in node.params.items():
        graphs = value if isinstance(value, tuple) else (value,)
        for i, sub in enumerate(g for g in graphs if isinstance(g, Graph)):
            label = f"{key}[{i}]" if isinstance(value, tuple) else key
            lines.append(f"{pad}  {label}:")
            lines.append(format_graph(sub, indent + 2))
    return lines


def format_params(params: dict) -> str:
    shown = [f"{k}={format_param(v)}" for k, v in params.items() if not _is_graphs(v)]
    return f"[{', '.join(shown)}]" if shown else ""


def _is_graphs(value) -> bool:
    return isinstance(value, Graph) or (isinstance(value, tuple) and value and isinstance(value[0], Graph))


def format_param(value) -> str:
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _scalar_text(value[()])
        if value.size <= 8:
            return np.array2string(value, separator=",").replace("\n", "")
        return f"<{value.dtype}{list(value.shape)}>"
    if isinstance(value, np.dtype):
        from .. import dtypes

        return dtypes.short_name(value)
    if isinstance(value, tuple):
        return "(" + ",".join(format_param(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _scalar_text(x) -> str:
    if isinstance(x, (np.floating, float)):
        return repr(float(x))
    if isinstance(x, (np.bool_, bool)):
        return "True" if x else "False"
    return str(int(x))


def value_list(values: list[Value]) -> str:
    return ", ".join(repr(v) for v in values)
