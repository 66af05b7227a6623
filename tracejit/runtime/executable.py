"""Executable: the compiled C program behind a jitted function, called through cffi.

build_executable(graph) runs the pipeline: optimize -> fuse -> C source -> compile (disk cache)
-> Executable. A call checks each argument against the compiled signature, allocates the
outputs with numpy and makes one C call; everything else is precomputed at build time.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

import numpy as np

from .. import config, dtypes
from ..ir.graph import Graph
from ..ir.printer import format_graph
from .blas import gemm_pointers, own_gemms_expected

try:  # the C fast path of jitted calls (csrc/dispatch.c), built at install when a compiler is there
    from .. import _dispatch
except ImportError:
    _dispatch = None

# Large outputs come from the extension's pool, which keeps the pages of the last call's outputs
# mapped (csrc/pool.c); without it (or from a build older than the pool), np.empty.
if hasattr(_dispatch, "pooled_empty"):
    _dispatch.pool_configure(config.pool_bytes())
    _pooled_empty, POOL_MIN_BYTES = _dispatch.pooled_empty, _dispatch.POOL_MIN_BYTES
else:
    _pooled_empty, POOL_MIN_BYTES = np.empty, 0

if TYPE_CHECKING:  # the pipeline is imported when it runs: a program found by its traced graph skips it
    from ..codegen.c_program import Program
    from ..passes.fusion import KernelGraph

ALIGNMENT = 64  # bytes; codegen/c_program.py plans workspace offsets in multiples of it (a test checks)

# OpenMP workers: how long they spin after a parallel region before sleeping. Sleeping at once
# costs a wake-up of 20-30 us on this kind of VM at every region, so a loop of calls on 100k
# elements ran on one core (W1 n=100k: 82 us, 55 us with a spin). Spinning long steals the cores
# that OpenBLAS's threads need next: with GOMP_SPINCOUNT 30000 a jitted call followed by a numpy
# matmul took 1.8 ms instead of 0.3 ms. Hence two settings:
# - the generated matmuls call tracejit's own gemms (csrc/gemm.c, AVX-512 CPUs), which run on this
#   OpenMP pool: 3000 spins (~50 us). A training step is a chain of regions (8 gemms and the loops
#   between them in W4) whose workers must not fall asleep between them: with 300, W4 ran at
#   1.11-1.14x numpy, with 3000 at 1.27-1.29x. The cost: a numpy matmul of 0.69 ms right after a
#   jitted call took 60 us longer (6 us with 300).
# - the generated matmuls call OpenBLAS: 300 spins (a few microseconds), which cover the gap
#   between back-to-back calls and leave the cores to OpenBLAS's threads; 3000 made W4 through
#   OpenBLAS 0.98-1.04x numpy instead of 1.08-1.12x.
# PASSIVE stays for other OpenMP runtimes (clang's libomp would otherwise spin for 200 ms);
# libgomp lets GOMP_SPINCOUNT override it. Measurements: python benchmarks/run.py --only W4 and
# a matmul timed after a jitted call, 2026-11-27. Whatever the user set wins. libgomp reads these
# once, when the first generated library or the gemm extension loads it.
def _default_openmp_waiting() -> None:
    user_set = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not user_set:
        os.environ["GOMP_SPINCOUNT"] = "3000" if own_gemms_expected() else "300"


_default_openmp_waiting()

_RAISED = {"ValueError": ValueError}  # exceptions a compiled program raises besides IndexError (c_error)

_MISSING = object()  # default of each argument of the generated call: a missing one reaches _convert

# A fast-path call holds the GIL while the kernel runs (cheaper than dropping and re-taking it for
# small calls), unless it may be long: this many bytes of inputs, outputs and workspace (some
# microseconds of work), a matmul, or a loop. cffi calls always drop it.
RELEASE_GIL_BYTES = 1 << 16


class Executable:
    """`exe(*leaves) -> list[np.ndarray]`; `.ir_text`, `.c_source`, `.peak_temp_bytes`."""

    def __init__(self, graph: Graph, kernel_graph: KernelGraph, program: Program, library, name: str,
                 arg_paths: list[str] | None = None):
        self.name = name
        self.graph = graph
        self.arg_paths = _paths_or_ir_names(graph, arg_paths)
        self.kernel_graph = kernel_graph
        self.program = program
        self.peak_temp_bytes = program.peak_temp_bytes
        self.library = library
        ffi = library.ffi
        self._from_buffer = ffi.from_buffer
        self._main = library.lib.tj_main
        self._bad_index = ffi.new("int64_t[1]")
        self._workspace = np.empty(program.peak_temp_bytes + ALIGNMENT, np.uint8)
        self._hidden = [ffi.from_buffer(a) for a in program.hidden] + [_aligned_pointer(ffi, self._workspace),
                                                                       self._bad_index]
        # one workspace per executable: calls from several threads take turns
        self._lock = (_dispatch.Lock() if _dispatch else threading.Lock()) if program.peak_temp_bytes else None
        self._hidden_arrays = program.hidden  # keep them alive
        self._in_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.inputs]
        self._n_in = len(self._in_specs)
        self._out_specs = [(tuple(v.shape), np.dtype(v.dtype)) for v in graph.outputs]
        self._call = self._make_call()
        self._release_gil = _may_run_long(graph, program, self._in_specs + self._out_specs)
        self._errors = program.errors  # from the record too: raising needs no pipeline run
        library.lib.tj_set_threads(config.num_threads())
        if "tj_use_blas64" in program.cdef:
            gemms = gemm_pointers()
            if gemms is not None:
                library.lib.tj_use_blas64(ffi.cast("void *", gemms[0]), ffi.cast("void *", gemms[1]))

    def __call__(self, *leaves):
        return self._call(*leaves)

    def _generic_call(self, *leaves):
        raise TypeError(f"{self.name} takes {self._n_in} array arguments (the flattened leaves "
                        f"{', '.join(self.arg_paths)}), got {len(leaves)}")

    def _make_call(self):
        """A call function specialized to this signature (one line per argument, no loops): the
        per-call Python work is a type/shape/dtype check, a pointer per array, one C call."""
        env = {"np": np, "empty": np.empty, "pooled_empty": _pooled_empty, "ndarray": np.ndarray,
               "fb": self._from_buffer, "main": self._main, "convert": self._convert,
               "contiguous": np.ascontiguousarray, "fail": self._raise, "generic": self._generic_call,
               "MISSING": _MISSING}
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
            empty = "pooled_empty" if int(np.prod(shape)) * dtype.itemsize >= POOL_MIN_BYTES else "empty"
            lines.append(f"    o{n} = {empty}(OS{n}, OD{n})")
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
        if type(leaf) is int and dtype.kind in "iu":  # as numpy (NEP 50): out of range is an OverflowError
            dtypes.check_python_int(leaf, dtype)
        array = np.asarray(leaf)
        if array.dtype == dtype and array.shape == shape:
            return array
        expected = f"{dtype}{list(shape)}"
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

    def _raise(self, status: int, bad: int | None = None):
        """The program's error `status` (1-based); `bad` is the offending index, read under the lock.
        A message names its exception first ("ValueError: ..."); an index error does not."""
        bad = int(self._bad_index[0]) if bad is None else bad
        kind, sep, rest = self._errors[status - 1].partition(": ")
        if sep and kind in _RAISED:
            raise _RAISED[kind](rest)  # no index in these: the message is as written (a path may hold braces)
        raise IndexError(self._errors[status - 1].format(bad=bad))

    def fast_entry(self, pack, layout=None, python_floats=(), keywords=None, python_ints=()):
        """This signature as the C dispatcher calls it (a tracejit._dispatch.Entry), or None without
        the extension or for more parameters than it handles. `pack` says how the outputs come back:
        'leaf' (the one output), 'tuple', 'list', or a callable taking the list of outputs; `layout`
        how the positional arguments hold the inputs (None: one each; else one layout node per
        argument, see api._layout_node), and `keywords` the keyword arguments (None, or a dict
        node, with a layout); `python_floats` which inputs are passed as Python floats, and
        `python_ints` which as Python ints, with the range each may take: (index, lo, hi)."""
        if _dispatch is None or self._n_in + len(self._out_specs) + len(self._hidden) > _dispatch.MAX_POINTERS:
            return None
        address = self.library.ffi.cast
        hidden = tuple(int(address("uintptr_t", p)) for p in self._hidden[:-1])  # constants, workspace
        return _dispatch.Entry(main=int(address("uintptr_t", self._main)), hidden=hidden,
                               bad_index=int(address("uintptr_t", self._bad_index)), inputs=self._in_specs,
                               outputs=self._out_specs, pack=pack, on_error=self._raise, lock=self._lock,
                               release_gil=self._release_gil, owner=self, layout=layout,
                               python_floats=tuple(python_floats), keywords=keywords,
                               python_ints=tuple(python_ints))

    # ---- a program found by its traced graph (compile/programs.py): the pipeline runs on demand
    _pipeline = None  # _Pipeline of a program loaded from the cache

    @classmethod
    def from_cache(cls, traced: Graph, record, library, name: str, arg_paths: list[str] | None = None):
        """An Executable for a library the cache found by `traced`, the graph before the passes:
        `record` (compile/programs.ProgramRecord) has what a call needs. __init__ reads only
        the graph's input and output types, which the passes keep; `.graph`, `.kernel_graph`,
        `.c_source`, `.ir_text` and `.program.kernels` re-run the pipeline when first asked for."""
        pipeline = _Pipeline(traced, name, library)
        exe = cls(traced, None, _CachedProgram(record, pipeline), library, name, arg_paths)
        exe._pipeline = pipeline
        return exe

    graph = property(lambda self: self._product("graph"), lambda self, value: self._store("graph", value))
    kernel_graph = property(lambda self: self._product("kernel_graph"),
                            lambda self, value: self._store("kernel_graph", value))

    def _product(self, field: str):
        return getattr(self._pipeline, field) if self._pipeline is not None else self.__dict__[f"_{field}"]

    def _store(self, field: str, value) -> None:
        self.__dict__[f"_{field}"] = value

    @property
    def c_source(self) -> str:
        return self.program.source

    @property
    def ir_text(self) -> str:
        return format_graph(self.graph) + "\n" + kernel_listing(self.program)


def _widens_to(dtype: np.dtype, compiled: np.dtype) -> bool:
    """Whether tracejit traces `dtype` as `compiled` (float16 -> float32, big-endian -> native)."""
    try:
        return dtypes.canonical(dtype) == compiled
    except TypeError:
        return False


def _may_run_long(graph: Graph, program, specs) -> bool:
    """Whether a call may take long enough that the C fast path should let other threads run."""
    from ..ops.registry import Kind

    data = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in specs) + program.peak_temp_bytes
    return (data >= RELEASE_GIL_BYTES or "tj_use_blas64" in program.cdef
            or any(node.prim.kind in (Kind.CONTROL, Kind.MATMUL) for node in graph.nodes))


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
    """The compiled program; `arg_paths` (one per graph input) name the arguments in errors.

    A program built before (in any process) is found by the traced graph alone, skipping the
    passes, fusion, code generation and the C parser (compile/programs.py); with
    TRACEJIT_DEBUG >= 2, which prints those stages, the pipeline always runs."""
    from ..compile import programs

    key = programs.ready_key(graph, name)
    if key is not None and config.debug_level() < 2:
        found = programs.lookup(key)
        if found is not None:
            library, record = found
            return Executable.from_cache(graph, record, library, name, arg_paths)
    optimized, kernel_graph, program = _run_pipeline(graph, name)
    if program is None:
        return InterpretedExecutable(optimized, name, _uncompilable(optimized), arg_paths)
    if config.debug_level() >= 2:
        print(f"--- fusion of {name} ---\n{kernel_listing(program)}", file=sys.stderr)
    from ..compile.cache import get_or_build  # the build side: imported only on a miss

    library = get_or_build(program.units, program.cdef)
    programs.publish(key or programs.program_key(graph, name), library, program.cdef, program.hidden,
                     program.errors, program.peak_temp_bytes)
    return Executable(optimized, kernel_graph, program, library, name, arg_paths)


def _run_pipeline(graph: Graph, name: str):
    """(optimized graph, kernel graph, Program); (optimized graph, None, None) if the C backend
    cannot compile it."""
    from ..codegen.c_program import generate
    from ..passes.fusion import fuse
    from ..passes.pipeline import optimize

    graph = optimize(graph)
    if _uncompilable(graph) is not None:
        return graph, None, None
    kernel_graph = fuse(graph)
    return graph, kernel_graph, generate(kernel_graph, name)


class _CachedProgram:
    """The Program of an executable loaded from the cache: what a call needs (cdef, hidden,
    errors, peak_temp_bytes) from the record; anything else (source, kernels) from the pipeline."""

    def __init__(self, record, pipeline: "_Pipeline"):
        self.cdef, self.hidden, self.errors = record.cdef, record.hidden, record.errors
        self.peak_temp_bytes = record.peak_temp_bytes
        self._pipeline = pipeline

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._pipeline.program, name)


class _Pipeline:
    """The pipeline's products for a program loaded by its traced graph, computed on first use."""

    def __init__(self, traced: Graph, name: str, library):
        self._traced, self._name, self._library = traced, name, library
        self._products = None

    def _run(self):
        if self._products is None:
            self._products = _run_pipeline(self._traced, self._name)
            _check_same_library(self._products[2], self._library)
        return self._products

    graph = property(lambda self: self._run()[0])
    kernel_graph = property(lambda self: self._run()[1])
    program = property(lambda self: self._run()[2])


def _check_same_library(program, library) -> None:
    """The C regenerated now should be what the loaded library was built from; if not, the
    pipeline is not deterministic and `.c_source` describes another binary: say so."""
    import warnings

    from ..compile import cache, toolchain

    cc = toolchain.find_compiler()
    if cache.cache_key(program.units, toolchain.default_flags(cc), toolchain.compiler_identity(cc)) != library.key:
        warnings.warn(f"tracejit: the C source regenerated for {library.path} differs from the one it was built "
                      "from (a nondeterministic pass?); .c_source and .ir may not describe the loaded code.",
                      cache.CacheWarning, stacklevel=4)
