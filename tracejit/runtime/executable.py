"""Executable: the compiled C program behind a jitted function, called through cffi.

build_executable(graph) runs the pipeline: optimize -> fuse -> C source -> compile (disk cache)
-> Executable. A call checks each argument against the compiled signature, allocates the
outputs with numpy and makes one C call; everything else is precomputed at build time.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import config
from ..codegen.c_program import Program, generate
from ..ir.graph import Graph
from ..ir.printer import format_graph
from ..passes.fusion import KernelGraph, fuse
from ..passes.pipeline import optimize


class Executable:
    """`exe(*leaves) -> list[np.ndarray]`; `.ir_text`, `.c_source`, `.peak_temp_bytes`."""

    def __init__(self, graph: Graph, kernel_graph: KernelGraph, program: Program, library, name: str):
        self.name = name
        self.graph = graph
        self.kernel_graph = kernel_graph
        self.program = program
        self.c_source = program.source
        self.peak_temp_bytes = program.peak_temp_bytes
        self.ir_text = format_graph(graph) + "\n" + kernel_listing(program)
        self.library = library
        ffi = library.ffi
        self._from_buffer = ffi.from_buffer
        self._main = library.lib.tj_main
        self._bad_index = ffi.new("int64_t[1]")
        self._hidden = [ffi.from_buffer(a) for a in program.hidden] + [self._bad_index]
        self._hidden_arrays = program.hidden  # keep them alive
        self._in_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.inputs]
        self._n_in = len(self._in_specs)
        self._out_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.outputs]
        self._call = self._make_call()
        library.lib.tj_set_threads(config.num_threads())

    def __call__(self, *leaves):
        return self._call(*leaves)

    def _generic_call(self, *leaves):
        raise TypeError(f"{self.name} takes {self._n_in} array arguments, got {len(leaves)}")

    def _make_call(self):
        """A call function specialized to this signature (one line per argument, no loops): the
        per-call Python work is a type/shape/dtype check, a pointer per array, one C call."""
        env = {"np": np, "empty": np.empty, "ndarray": np.ndarray, "fb": self._from_buffer,
               "main": self._main, "convert": self._convert, "contiguous": np.ascontiguousarray,
               "fail": self._raise, "generic": self._generic_call}
        args = [f"x{n}" for n in range(self._n_in)]
        lines = [f"def call({', '.join(args + ['*rest'])}):", "    if rest: return generic(*rest)"]
        for n, (shape, dtype) in enumerate(self._in_specs):
            env[f"S{n}"], env[f"D{n}"] = shape, dtype
            lines += [f"    if x{n}.__class__ is not ndarray or x{n}.shape != S{n} or x{n}.dtype is not D{n}:",
                      f"        x{n} = convert({n}, x{n})",
                      f"    try: p{n} = fb(x{n})",
                      f"    except ValueError: p{n} = fb(contiguous(x{n}))"]
        outs = []
        for n, (shape, dtype) in enumerate(self._out_specs):
            env[f"OS{n}"], env[f"OD{n}"] = shape, dtype
            lines.append(f"    o{n} = empty(OS{n}, OD{n})")
            outs.append(f"o{n}")
        hidden = []
        for n, pointer in enumerate(self._hidden):
            env[f"H{n}"] = pointer
            hidden.append(f"H{n}")
        pointers = [f"p{n}" for n in range(self._n_in)] + [f"fb({o})" for o in outs] + hidden
        lines += [f"    status = main({', '.join(pointers)})", "    if status: fail(status)",
                  f"    return [{', '.join(outs)}]"]
        exec("\n".join(lines), env)  # noqa: S102 - code built from our own signature, no user text
        return env["call"]

    def _convert(self, n: int, leaf) -> np.ndarray:
        """A leaf that is not already an ndarray of the compiled shape and dtype."""
        shape, dtype = self._in_specs[n]
        name = self.graph.inputs[n].name
        array = np.asarray(leaf)
        if array.dtype == dtype and array.shape == shape:
            return array
        if array.shape != shape:
            raise ValueError(f"argument {n} (%{name}) of {self.name} has shape {array.shape}, "
                             f"but it was compiled for shape {shape}")
        if array.dtype != dtype:
            if isinstance(leaf, (bool, int, float)) and np.can_cast(np.min_scalar_type(leaf), dtype, "same_kind"):
                return np.asarray(leaf, dtype)
            raise TypeError(f"argument {n} (%{name}) of {self.name} has dtype {array.dtype}, "
                            f"but it was compiled for {dtype}")
        return array

    def _raise(self, status: int):
        if status < 0:
            raise MemoryError(f"{self.name}: out of memory for temporaries ({self.peak_temp_bytes} bytes)")
        message = self.program.errors[status - 1].format(bad=int(self._bad_index[0]))
        raise IndexError(message)


def kernel_listing(program: Program) -> str:
    lines = ["kernels:"]
    for info in program.kernels:
        fused = " ".join(f"%{v.name}" for v in info.node_values) or "(copy)"
        stored = " ".join(f"%{v.name}" for v in info.stored)
        lines.append(f"  kernel {info.name}: fuses {fused} -> {stored}")
    lines.append(f"peak temporary bytes: {program.peak_temp_bytes}")
    return "\n".join(lines)


class InterpretedExecutable:
    """Stand-in for graphs holding nodes the C backend does not compile yet (control flow):
    runs the optimized graph with the reference interpreter, same interface as Executable."""

    def __init__(self, graph: Graph, name: str, reason: str):
        self.name, self.graph = name, graph
        self.ir_text = format_graph(graph) + f"\nkernels: none (interpreted: {reason})"
        self.c_source = f"/* not compiled to C: {reason} */\n"
        self.peak_temp_bytes = 0
        self._in_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.inputs]
        self._n_in = len(self._in_specs)

    def __call__(self, *leaves):
        from ..ir.interpret import evaluate

        if len(leaves) != len(self._in_specs):
            raise TypeError(f"{self.name} takes {len(self._in_specs)} array arguments, got {len(leaves)}")
        args = [Executable._convert(self, n, leaf) for n, leaf in enumerate(leaves)]
        return [np.array(out, copy=True) for out in evaluate(self.graph, args)]


def _uncompilable(graph: Graph) -> str | None:
    from ..codegen.c_control import LOWERINGS
    from ..ops.registry import Kind

    for node in graph.nodes:
        if node.prim.kind is Kind.CONTROL and node.prim.name not in LOWERINGS:
            return f"the C backend does not lower `{node.prim.name}` nodes yet"
    return None


def build_executable(graph: Graph, name: str = "main"):
    from ..compile import get_or_build

    graph = optimize(graph)
    reason = _uncompilable(graph)
    if reason is not None:
        return InterpretedExecutable(graph, name, reason)
    kernel_graph = fuse(graph)
    program = generate(kernel_graph, name)
    if config.debug_level() >= 2:
        print(f"--- fusion of {name} ---\n{kernel_listing(program)}", file=sys.stderr)
    library = get_or_build(program.source, program.cdef)
    return Executable(graph, kernel_graph, program, library, name)
