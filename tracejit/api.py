"""The transformations users call: jit (and, in autodiff/, grad, value_and_grad, vjp).

jit traces once per signature (pytree structure, shapes, dtypes, weak scalars, static values),
optimizes the graph, compiles it to C and keeps the executable in memory (and on disk, through
compile/cache). Inside another trace a jitted function is simply inlined.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from . import dtypes, pytree
from .errors import DTypeError
from .trace import tracing
from .trace.tracing import ArgSpec, TracedFunction, is_tracing, python_int_casts, trace

try:  # the C dispatcher (csrc/dispatch.c): calls matching a compiled signature skip the Python path
    from . import _dispatch
    from ._dispatch import Dispatcher as _CallBase

    _dispatch.set_trace_state(tracing._state)  # it leaves calls made while tracing to the Python path
except ImportError:  # installed without a C compiler or Python headers: every call takes the Python path
    _dispatch = None
    _CallBase = object

MANY_SIGNATURES = 8  # warn when a function has been compiled for this many signatures


# ---- signatures ---------------------------------------------------------------------------
def _split_static(args, kwargs, static_argnums, static_argnames):
    """(dynamic args with statics removed, dynamic kwargs, hashable static part)."""
    if not static_argnums and not static_argnames:  # the common case, on every call of the Python path
        return args, kwargs, ()
    nums = {n % len(args) if n < 0 else n for n in static_argnums if -len(args) <= n < len(args)}
    static = tuple((n, args[n]) for n in sorted(nums)) + tuple(
        (k, kwargs[k]) for k in sorted(kwargs) if k in static_argnames
    )
    for _, value in static:
        try:
            hash(value)
        except TypeError:
            raise TypeError(f"static argument {value!r} must be hashable (it is part of the compile key)") from None
    dyn_args = tuple(a for n, a in enumerate(args) if n not in nums)
    dyn_kwargs = {k: v for k, v in kwargs.items() if k not in static_argnames}
    return dyn_args, dyn_kwargs, static


def _rebuild(dyn_args, dyn_kwargs, static, nargs):
    """Put static arguments back where the user had them."""
    positional = dict((k, v) for k, v in static if isinstance(k, int))
    it = iter(dyn_args)
    args = tuple(positional[n] if n in positional else next(it) for n in range(nargs))
    kwargs = dict(dyn_kwargs, **{k: v for k, v in static if isinstance(k, str)})
    return args, kwargs


def _leaf_spec(leaf):
    """Fast signature entry of one leaf: (shape, dtype.char) for arrays, the type for scalars."""
    if isinstance(leaf, np.ndarray):
        return leaf.shape, leaf.dtype.char
    if isinstance(leaf, (bool, int, float)):
        return type(leaf)
    spec = ArgSpec.of(leaf)
    return spec.shape, spec.dtype.char


@dataclass
class _Compiled:
    traced: TracedFunction
    executable: object  # runtime.executable.Executable
    specs: tuple  # ArgSpec per dynamic leaf
    fast: object = None  # the C dispatcher's Entry when the key is eligible (see _fast_entry), else None
    unflatten: object = None  # outs -> the user's output structure (built once, see _unflattener)
    int_casts: tuple = ()  # (leaf index, dtype): Python int arguments the program converts (python_int_casts)

    def __post_init__(self):
        self.unflatten = _unflattener(self.traced.out_treedef)
        self.int_casts = tuple((n, dtype) for n, dtype in python_int_casts(self.traced)
                               if n < len(self.specs) and self.specs[n].weak)

    def __call__(self, leaves):
        for n, dtype in self.int_casts:  # as numpy: 2**40 meeting an int32 array is an OverflowError
            dtypes.check_python_int(leaves[n], dtype)
        return self.unflatten(self.executable(*leaves))


def _fast_entry(key, compiled: _Compiled):
    """The C dispatcher's Entry for a signature whose arguments, positional or keyword, are arrays,
    Python floats (a learning rate) or Python ints, alone or in dicts with str keys, tuples, namedtuples and
    lists (a model's parameters, an optimizer's state), with no static arguments and dtypes already the ones compiled; else
    None. Any call the Entry matches then has this very key, so it runs the same program the
    Python path would pick."""
    treedef, leaf_specs, static = key
    if _dispatch is None:
        return None
    layouts = _call_layout(treedef)
    if static or layouts is None:
        return None
    python_floats = tuple(n for n, s in enumerate(leaf_specs) if s is float)
    python_ints = tuple(_int_range(n, compiled) for n, s in enumerate(leaf_specs) if s is int)
    if any(isinstance(s, type) and s not in (float, int) for s in leaf_specs):
        return None  # bools keep numpy's conversion rules on the Python path
    if any(compiled.specs[n].shape != () or compiled.specs[n].dtype.char not in "fd" for n in python_floats):
        return None  # the dispatcher writes a Python float into a 0-d float64 or float32 input only
    if any(compiled.specs[n].shape != () or compiled.specs[n].dtype != np.int64 for n, _, _ in python_ints):
        return None  # ... and a Python int into a 0-d int64 one
    if any(not isinstance(s, type) and s[1] != spec.dtype.char for s, spec in zip(leaf_specs, compiled.specs)):
        return None
    make = getattr(compiled.executable, "fast_entry", None)  # an InterpretedExecutable has none
    if make is None:
        return None
    layout, keywords = layouts
    return make(_output_packing(compiled.traced.out_treedef), layout, python_floats, keywords, python_ints)


def _int_range(n: int, compiled: _Compiled) -> tuple[int, int, int]:
    """(n, lo, hi): the Python ints input n takes in C, what int64 and every integer dtype the
    program converts it to can hold; any other value goes to the Python path's OverflowError."""
    lo, hi = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
    for m, dtype in compiled.int_casts:
        if m == n:
            lo, hi = max(lo, int(np.iinfo(dtype).min)), min(hi, int(np.iinfo(dtype).max))
    return n, lo, hi


def _call_layout(treedef) -> tuple | None:
    """(one layout node per positional argument, a dict node for the keyword arguments or None)
    for the C dispatcher (see _layout_node); None for a structure the dispatcher does not walk."""
    args, kwargs = treedef.children if treedef.kind == "tuple" and len(treedef.children) == 2 else (None, None)
    if args is None or args.kind != "tuple" or kwargs.kind != "dict":
        return None
    nodes = tuple(_layout_node(arg) for arg in args.children)
    keywords = _layout_node(kwargs) if kwargs.children else None
    return None if False in (*nodes, keywords) else (nodes, keywords)


def _layout_node(treedef):
    """None for a leaf, (LAYOUT_DICT, keys, nodes) for a dict with str keys, (LAYOUT_TUPLE, nodes),
    (LAYOUT_LIST, nodes), (LAYOUT_NAMEDTUPLE, its class, nodes), (LAYOUT_NONE,); False for anything
    else (it stays on the Python path)."""
    if treedef.kind == "leaf":
        return None
    if treedef.kind == "none":
        return (_dispatch.LAYOUT_NONE,)
    children = tuple(_layout_node(child) for child in treedef.children)
    if any(child is False for child in children):
        return False
    if treedef.kind == "dict":
        return (_dispatch.LAYOUT_DICT, treedef.keys, children) if all(type(k) is str for k in treedef.keys) else False
    if treedef.kind == "namedtuple":
        return (_dispatch.LAYOUT_NAMEDTUPLE, treedef.node_type, children)
    return (_dispatch.LAYOUT_TUPLE if treedef.kind == "tuple" else _dispatch.LAYOUT_LIST, children)


def _output_packing(treedef):
    """How the dispatcher returns the outputs: one array, a flat tuple or list (built in C), or a
    function of the list of outputs building any other structure."""
    if treedef.kind == "leaf":
        return "leaf"
    if treedef.kind in ("tuple", "list") and all(child.kind == "leaf" for child in treedef.children):
        return treedef.kind
    return _unflattener(treedef)


def _unflattener(treedef):
    """`outs -> pytree.unflatten(treedef, outs)` as one Python expression (5x faster than walking
    the treedef on every call); the walk itself when a dict key is not a plain str or int.
    Namedtuple classes are passed in by name (nt0, nt1, ...)."""
    leaves = iter(range(treedef.num_leaves))
    classes: dict = {}

    def expression(tree) -> str | None:
        if tree.kind == "leaf":
            return f"o[{next(leaves)}]"
        if tree.kind == "none":
            return "None"
        items = [expression(child) for child in tree.children]
        if None in items or (tree.kind == "dict" and any(type(k) not in (str, int) for k in tree.keys)):
            return None
        if tree.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {item}" for k, item in zip(tree.keys, items)) + "}"
        if tree.kind == "namedtuple":
            name = classes.setdefault(tree.node_type, f"nt{len(classes)}")
            return f"{name}({', '.join(items)})"
        return f"[{', '.join(items)}]" if tree.kind == "list" else f"({''.join(i + ', ' for i in items)})"

    text = expression(treedef)
    if text is None:
        return functools.partial(pytree.unflatten, treedef)
    namespace = {name: cls for cls, name in classes.items()}
    return eval(f"lambda o: {text}", namespace)  # noqa: S307 - built from our treedef; keys are str/int reprs


class Lowered:
    """What `jitted.lower(*args)` returns: the optimized IR, the generated C, and compile()."""

    def __init__(self, jitted: "Jitted", traced: TracedFunction, arg_paths: list[str] | None = None):
        self._jitted = jitted
        self.traced = traced
        self.arg_paths = arg_paths  # params['W1'], x, ...: how errors name the arguments
        self._executable = None

    @property
    def traced_ir(self) -> str:
        return str(self.traced.graph)

    def compile(self):
        if self._executable is None:
            from .runtime.executable import build_executable

            self._executable = build_executable(self.traced.graph, name=self._jitted.__name__,
                                                arg_paths=self.arg_paths)
        return self._executable

    @property
    def ir(self) -> str:
        return self.compile().ir_text

    @property
    def c_source(self) -> str:
        return self.compile().c_source

    def __repr__(self) -> str:
        return f"<Lowered {self._jitted.__name__}>\n{self.ir}"


class Jitted(_CallBase):
    """A function compiled per signature. Calls inside another trace are inlined.

    With the C extension, a call whose arguments (positional or keyword) are ndarrays or Python
    floats, alone or nested in dicts, tuples, namedtuples and lists, matching a signature compiled
    before, runs entirely in C
    (tracejit._dispatch.Dispatcher.__call__); every other call goes to `_call_python`, which adds
    its signature to the dispatcher's table when eligible (see _fast_entry)."""

    def __init__(self, fun, static_argnums=(), static_argnames=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        self.static_argnames = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        self._cache: dict = {}
        self._last_treedef = None  # argument structure of the previous call: checked before flattening anew

    def __get__(self, obj, objtype=None):  # usable on methods
        return self if obj is None else functools.partial(self, obj)

    def _call_python(self, *args, **kwargs):
        if is_tracing():
            return self.fun(*args, **kwargs)
        dyn_args, dyn_kwargs, static = _split_static(args, kwargs, self.static_argnums, self.static_argnames)
        leaves, treedef = self._flatten_arguments((dyn_args, dyn_kwargs))
        try:
            key = (treedef, tuple(map(_leaf_spec, leaves)), static)
        except DTypeError as e:
            raise self._leaf_error(args, kwargs, leaves, e) from None
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._compile(args, kwargs, key)
        if compiled.fast is not None:
            self._fast_add(compiled.fast)  # the next such call runs in C
        return compiled(leaves)

    def _flatten_arguments(self, tree) -> tuple[list, "pytree.TreeDef"]:
        """Leaves and structure; a training loop passes the same structure every call, so matching
        the previous one (no TreeDef built) is tried first."""
        treedef = self._last_treedef
        leaves = pytree.flatten_as(tree, treedef) if treedef is not None else None
        if leaves is None:
            leaves, treedef = pytree.flatten(tree)
            self._last_treedef = treedef
        return leaves, treedef

    if _CallBase is object:  # no C dispatcher: this is the call
        __call__ = _call_python

    def _leaf_error(self, args, kwargs, leaves, error: DTypeError) -> DTypeError:
        """The DTypeError of the first unsupported leaf, naming where the user passed it."""
        for path, leaf in zip(self._paths(args, kwargs), leaves):
            try:
                ArgSpec.of(leaf)
            except DTypeError as e:
                return DTypeError(f"{self.__name__}: argument {path} ({type(leaf).__name__}): {e}")
        return error

    def _trace(self, args, kwargs) -> TracedFunction:
        dyn_args, dyn_kwargs, static = _split_static(args, kwargs, self.static_argnums, self.static_argnames)
        nargs = len(args)

        def flat_fun(dargs, dkwargs):
            full_args, full_kwargs = _rebuild(dargs, dkwargs, static, nargs)
            return self.fun(*full_args, **full_kwargs)

        names = _arg_names(self.fun, args, kwargs, static)
        return trace(lambda a, k: flat_fun(a, k), (dyn_args, dyn_kwargs), name=self.__name__, arg_names=names)

    def _compile(self, args, kwargs, key):
        self._explain_retrace(key, args, kwargs)
        leaves = pytree.flatten(_split_static(args, kwargs, self.static_argnums, self.static_argnames)[:2])[0]
        try:
            specs = tuple(ArgSpec.of(leaf) for leaf in leaves)
        except DTypeError as e:
            raise self._leaf_error(args, kwargs, leaves, e) from None
        lowered = self.lower(*args, **kwargs)
        executable = lowered.compile()
        compiled = _Compiled(lowered.traced, executable, specs)
        compiled.fast = _fast_entry(key, compiled)
        self._cache[key] = compiled
        from . import dump  # imported on the first compile: hashlib, json, tempfile stay out of `import tracejit`

        dump.record(self, key, lowered)  # TRACEJIT_DUMP / `tracejit dump SCRIPT.py`; no-op otherwise
        return compiled

    def _explain_retrace(self, key, args, kwargs) -> None:
        if not self._cache:
            return
        previous = next(reversed(self._cache))
        change = _describe_change(previous, key, self._paths(args, kwargs))
        import logging

        logging.getLogger("tracejit").info("tracejit: recompiling %s: %s", self.__name__, change)
        if len(self._cache) + 1 == MANY_SIGNATURES:
            warnings.warn(
                f"tracejit: {self.__name__} has been compiled for {MANY_SIGNATURES} different signatures "
                f"(last change: {change}). Shapes, dtypes and static arguments that "
                "change from call to call each cost a compile; pad or bucket shapes, or mark arguments static.",
                stacklevel=3,
            )

    def lower(self, *args, **kwargs) -> Lowered:
        return Lowered(self, self._trace(args, kwargs), self._paths(args, kwargs))

    def _paths(self, args, kwargs) -> list[str]:
        static = _split_static(args, kwargs, self.static_argnums, self.static_argnames)[2]
        return _arg_paths(self.fun, args, kwargs, static)


def _describe_change(old, new, paths) -> str:
    (otree, ospecs, ostatic), (ntree, nspecs, nstatic) = old, new
    if otree != ntree:
        return f"argument structure changed from {otree!r} to {ntree!r}"
    if ostatic != nstatic:
        return f"static arguments changed from {ostatic!r} to {nstatic!r}"
    for path, a, b in zip(paths, ospecs, nspecs):
        if a != b:
            return f"argument {path} changed from {_spec_text(a)} to {_spec_text(b)}"
    return "signature changed"


def _spec_text(spec) -> str:
    if isinstance(spec, type):
        return f"Python {spec.__name__}"
    shape, char = spec
    return f"{np.dtype(char)}{list(shape)}"


def _arg_names(fun, args, kwargs, static) -> list[str] | None:
    """IR input names from the function's parameter names (x, params_W1, ...)."""
    named = _named_dynamic_args(fun, args, kwargs, static)
    if named is None:
        return None
    return [name for base, arg in named for name in _leaf_names(base, arg)]


def _arg_paths(fun, args, kwargs, static) -> list[str]:
    """How the user spells each dynamic leaf (x, params['W1'], ...), for error messages."""
    named = _named_dynamic_args(fun, args, kwargs, static, unknown_as_argn=True)
    return [base + path for base, arg in named for path in pytree.leaf_paths(pytree.flatten(arg)[1])]


def _named_dynamic_args(fun, args, kwargs, static, unknown_as_argn=False) -> list[tuple[str, object]] | None:
    """(parameter name, value) of each dynamic argument, in flattening order. Without a readable
    signature: None, or arg0, arg1, ... with `unknown_as_argn`."""
    import inspect

    try:
        params = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        if not unknown_as_argn:
            return None
        params = []
    static_keys = {k for k, _ in static}
    named = [(params[n] if n < len(params) else f"arg{n}", arg) for n, arg in enumerate(args) if n not in static_keys]
    return named + [(k, kwargs[k]) for k in sorted(kwargs) if k not in static_keys]


def _leaf_names(base, tree) -> list[str]:
    return ["_".join((base,) + keys) for keys in pytree.leaf_keys(pytree.flatten(tree)[1])]


def jit(fun=None, *, static_argnums=(), static_argnames=()):
    """Compile `fun` to C per input signature. Usable as @jit and @jit(static_argnums=...)."""
    if fun is None:
        return lambda f: Jitted(f, static_argnums, static_argnames)
    return Jitted(fun, static_argnums, static_argnames)


# ---- derivatives: grad, value_and_grad, vjp, make_ir (the graph work is in autodiff/) ------
def value_and_grad(fun, argnums=0, has_aux=False):
    """fun's value and its gradient with respect to `argnums`, from a derivative graph (IR to IR).

    Returns `(value, grads)`, or `((value, aux), grads)` with has_aux. Gradients mirror the pytree
    and dtype of each differentiated argument; a tuple of them when argnums is a tuple.
    """
    from .autodiff.transforms import normalize_argnums

    nums = normalize_argnums(argnums, "value_and_grad")

    def value_and_grad_fun(*args, **kwargs):
        return _value_and_grad(fun, args, kwargs, nums, isinstance(argnums, int), has_aux)

    _name_wrapper(value_and_grad_fun, fun, "value_and_grad")
    return value_and_grad_fun


def grad(fun, argnums=0, has_aux=False):
    """The gradient of a scalar function with respect to `argnums`; `(grads, aux)` with has_aux."""
    value_and_grad_fun = value_and_grad(fun, argnums, has_aux)

    def grad_fun(*args, **kwargs):
        value, grads = value_and_grad_fun(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    _name_wrapper(grad_fun, fun, "grad")
    return grad_fun


def vjp(fun, *primals, has_aux=False):
    """`(out, vjp_fn)` (or `(out, vjp_fn, aux)`): vjp_fn(cotangent) returns one gradient per primal,
    as a tuple. Integer and bool primals get zero gradients of their own dtype."""
    from .autodiff.transforms import DiffArgs, split_outputs, trace_call
    from .autodiff.vjp import vjp_graph
    from .ir.graph import Graph

    diff_args = DiffArgs.of(fun, primals, {})
    nums = tuple(range(len(primals)))
    traced = trace_call(fun, diff_args, _fun_name(fun), _arg_names(fun, primals, {}, ()))
    out_tree, aux_tree = split_outputs(traced, has_aux, "vjp")
    n_out = out_tree.num_leaves
    joint = vjp_graph(traced.graph, diff_args.wrt(nums), seeds=range(n_out), name=f"vjp_{_fun_name(fun)}")
    inputs = list(diff_args.leaves) + list(traced.captured)
    outs = _run_graph(traced.graph, inputs, traced.out_weak)
    grads_graph = Graph(joint.inputs, joint.nodes, joint.outputs[len(traced.graph.outputs):], joint.name, joint.notes)
    if not is_tracing():  # eager: run the passes once, not at every vjp_fn call
        from .passes.pipeline import optimize

        grads_graph = optimize(grads_graph)
    out_values = traced.graph.outputs[:n_out]

    def vjp_fn(cotangent):
        ct_leaves = _cotangent_leaves(cotangent, out_tree, out_values)
        grads = _run_graph(grads_graph, inputs + ct_leaves, _weak_flags(diff_args.leaves), optimized=True)
        return diff_args.grads_tree(grads, nums, single=False)

    out = pytree.unflatten(out_tree, outs[:n_out])
    if has_aux:
        return out, vjp_fn, pytree.unflatten(aux_tree, outs[n_out:])
    return out, vjp_fn


class IR:
    """What `tj.make_ir(fun)(*args)` returns: str() is the IR text; `.graph`; `.python()`."""

    def __init__(self, graph):
        self.graph = graph

    def __str__(self) -> str:
        return str(self.graph)

    __repr__ = __str__

    def python(self) -> str:
        """The graph as readable numpy source: one statement per node, runnable."""
        from .ir.python import to_python

        return to_python(self.graph)


def make_ir(fun, *, static_argnums=(), static_argnames=(), optimize=True):
    """`make_ir(fun)(*args)` traces fun (forward and, where fun calls grad, backward) and returns
    an IR object. optimize=True shows the graph after simplify, CSE and DCE (what jit compiles)."""

    def traced_ir(*args, **kwargs):
        from .passes.pipeline import optimize as run_passes

        traced = Jitted(fun, static_argnums, static_argnames)._trace(args, kwargs)
        return IR(run_passes(traced.graph) if optimize else traced.graph)

    return traced_ir


def _value_and_grad(fun, args, kwargs, nums, single, has_aux):
    from .autodiff.transforms import DiffArgs, check_scalar_output, split_outputs, trace_call
    from .autodiff.vjp import vjp_graph

    what = "grad" if not has_aux else "grad(has_aux=True)"
    diff_args = DiffArgs.of(fun, args, kwargs)
    diff_args.check_argnums(nums, what)
    nums = tuple(n % len(args) for n in nums)
    diff_args.check_float(nums, what)
    traced = trace_call(fun, diff_args, _fun_name(fun), _arg_names(fun, args, kwargs, ()))
    out_tree, _ = split_outputs(traced, has_aux, what)
    check_scalar_output(traced, out_tree, has_aux, what)
    wrt = diff_args.wrt(nums)
    joint = vjp_graph(traced.graph, wrt, seeds=[0], ones=True, name=f"grad_{_fun_name(fun)}")
    weak = list(traced.out_weak) + [_weak_flags(diff_args.leaves)[i] for i in wrt]
    outs = _run_graph(joint, list(diff_args.leaves) + list(traced.captured), weak)
    n_fwd = len(traced.graph.outputs)
    value = pytree.unflatten(traced.out_treedef, outs[:n_fwd])
    return value, diff_args.grads_tree(outs[n_fwd:], nums, single)


def _run_graph(graph, inputs, weak, optimized=False):
    """Inside a trace, inline `graph` and return tracers; otherwise evaluate it (after the passes,
    unless already `optimized`) with the reference interpreter and return numpy arrays."""
    from .trace.tracing import bind_graph, current_trace
    from .trace.tracer import Tracer, to_value

    if is_tracing():
        tr = current_trace()
        outs = bind_graph(graph, [to_value(x, tr) for x in inputs], tr)
        return [Tracer(tr, v, w) for v, w in zip(outs, weak)]
    from .ir.interpret import evaluate
    from .passes.pipeline import optimize

    graph = graph if optimized else optimize(graph)
    return [np.array(o) for o in evaluate(graph, [np.asarray(x) for x in inputs])]


def _cotangent_leaves(cotangent, out_tree, out_values) -> list:
    """The user's cotangent as leaves with the outputs' shapes and dtypes (checked, then cast)."""
    from .errors import ShapeError
    from .trace.tracer import Tracer

    leaves, tree = pytree.flatten(cotangent)
    if tree != out_tree:
        raise TypeError(f"vjp_fn: the cotangent has structure {tree!r}, but the function's output has {out_tree!r}")
    coerced = []
    for leaf, value in zip(leaves, out_values):
        shape = tuple(leaf.shape) if isinstance(leaf, Tracer) else np.shape(leaf)
        if shape != tuple(value.shape):
            raise ShapeError(f"vjp_fn: cotangent of shape {shape} for an output of type {value.type_str}")
        if isinstance(leaf, Tracer):
            coerced.append(leaf if leaf.dtype == value.dtype else leaf.astype(value.dtype))
        else:
            coerced.append(np.asarray(leaf, dtype=value.dtype))
    return coerced


def _weak_flags(leaves) -> list[bool]:
    return [ArgSpec.of(leaf).weak for leaf in leaves]


def _fun_name(fun) -> str:
    return getattr(fun, "__name__", "fun").replace("<lambda>", "lambda")


def _name_wrapper(wrapper, fun, prefix: str) -> None:
    """The wrapper looks like fun to inspect (parameter names name the IR inputs), named prefix_fun."""
    functools.update_wrapper(wrapper, fun)
    wrapper.__name__ = wrapper.__qualname__ = f"{prefix}_{_fun_name(fun)}"
