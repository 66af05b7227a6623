"""Executable: the compiled C program behind a jitted function, called through cffi.

build_executable(graph) runs the pipeline: optimize -> fuse -> C source -> compile (disk cache)
-> Executable. A call checks each argument against the compiled signature, allocates the
outputs with numpy and makes one C call; everything else is precomputed at build time.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from .. import config, dtypes
from ..codegen.c_program import ALIGNMENT, Program, generate
from ..ir.graph import Graph
from ..ir.printer import format_graph
from ..passes.fusion import KernelGraph, fuse
from ..passes.pipeline import optimize

# OpenMP worker threads that spin after a parallel loop steal the cores numpy's BLAS threads
# (and ours, through numpy's BLAS) need next; sleeping at once costs a few microseconds per
# loop (loops go parallel only above ~100k elements). Measured on 2 busy cores: W2a 7.8 ->
# 2.7 ms, W2b 5.4 -> 2.6 ms. libgomp reads this when the first generated library loads it;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_MISSING = object()  # default of each argument of the generated call: a missing one reaches _convert


class Executable:
    """`exe(*leaves) -> list[np.ndarray]`; `.ir_text`, `.c_source`, `.peak_temp_bytes`."""

    def __init__(self, graph: Graph, kernel_graph: KernelGraph, program: Program, library, name: str,
                 arg_paths: list[str] | None = None):
        self.name = name
        self.graph = graph
        self.arg_paths = _paths_or_ir_names(graph, arg_paths)
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
        self._workspace = np.empty(program.peak_temp_bytes + ALIGNMENT, np.uint8)
        self._hidden = [ffi.from_buffer(a) for a in program.hidden] + [_aligned_pointer(ffi, self._workspace),
                                                                       self._bad_index]
        # one workspace per executable: calls from several threads take turns
        self._lock = threading.Lock() if program.peak_temp_bytes else None
        self._hidden_arrays = program.hidden  # keep them alive
        self._in_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.inputs]
        self._n_in = len(self._in_specs)
        self._out_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.outputs]
        self._call = self._make_call()
        library.lib.tj_set_threads(config.num_threads())
        if "tj_use_blas64" in program.cdef:
            blas = numpy_blas64()
            if blas is not None:
                library.lib.tj_use_blas64(ffi.cast("void *", blas[0]), ffi.cast("void *", blas[1]))

    def __call__(self, *leaves):
        return self._call(*leaves)

    def _generic_call(self, *leaves):
        raise TypeError(f"{self.name} takes {self._n_in} array arguments (the flattened leaves "
                        f"{', '.join(self.arg_paths)}), got {len(leaves)}")

    def _make_call(self):
        """A call function specialized to this signature (one line per argument, no loops): the
        per-call Python work is a type/shape/dtype check, a pointer per array, one C call."""
        env = {"np": np, "empty": np.empty, "ndarray": np.ndarray, "fb": self._from_buffer,
               "main": self._main, "convert": self._convert, "contiguous": np.ascontiguousarray,
               "fail": self._raise, "generic": self._generic_call, "MISSING": _MISSING}
        args = [f"x{n}=MISSING" for n in range(self._n_in)]
        lines = [f"def call({', '.join(args + ['*rest'])}):",
                 f"    if rest: return generic({', '.join(f'x{n}' for n in range(self._n_in))}{', ' * (self._n_in > 0)}*rest)"]
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
        call = f"main({', '.join(pointers)})"
        if self._lock is not None:
            env["lock"] = self._lock
            lines += ["    with lock:", f"        status = {call}"]
        else:
            lines.append(f"    status = {call}")
        lines += ["    if status: fail(status)",
                  f"    return [{', '.join(outs)}]"]
        exec("\n".join(lines), env)  # noqa: S102 - code built from our own signature, no user text
        return env["call"]

    def _convert(self, n: int, leaf) -> np.ndarray:
        """A leaf that is not already an ndarray of the compiled shape and dtype: converted (a
        Python scalar, a narrower or byte-swapped dtype that tracejit widens), else a TypeError or
        ValueError naming the argument and what it was compiled for."""
        shape, dtype = self._in_specs[n]
        if leaf is _MISSING:
            raise TypeError(f"{self.name}: argument {self.arg_paths[n]} is missing; it takes {self._n_in} array "
                            f"arguments (the flattened leaves {', '.join(self.arg_paths)})")
        array = np.asarray(leaf)
        if array.dtype == dtype and array.shape == shape:
            return array
        expected = f"{dtype}{list(shape)}"
        if isinstance(leaf, int) and array.dtype.kind == "O":
            raise ValueError(f"{self.name}: argument {self.arg_paths[n]} is the Python int {leaf}, which does not "
                             f"fit in {dtype}")
        if array.dtype.kind in "OUSV":
            raise TypeError(f"{self.name}: argument {self.arg_paths[n]} is a {type(leaf).__name__}, but it was "
                            f"compiled for an array {expected}; it takes {self._n_in} array arguments (the "
                            f"flattened leaves {', '.join(self.arg_paths)})")
        if array.shape != shape:
            raise ValueError(f"{self.name}: argument {self.arg_paths[n]} has shape {array.shape}, but it was "
                             f"compiled for shape {shape} ({expected}); call the jitted function instead, "
                             "which compiles a new signature")
        if _widens_to(array.dtype, dtype) or (
                isinstance(leaf, (bool, int, float)) and np.can_cast(np.min_scalar_type(leaf), dtype, "same_kind")):
            return array.astype(dtype)
        raise TypeError(f"{self.name}: argument {self.arg_paths[n]} has dtype {array.dtype}, but it was compiled "
                        f"for {dtype} ({expected}); call the jitted function instead, which compiles a new signature")

    def _raise(self, status: int):
        message = self.program.errors[status - 1].format(bad=int(self._bad_index[0]))
        raise IndexError(message)


_NUMPY_BLAS: list = []


def numpy_blas64() -> tuple[int, int] | None:
    """Addresses of sgemm/dgemm in numpy's own OpenBLAS (the scipy-openblas64 numpy wheels bundle),
    or None (another numpy build: the generated code then calls the scipy-openblas32 wheel).

    Sharing numpy's library means one BLAS thread pool in the process: with two, each pool's
    threads spin after a call and starve the other's (a 128x784x512 sgemm took 24 ms instead of
    0.6 ms right after a numpy matmul)."""
    if not _NUMPY_BLAS:
        _NUMPY_BLAS.append(_find_numpy_blas64())
    return _NUMPY_BLAS[0]


def _find_numpy_blas64():
    import ctypes
    import glob

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            return tuple(ctypes.cast(getattr(lib, f"scipy_cblas_{p}gemm64_"), ctypes.c_void_p).value for p in "sd")
        except (OSError, AttributeError):
            continue
    return None


def _widens_to(dtype: np.dtype, compiled: np.dtype) -> bool:
    """Whether tracejit traces `dtype` as `compiled` (float16 -> float32, big-endian -> native)."""
    try:
        return dtypes.canonical(dtype) == compiled
    except TypeError:
        return False


def _paths_or_ir_names(graph: Graph, arg_paths) -> list[str]:
    """How errors name each argument: the user's paths (params['W1']) when known, else %ir_name."""
    if arg_paths is not None and len(arg_paths) == len(graph.inputs):
        return list(arg_paths)
    return [f"%{v.name}" for v in graph.inputs]


def _aligned_pointer(ffi, array: np.ndarray):
    """A char* into `array` rounded up to ALIGNMENT bytes (the workspace offsets are multiples of it)."""
    address = int(ffi.cast("uintptr_t", ffi.from_buffer(array)))
    return ffi.cast("char *", ffi.from_buffer(array)) + (-address % ALIGNMENT)


def kernel_listing(program: Program) -> str:
    lines = ["kernels:"]
    for info in program.kernels:
        fused = " ".join(f"%{v.name}" for v in info.node_values) or "(copy)"
        stored = " ".join(f"%{v.name}" for v in info.stored)
        lines.append(f"  kernel {info.name}: fuses {fused} -> {stored}")
    lines.append(f"workspace (peak temporary) bytes: {program.peak_temp_bytes}")
    return "\n".join(lines)


class InterpretedExecutable:
    """Stand-in for graphs holding nodes the C backend does not compile yet (control flow):
    runs the optimized graph with the reference interpreter, same interface as Executable."""

    def __init__(self, graph: Graph, name: str, reason: str, arg_paths: list[str] | None = None):
        self.name, self.graph = name, graph
        self.arg_paths = _paths_or_ir_names(graph, arg_paths)
        self.ir_text = format_graph(graph) + f"\nkernels: none (interpreted: {reason})"
        self.c_source = f"/* not compiled to C: {reason} */\n"
        self.peak_temp_bytes = 0
        self._in_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.inputs]
        self._n_in = len(self._in_specs)

    def __call__(self, *leaves):
        from ..ir.interpret import evaluate

        if len(leaves) != len(self._in_specs):
            Executable._generic_call(self, *leaves)
        args = [Executable._convert(self, n, leaf) for n, leaf in enumerate(leaves)]
        return [np.array(out, copy=True) for out in evaluate(self.graph, args)]


def _uncompilable(graph: Graph) -> str | None:
    from ..codegen.c_control import LOWERINGS
    from ..ops.registry import Kind

    for node in graph.nodes:
        if node.prim.kind is Kind.CONTROL and node.prim.name not in LOWERINGS:
            return f"the C backend does not lower `{node.prim.name}` nodes yet"
    return None


def build_executable(graph: Graph, name: str = "main", arg_paths: list[str] | None = None):
    """The compiled program; `arg_paths` (one per graph input) name the arguments in errors."""
    from ..compile import get_or_build

    graph = optimize(graph)
    reason = _uncompilable(graph)
    if reason is not None:
        return InterpretedExecutable(graph, name, reason, arg_paths)
    kernel_graph = fuse(graph)
    program = generate(kernel_graph, name)
    if config.debug_level() >= 2:
        print(f"--- fusion of {name} ---\n{kernel_listing(program)}", file=sys.stderr)
    library = get_or_build(program.source, program.cdef)
    return Executable(graph, kernel_graph, program, library, name, arg_paths)
