"""The trace context: a stack of Traces, each building one Graph, and trace(fun) -> Graph.

Nested traces (grad inside jit, the branches of cond) capture values of outer traces as extra
graph inputs (closure conversion), so every Graph is closed and can be differentiated or
inlined on its own.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .. import dtypes, pytree
from ..errors import TracejitError, user_location
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Value


class Trace:
    def __init__(self, name: str, parent: "Trace | None"):
        self.builder = GraphBuilder(name)
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1
        self.captured: dict[Value, Value] = {}  # outer Value -> this trace's input Value
        self.capture_sources: list = []  # the outer Tracers, in the order of their inputs

    def capture(self, tracer) -> Value:
        """This trace's input standing for a tracer of an enclosing trace."""
        key = tracer.value
        if key not in self.captured:
            if tracer.trace is not self.parent:  # capture through the traces in between first
                tracer = self.parent.lift_tracer(tracer)
            self.captured[key] = self.builder.new_input(tracer.shape, tracer.dtype, name=tracer.value.name)
            self.capture_sources.append(tracer)
        return self.captured[key]

    def lift_tracer(self, tracer):
        from .tracer import Tracer

        return Tracer(self, self.capture(tracer), tracer.weak)


_state = threading.local()


def _stack() -> list[Trace]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def current_trace() -> Trace | None:
    stack = _stack()
    return stack[-1] if stack else None


def is_tracing() -> bool:
    return bool(_stack())


class _TraceScope:
    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self):
        _stack().append(self.trace)
        return self.trace

    def __exit__(self, *exc):
        popped = _stack().pop()
        assert popped is self.trace


def new_trace(name: str = "main") -> _TraceScope:
    return _TraceScope(Trace(name, current_trace()))


def on_stack(trace: Trace) -> bool:
    return any(t is trace for t in _stack())


# ----------------------------------------------------------------------------------------------
@dataclass
class TracedFunction:
    """What tracing a Python function produced."""

    graph: Graph
    in_treedef: pytree.TreeDef
    out_treedef: pytree.TreeDef
    out_weak: tuple[bool, ...]
    captured: list  # tracers of the enclosing trace bound to the graph's trailing inputs


def python_int_casts(traced: TracedFunction) -> tuple[tuple[int, np.dtype], ...]:
    """(input index, dtype) for each narrower integer dtype the graph converts an int64 input to
    (NEP 50: a Python int argument takes the dtype of the integer array it meets). numpy raises
    OverflowError when the int does not fit; the caller checks the argument against these."""
    inputs = {value: n for n, value in enumerate(traced.graph.inputs)}
    casts = set()
    for node in traced.graph.nodes:
        if node.prim.name == "astype" and node.inputs[0] in inputs and node.inputs[0].dtype == dtypes.int64:
            target = np.dtype(node.params["dtype"])
            if target.kind in "iu" and target != dtypes.int64:
                casts.add((inputs[node.inputs[0]], target))
    return tuple(sorted(casts, key=lambda c: (c[0], c[1].str)))


@dataclass(frozen=True)
class ArgSpec:
    """Shape, dtype and weakness of one dynamic argument leaf: what a signature is made of."""

    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool = False

    @staticmethod
    def of(leaf) -> "ArgSpec":
        from .tracer import Tracer

        if isinstance(leaf, Tracer):
            return ArgSpec(leaf.shape, leaf.dtype, leaf.weak)
        if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
            return ArgSpec((), dtypes.python_scalar_dtype(leaf), True)
        array = np.asarray(leaf)
        return ArgSpec(array.shape, dtypes.canonical(array.dtype), False)


def trace(fun, args: tuple, name: str = "main", arg_names: list[str] | None = None) -> TracedFunction:
    """Trace fun(*args) where args is a pytree whose leaves are arrays, scalars or tracers."""
    from .tracer import Tracer

    leaves, in_treedef = pytree.flatten(args)
    specs = [ArgSpec.of(leaf) for leaf in leaves]
    names = arg_names or pytree_leaf_names(in_treedef)
    with new_trace(name) as tr:
        tracers = [
            Tracer(tr, tr.builder.new_input(s.shape, s.dtype, name=n), s.weak, narrow_dtype(leaf))
            for s, n, leaf in zip(specs, names, leaves)
        ]
        out = fun(*pytree.unflatten(in_treedef, tracers))
        out_leaves, out_treedef = pytree.flatten(out)
        out_values = [output_value(tr, leaf) for leaf in out_leaves]
        out_weak = tuple(isinstance(leaf, Tracer) and leaf.weak or _is_python_scalar(leaf) for leaf in out_leaves)
        graph = tr.builder.build(out_values)
    return TracedFunction(graph, in_treedef, out_treedef, out_weak, list(tr.capture_sources))


def narrow_dtype(leaf) -> np.dtype | None:
    """numpy's dtype of an argument that tracejit computes in a wider one (uint8 in int32, float16
    in float32), else None. Byte order does not count: the values are the same."""
    from .tracer import Tracer

    if isinstance(leaf, Tracer):
        return leaf.narrow
    if not isinstance(leaf, (np.ndarray, np.generic)):
        return None
    native = leaf.dtype.newbyteorder("=")
    return native if dtypes.canonical(native) != native else None


def _is_python_scalar(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def output_value(tr: Trace, leaf) -> Value:
    """The Value of an output leaf in trace `tr` (constants become constant nodes)."""
    from .tracer import Tracer, to_value

    if isinstance(leaf, Tracer) or isinstance(leaf, (np.ndarray, np.generic, bool, int, float)):
        return to_value(leaf, tr)
    raise TracejitError(
        f"a traced function returned a {type(leaf).__name__}; outputs must be pytrees (dict/list/tuple/namedtuple/None) "
        f"of arrays or scalars (at {user_location()})"
    )


def pytree_leaf_names(treedef: pytree.TreeDef) -> list[str]:
    """IR names for argument leaves: arg0, params_W1, ..."""
    return ["_".join((f"arg{keys[0]}" if keys[0].isdigit() else keys[0],) + keys[1:]) if keys else "arg"
            for keys in pytree.leaf_keys(treedef)]


def bind_graph(graph: Graph, inputs: list[Value], trace: Trace) -> list[Value]:
    """Inline `graph` into `trace`, feeding `inputs` to its inputs; return its outputs' new Values."""
    env: dict[Value, Value] = dict(zip(graph.inputs, inputs))
    b = trace.builder
    b.notes.extend(graph.notes)
    for node in graph.nodes:
        hint = node.outputs[0].name if len(node.outputs) == 1 and not node.outputs[0].name.isdigit() else None
        outs = b.emit(node.prim, *[env[v] for v in node.inputs], loc=node.loc, name=hint, **node.params)
        outs = outs if node.prim.multiple_results else [outs]
        env.update(zip(node.outputs, outs))
    return [env[v] for v in graph.outputs]
