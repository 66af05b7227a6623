"""The front-end table: numpy callables, ufuncs and methods -> primitives.

Promotion follows numpy exactly: ufunc.resolve_dtypes with Python scalar types for weak
operands is NEP 50 itself. Composite numpy functions (mean, var, clip, stack, ...) decompose
here into primitives. A numpy function missing from the table raises UnsupportedOperation.
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError, UnsupportedOperation, user_location, user_location_long
from ..ops.shape_util import normalize_axes, size_of

UFUNC_PRIMS = {
    np.add: "add", np.subtract: "subtract", np.multiply: "multiply", np.true_divide: "divide",
    np.power: "power", np.maximum: "maximum", np.minimum: "minimum", np.negative: "negative",
    np.absolute: "abs", np.fabs: "abs", np.exp: "exp", np.log: "log", np.log1p: "log1p",
    np.expm1: "expm1", np.sqrt: "sqrt", np.square: "square", np.reciprocal: "reciprocal",
    np.tanh: "tanh", np.sinh: "sinh", np.cosh: "cosh", np.sin: "sin", np.cos: "cos",
    np.tan: "tan", np.arctan: "arctan", np.sign: "sign", np.floor: "floor", np.ceil: "ceil",
    np.trunc: "trunc", np.rint: "rint", np.floor_divide: "floor_divide", np.remainder: "remainder",
    np.exp2: "exp2", np.log2: "log2", np.log10: "log10", np.arcsin: "arcsin", np.arccos: "arccos",
    np.arcsinh: "arcsinh", np.arccosh: "arccosh", np.arctanh: "arctanh", np.cbrt: "cbrt",
    np.arctan2: "arctan2", np.hypot: "hypot", np.logical_xor: "logical_xor",
    np.isnan: "isnan", np.isinf: "isinf", np.isfinite: "isfinite", np.fmax: "fmax", np.fmin: "fmin",
    np.copysign: "copysign",
    np.less: "less", np.less_equal: "less_equal", np.greater: "greater",
    np.greater_equal: "greater_equal", np.equal: "equal", np.not_equal: "not_equal",
    np.logical_and: "logical_and", np.logical_or: "logical_or", np.logical_not: "logical_not",
}
# bitwise ops on bool arrays are numpy's logical ops (mask & mask)
BOOL_ONLY_UFUNCS = {np.bitwise_and: "logical_and", np.bitwise_or: "logical_or", np.invert: "logical_not"}
# numpy's bool loops ('??->?') of arithmetic ufuncs: add is or, multiply is and, abs is the identity
BOOL_LOOPS = {np.add: "logical_or", np.multiply: "logical_and", np.maximum: "logical_or",
              np.minimum: "logical_and", np.fmax: "logical_or", np.fmin: "logical_and", np.absolute: None}
REDUCE_UFUNCS = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}


# ---- plumbing -------------------------------------------------------------------------------
def _trace():
    from .tracing import current_trace

    return current_trace()


def emit(prim: str, *values, **params):
    """Emit a node in the current trace, stamped with the user's source line."""
    loc = user_location()
    try:
        return _trace().builder.emit(prim, *values, loc=loc, **params)
    except (ShapeError, DTypeError) as exc:
        if loc and loc not in str(exc):
            raise type(exc)(f"{exc} (at {user_location_long()})") from None
        raise


def _is_tracer(x) -> bool:
    from .tracer import Tracer

    return isinstance(x, Tracer)


def _is_weak(x) -> bool:
    if _is_tracer(x):
        return x.weak
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def _dtype_of(x) -> np.dtype:
    if _is_tracer(x):
        return x.dtype
    if _is_weak(x):
        return dtypes.python_scalar_dtype(x)
    return dtypes.canonical(np.asarray(x).dtype)


def _shape_of(x) -> tuple:
    return x.shape if _is_tracer(x) else np.shape(x)


def _numpy_dtype_of(x) -> np.dtype:
    """The dtype numpy would see: an argument's own narrow dtype (uint8), not the one we widen it to."""
    return x.narrow if _is_tracer(x) and x.narrow is not None else _dtype_of(x)


def _weak_descriptor(x):
    """What ufunc.resolve_dtypes needs for x: a dtype, or the Python type for a weak operand."""
    dt = _numpy_dtype_of(x)
    if _is_weak(x) and dt.kind in "fi":
        return float if dt.kind == "f" else int
    return dt


def _is_python_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, (bool, np.generic))


def _value(x, dtype=None):
    """x as a Value of the current trace, cast to `dtype` if given."""
    from .tracer import to_value

    if dtype is not None and not _is_tracer(x):
        if isinstance(x, (np.ndarray, np.generic)) or _is_weak(x):
            return _trace().builder.constant(np.asarray(x).astype(dtype))
    value = to_value(x)
    if dtype is not None and value.dtype != dtype:
        value = emit("astype", value, dtype=np.dtype(dtype))
    return value


def _wrap(value, weak=False):
    from .tracer import wrap

    return wrap(value, weak)


def keep_narrow(result, source):
    """`result`, a rearrangement of `source` (reshape, transpose, indexing), keeps the narrow
    dtype numpy gives `source` (an uint8 argument stays uint8 to numpy's promotions)."""
    if _is_tracer(result) and _is_tracer(source) and source.narrow is not None:
        result.narrow = source.narrow
    return result


def _require_absent(name, **kwargs):
    for key, val in kwargs.items():
        if val is not None and val is not False and val is not np._NoValue:
            raise UnsupportedOperation(name, f"argument {key}=")


# ---- ufuncs ---------------------------------------------------------------------------------
def dispatch_ufunc(ufunc, method, inputs, kwargs):
    if method == "reduce" and ufunc in REDUCE_UFUNCS:
        return _ufunc_reduce(ufunc, inputs, kwargs)
    if method != "__call__":
        raise UnsupportedOperation(f"{ufunc.__name__}.{method}")
    if ufunc is np.matmul:
        _require_absent("matmul", **{k: v for k, v in kwargs.items()})
        return matmul(*inputs)
    out_dtype = kwargs.pop("dtype", None)
    _require_absent(ufunc.__name__, **kwargs)
    if ufunc in COMPOSITE_UFUNCS:
        try:
            require_supported_result(ufunc, inputs, _resolve(ufunc, inputs)[-1])
        except DTypeError as exc:
            if "is not defined for" not in str(exc):
                raise  # no loop at all: the composite's own pieces say so
        result = COMPOSITE_UFUNCS[ufunc](*inputs)
    else:
        result = apply_ufunc(ufunc, inputs)
    return astype(result, out_dtype) if out_dtype is not None else result


def apply_ufunc(ufunc, operands):
    """Record ufunc(*operands) with numpy's promotion and broadcasting."""
    if ufunc is np.positive:
        return operands[0]
    prim = UFUNC_PRIMS.get(ufunc)
    if prim is None and ufunc in BOOL_ONLY_UFUNCS and all(_dtype_of(x) == dtypes.bool_ for x in operands):
        prim = BOOL_ONLY_UFUNCS[ufunc]
    if prim is None:
        raise UnsupportedOperation(ufunc.__name__)
    resolved = _resolve(ufunc, operands)
    require_supported_result(ufunc, operands, resolved[-1])
    in_dtypes = [dtypes.canonical(dt) for dt in resolved[: ufunc.nin]]
    if ufunc in BOOL_LOOPS and all(dt == dtypes.bool_ for dt in resolved):
        prim = BOOL_LOOPS[ufunc]
        if prim is None:
            return _wrap(_value(operands[0], dtypes.bool_), weak=_is_weak(operands[0]))
    if ufunc in COMPARISONS:
        decided = _comparison_beyond_int_range(ufunc, operands, in_dtypes)
        if decided is not None:
            return decided
        in_dtypes = _compare_int_arguments_wide(operands, in_dtypes)
    _check_static_operands(ufunc, operands, in_dtypes)
    values = [_value(x, dt) for x, dt in zip(operands, in_dtypes)]
    out = emit(prim, *values)
    out_dtype = dtypes.canonical(resolved[-1])
    if out.dtype != out_dtype:  # e.g. a float-only op on ints resolved to float64 inputs already
        out = emit("astype", out, dtype=out_dtype)
    return _wrap(out, weak=all(_is_weak(x) for x in operands))


def _resolve(ufunc, operands) -> tuple:
    """numpy's loop dtypes for these operands (NEP 50: Python scalars are weak), or DTypeError."""
    try:
        # all operands weak (Python scalars, loop counters): numpy has no rule for (int, int) comparisons
        describe = _numpy_dtype_of if all(_is_weak(x) for x in operands) else _weak_descriptor
        return ufunc.resolve_dtypes(tuple(describe(x) for x in operands) + (None,) * ufunc.nout)
    except Exception as exc:
        types = ", ".join(str(_dtype_of(x)) for x in operands)
        raise DTypeError(f"np.{ufunc.__name__} is not defined for ({types}): {exc} (at {user_location()})") from None


def require_supported_result(ufunc, operands, result_dtype) -> None:
    """DTypeError where numpy's result is a dtype tracejit does not compute in (np.square of bools
    is int8, np.exp of bools float16): widening it would change later promotions and values."""
    if np.dtype(result_dtype) not in dtypes.SUPPORTED:
        types = ", ".join(type(x).__name__ if _is_weak(x) and not _is_tracer(x) else str(_numpy_dtype_of(x))
                          for x in operands)
        raise DTypeError(f"np.{ufunc.__name__} of ({types}) gives {np.dtype(result_dtype)} in numpy, a dtype tracejit "
                         f"does not compute in (bool, int32, int64, float32, float64); convert first, e.g. "
                         f"x.astype(np.int32) or x.astype(np.float32) (at {user_location()})")


def _check_static_operands(ufunc, operands, in_dtypes) -> None:
    """numpy's errors for operands known while tracing: its OverflowError (NEP 50) for a Python int
    that the ufunc's integer loop cannot hold (`int32_array + 2**40`), where a cast would wrap
    around silently (np.where does wrap such an int, in numpy too); its ValueError for a negative
    constant exponent of an integer power."""
    for x, dtype in zip(operands, in_dtypes):
        if _is_python_int(x) and np.dtype(dtype).kind == "i":
            try:
                dtypes.check_python_int(x, dtype)
            except OverflowError as exc:
                raise OverflowError(f"np.{ufunc.__name__}: {exc} (at {user_location()})") from None
    if ufunc is not np.power or in_dtypes[-1].kind != "i" or _is_tracer(operands[-1]):
        return
    if np.any(np.asarray(operands[-1]) < 0):
        raise ValueError(f"Integers to negative integer powers are not allowed. (at {user_location()})")


def _compare_int_arguments_wide(operands, in_dtypes):
    """A Python int argument of the jitted function (a weak int64 tracer) compared with an int32
    array: compare in int64, where numpy's exact answer for an int beyond int32 (`x < 2**40`)
    comes out by itself, instead of casting the int to int32 (which the call would have to
    refuse with OverflowError)."""
    weak_int_argument = any(_is_tracer(x) and x.weak and x.dtype == dtypes.int64 for x in operands)
    if weak_int_argument and all(dt == dtypes.int32 for dt in in_dtypes):
        return [dtypes.int64] * len(in_dtypes)
    return in_dtypes


COMPARISONS = (np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal)


def _comparison_beyond_int_range(ufunc, operands, in_dtypes):
    """`int_array < 2**40`: a Python int outside an integer array's dtype compares the same way
    with every element, and numpy 2 answers exactly (arithmetic with it raises OverflowError
    instead, see _check_static_operands). The answer, numpy's own on the dtype's extremes, broadcast; None if
    no operand is such an int."""
    ints = [n for n, (x, dt) in enumerate(zip(operands, in_dtypes)) if _is_python_int(x) and dt.kind == "i"
            and not np.iinfo(dt).min <= x <= np.iinfo(dt).max]
    others = [x for n, x in enumerate(operands) if n not in ints]
    if len(ints) != 1 or len(others) != 1 or _dtype_of(others[0]).kind != "i":
        return None
    info = np.iinfo(_dtype_of(others[0]))
    extremes = np.array([info.min, info.max], _dtype_of(others[0]))
    probe = [operands[n] if n in ints else extremes for n in range(len(operands))]
    answer = ufunc(*probe)
    if answer[0] != answer[1]:  # cannot happen for an int beyond both extremes
        return None
    shape = np.broadcast_shapes(*(_shape_of(x) for x in operands))
    scalar = _trace().builder.constant(np.asarray(answer[0], dtypes.bool_), loc=user_location())
    return _wrap(emit("broadcast_to", scalar, shape=shape) if shape else scalar)


def _ufunc_reduce(ufunc, inputs, kwargs):
    (x,) = inputs
    axis = kwargs.pop("axis", 0)
    keepdims = kwargs.pop("keepdims", False)
    dtype = kwargs.pop("dtype", None)
    _require_absent(f"{ufunc.__name__}.reduce", **kwargs)
    return _reduction(REDUCE_UFUNCS[ufunc], x, axis, keepdims, dtype)


# ---- reductions -----------------------------------------------------------------------------
def _accumulator_dtype(name, dtype, requested):
    if requested is not None:
        return dtypes.canonical(requested)
    if name in ("sum", "prod") and (dtype == dtypes.bool_ or dtype == dtypes.int32):
        return dtypes.int64  # numpy sums small integers in the platform integer
    return dtype


NUMPY_REDUCTIONS = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean,
                    "var": np.var, "std": np.std, "cumsum": np.cumsum}


def _refuse_narrow_reduction(name, x, dtype) -> None:
    """DTypeError where numpy reduces a narrow argument into a dtype we do not compute in (np.sum
    of uint8 is uint64, np.max of int8 is int8, np.mean of float16 is float16)."""
    if dtype is not None or not _is_tracer(x) or x.narrow is None or name not in NUMPY_REDUCTIONS:
        return
    numpy_result = NUMPY_REDUCTIONS[name](np.zeros(1, x.narrow)).dtype
    if numpy_result not in dtypes.SUPPORTED:
        raise DTypeError(f"np.{name} of {x.narrow} gives {numpy_result} in numpy, a dtype tracejit does not compute "
                         f"in (bool, int32, int64, float32, float64); convert first, e.g. x.astype(np.int64) "
                         f"(at {user_location()})")


def _reduction(name, x, axis, keepdims, dtype=None):
    _refuse_narrow_reduction(name, x, dtype)
    x_value = _value(x)
    axes = normalize_axes(axis, len(x_value.shape))
    acc = _accumulator_dtype(name, x_value.dtype, dtype)
    if x_value.dtype != acc:
        x_value = emit("astype", x_value, dtype=acc)
    out = emit(name, x_value, axes=axes) if axes else x_value
    return _wrap(_keepdims(out, x_value.shape, axes) if keepdims else out)


def _keepdims(value, in_shape, axes):
    shape = tuple(1 if i in axes else d for i, d in enumerate(in_shape))
    return emit("reshape", value, shape=shape) if shape != value.shape else value


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _require_absent("sum", out=out, initial=initial, where=where)
    return _reduction("sum", a, axis, keepdims, dtype)


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _require_absent("prod", out=out, initial=initial, where=where)
    return _reduction("prod", a, axis, keepdims, dtype)


def amax(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    _require_absent("max", out=out, initial=initial, where=where)
    return _reduction("max", a, axis, keepdims)


def amin(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    _require_absent("min", out=out, initial=initial, where=where)
    return _reduction("min", a, axis, keepdims)


def cumsum(a, axis=None, dtype=None, out=None):
    """np.cumsum: in the dtype np.sum would use (int64 for bools and int32), flattened for axis=None."""
    _require_absent("cumsum", out=out)
    _refuse_narrow_reduction("cumsum", a, dtype)
    value = _value(a)
    if axis is None:
        value = emit("reshape", value, shape=(value.size,)) if value.ndim != 1 else value
        axis = 0
    (axis,) = normalize_axes(axis, value.ndim)
    acc = _accumulator_dtype("sum", value.dtype, dtype)
    if value.dtype != acc:
        value = emit("astype", value, dtype=acc)
    return _wrap(emit("cumsum", value, axis=axis) if value.shape[axis] > 1 else value)


def any_(a, axis=None, out=None, keepdims=False, *, where=None):
    """np.any: the max of the truth values."""
    _require_absent("any", out=out, where=where)
    return _truth_reduction("max", a, axis, keepdims, identity=False)


def all_(a, axis=None, out=None, keepdims=False, *, where=None):
    """np.all: the min of the truth values."""
    _require_absent("all", out=out, where=where)
    return _truth_reduction("min", a, axis, keepdims, identity=True)


def _truth_reduction(name, a, axis, keepdims, identity):
    truth = astype(a, dtypes.bool_)
    shape = _shape_of(truth)
    axes = normalize_axes(axis, len(shape))
    if _count(shape, axes) == 0 and axes:  # over no elements: the identity, as numpy (max/min refuse)
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keepdims else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        return _wrap(_value(np.full(kept, identity)))
    return _reduction(name, truth, axis, keepdims)


def _arg_reduction(name, a, axis, out, keepdims):
    _require_absent(name, out=out)
    value = _value(a)
    if axis is None:
        flat = emit("reshape", value, shape=(value.size,)) if value.ndim != 1 else value
        result = emit(name, flat, axes=(0,))
        return _wrap(emit("reshape", result, shape=(1,) * value.ndim) if keepdims else result)
    axes = normalize_axes(axis, value.ndim)
    result = emit(name, value, axes=axes)
    return _wrap(_keepdims(result, value.shape, axes) if keepdims else result)


def argmax(a, axis=None, out=None, *, keepdims=False):
    return _arg_reduction("argmax", a, axis, out, keepdims)


def argmin(a, axis=None, out=None, *, keepdims=False):
    return _arg_reduction("argmin", a, axis, out, keepdims)


def _count(shape, axes) -> int:
    return size_of([shape[a] for a in axes])


def _mean_dtype(dtype, requested):
    if requested is not None:
        return dtypes.canonical(requested)
    return dtype if dtypes.is_float(dtype) else dtypes.float64


def _mean_of(x, axis, keepdims, acc):
    total = _reduction("sum", x, axis, keepdims, acc)
    n = _count(_shape_of(x), normalize_axes(axis, len(_shape_of(x))))
    return apply_ufunc(np.true_divide, (total, np.asarray(n, acc)))


def mean(a, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _require_absent("mean", out=out, where=where)
    _refuse_narrow_reduction("mean", a, dtype)
    return _mean_of(a, axis, keepdims, _mean_dtype(_dtype_of(a), dtype))


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    _require_absent("var", out=out, where=where, mean=mean, correction=correction)
    _refuse_narrow_reduction("var", a, dtype)
    acc = _mean_dtype(_dtype_of(a), dtype)
    x = astype(a, acc)
    centered = apply_ufunc(np.subtract, (x, _mean_of(x, axis, True, acc)))
    total = _reduction("sum", apply_ufunc(np.multiply, (centered, centered)), axis, keepdims)
    n = builtins.max(_count(x.shape, normalize_axes(axis, x.ndim)) - ddof, 0)
    return apply_ufunc(np.true_divide, (total, np.asarray(n, acc)))


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    return apply_ufunc(np.sqrt, (var(a, axis, dtype, out, ddof, keepdims, where, mean, correction),))


# ---- shape functions ------------------------------------------------------------------------
def _resolve_reshape(shape, size):
    shape = tuple(operator.index(d) for d in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: can only specify one unknown dimension, got {shape}")
    if -1 in shape:
        known = size_of([d for d in shape if d != -1])
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape array of size {size} into shape {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    return shape


def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        raise UnsupportedOperation("reshape", f"order={order!r}")
    value = _value(a)
    shape = _resolve_reshape(newshape if shape is None else shape, value.size)
    return keep_narrow(_wrap(emit("reshape", value, shape=shape) if shape != value.shape else value, _is_weak(a)), a)


def transpose(a, axes=None):
    value = _value(a)
    perm = tuple(reversed(range(value.ndim))) if axes is None else tuple(p % value.ndim for p in axes)
    if perm == tuple(range(value.ndim)):
        return keep_narrow(_wrap(value), a)
    return keep_narrow(_wrap(emit("transpose", value, perm=perm)), a)


def swapaxes(a, axis1, axis2):
    ndim = len(_shape_of(a))
    perm = list(range(ndim))
    perm[axis1 % ndim], perm[axis2 % ndim] = perm[axis2 % ndim], perm[axis1 % ndim]
    return transpose(a, perm)


def moveaxis(a, source, destination):
    ndim = len(_shape_of(a))
    src = normalize_axes(source, ndim) if isinstance(source, int) else [s % ndim for s in source]
    dst = [destination % ndim] if isinstance(destination, int) else [d % ndim for d in destination]
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def broadcast_to(array, shape, subok=False):
    value = _value(array)
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    return keep_narrow(_wrap(emit("broadcast_to", value, shape=shape) if shape != value.shape else value), array)


def expand_dims(a, axis):
    value = _value(a)
    ndim = value.ndim + (1 if isinstance(axis, int) else len(axis))
    axes = normalize_axes(axis, ndim)
    it = iter(value.shape)
    shape = tuple(1 if i in axes else next(it) for i in range(ndim))
    return keep_narrow(_wrap(emit("reshape", value, shape=shape)), a)


def squeeze(a, axis=None):
    value = _value(a)
    axes = tuple(i for i, d in enumerate(value.shape) if d == 1) if axis is None else normalize_axes(axis, value.ndim)
    if any(value.shape[i] != 1 for i in axes):
        raise ShapeError(f"cannot select an axis to squeeze out which has size not equal to one: {value.shape}")
    shape = tuple(d for i, d in enumerate(value.shape) if i not in axes)
    return keep_narrow(_wrap(emit("reshape", value, shape=shape) if shape != value.shape else value), a)


def ravel(a, order="C"):
    return reshape(a, (-1,), order)


def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _require_absent("concatenate", out=out)
    if axis is None:
        arrays, axis = [ravel(x) for x in arrays], 0
    common = _common_dtype(arrays) if dtype is None else dtypes.canonical(dtype)
    values = [_value(x, common) for x in arrays]
    axis = normalize_axes(axis, values[0].ndim)[0]
    return _wrap(emit("concatenate", *values, axis=axis) if len(values) > 1 else values[0])


def stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _require_absent("stack", out=out)
    arrays = list(arrays)
    shapes = {tuple(_shape_of(x)) for x in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"all input arrays must have the same shape, got {sorted(shapes)}")
    ndim = len(shapes.pop()) + 1
    axis = normalize_axes(axis, ndim)[0]
    return concatenate([expand_dims(x, axis) for x in arrays], axis, dtype=dtype)


def _common_dtype(operands):
    """numpy's common dtype of `operands` (narrow arguments as numpy sees them), or DTypeError
    where that is a dtype tracejit does not compute in (np.where of two uint8 arrays is uint8)."""
    if not any(_is_tracer(x) and x.narrow is not None for x in operands):
        return dtypes.result_type(*[(_dtype_of(x), _is_weak(x)) for x in operands])
    numpy_common = dtypes.numpy_result_type(*[(_numpy_dtype_of(x), _is_weak(x)) for x in operands])
    if numpy_common not in dtypes.SUPPORTED:
        types = ", ".join(str(_numpy_dtype_of(x)) for x in operands)
        raise DTypeError(f"the common dtype of ({types}) is {numpy_common} in numpy, a dtype tracejit does not "
                         f"compute in (bool, int32, int64, float32, float64); convert first, e.g. x.astype(np.int32) "
                         f"(at {user_location()})")
    return numpy_common


def astype(a, dtype):
    value = _value(a)
    requested = np.dtype(dtype).newbyteorder("=")
    if dtypes.canonical(requested) != requested:  # uint8 would wrap values that int32 keeps
        raise DTypeError(f"astype({requested}): {requested} is a dtype tracejit does not compute in (bool, int32, "
                         f"int64, float32, float64); numpy's conversion would wrap or round where a wider one does "
                         f"not (at {user_location()})")
    dtype = dtypes.canonical(dtype)
    return _wrap(emit("astype", value, dtype=dtype) if value.dtype != dtype else value)


# ---- selection and filling ------------------------------------------------------------------
def where(condition, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedOperation("where", "the one-argument form; its result shape depends on the data")
    cond = _value(condition)
    if cond.dtype != dtypes.bool_:
        cond = emit("astype", cond, dtype=dtypes.bool_)
    common = _common_dtype([x, y])
    out = emit("where", cond, _value(x, common), _value(y, common))
    return _wrap(out, _is_weak(x) and _is_weak(y))


def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    _require_absent("clip", out=out)
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    result = a
    if lo is not None:
        result = apply_ufunc(np.maximum, (result, lo))
    if hi is not None:
        result = apply_ufunc(np.minimum, (result, hi))
    return result


def round_(a, decimals=0, out=None):
    """np.round: half to even (rint), at `decimals` places the way numpy does it: rint(x * 10**d) / 10**d.
    Integers stay as they are for decimals >= 0 (bools become floats, as in numpy)."""
    _require_absent("round", out=out)
    if _dtype_of(a) == dtypes.bool_ and decimals != 0:
        raise DTypeError(f"np.round of bools with decimals={decimals}: numpy cannot cast its float64 result back to "
                         f"bool (UFuncTypeError); convert first, e.g. x.astype(np.float32) (at {user_location()})")
    if _dtype_of(a).kind in "iu":
        if decimals < 0:
            raise UnsupportedOperation("round", "negative decimals on integers")
        return a
    if decimals == 0:
        return apply_ufunc(np.rint, (a,))
    scale = 10.0 ** abs(decimals)
    if decimals > 0:
        return apply_ufunc(np.true_divide, (apply_ufunc(np.rint, (apply_ufunc(np.multiply, (a, scale)),)), scale))
    return apply_ufunc(np.multiply, (apply_ufunc(np.rint, (apply_ufunc(np.true_divide, (a, scale)),)), scale))


def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, device=None):
    """An array like `a` (an uint8 argument's is uint8 to numpy's promotions: the result keeps
    that narrow dtype, and the fill value is converted as numpy converts it into uint8)."""
    shape = tuple(_shape_of(a)) if shape is None else tuple(shape)
    narrow = a.narrow if dtype is None and _is_tracer(a) else None
    dtype = dtypes.canonical(dtype if dtype is not None else _dtype_of(a))
    if _is_tracer(fill_value):
        return broadcast_to(astype(fill_value, narrow or dtype), shape)
    if narrow is not None:
        fill_value = np.full_like(np.zeros((), narrow), fill_value)  # numpy's conversion, or its error
    scalar = _trace().builder.constant(np.asarray(fill_value, dtype), loc=user_location())
    result = _wrap(emit("broadcast_to", scalar, shape=shape) if shape else scalar)
    return keep_narrow(result, a) if narrow is not None else result


def zeros_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 0, dtype, shape=shape)


def ones_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 1, dtype, shape=shape)


# ---- products -------------------------------------------------------------------------------
def matmul(a, b):
    common = _common_dtype([a, b])
    av, bv = _value(a, common), _value(b, common)
    if av.ndim == 0 or bv.ndim == 0:
        raise ShapeError("matmul: input operand does not have enough dimensions (use * for scalars)")
    a2 = emit("reshape", av, shape=(1,) + av.shape) if av.ndim == 1 else av
    b2 = emit("reshape", bv, shape=bv.shape + (1,)) if bv.ndim == 1 else bv
    out = emit("matmul", a2, b2)
    shape = out.shape
    if av.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if bv.ndim == 1:
        shape = shape[:-1]
    return _wrap(emit("reshape", out, shape=shape) if shape != out.shape else out)


def dot(a, b, out=None):
    _require_absent("dot", out=out)
    if len(_shape_of(a)) == 0 or len(_shape_of(b)) == 0:
        return apply_ufunc(np.multiply, (a, b))
    if len(_shape_of(a)) > 2 or len(_shape_of(b)) > 2:
        raise UnsupportedOperation("dot", "operands of rank > 2; use np.matmul for stacked matrices")
    return matmul(a, b)


def vdot_like_inner(a, b):
    if len(_shape_of(a)) != 1 or len(_shape_of(b)) != 1:
        raise UnsupportedOperation("inner", "operands of rank > 1")
    return matmul(a, b)


def outer(a, b, out=None):
    _require_absent("outer", out=out)
    return apply_ufunc(np.multiply, (reshape(ravel(a), (-1, 1)), ravel(b)))


def shape(a):
    return tuple(_shape_of(a))


def ndim(a):
    return len(_shape_of(a))


def size(a, axis=None):
    s = _shape_of(a)
    return size_of(s) if axis is None else s[axis]


# numpy function -> implementation (only what __array_function__ dispatches; ufuncs go above)
FUNCTIONS = {
    np.sum: sum, np.prod: prod, np.max: amax, np.amax: amax, np.min: amin, np.amin: amin,
    np.argmax: argmax, np.argmin: argmin, np.mean: mean, np.var: var, np.std: std, np.any: any_, np.all: all_,
    np.cumsum: cumsum,
    np.reshape: reshape, np.transpose: transpose, np.swapaxes: swapaxes, np.moveaxis: moveaxis,
    np.broadcast_to: broadcast_to, np.expand_dims: expand_dims, np.squeeze: squeeze, np.ravel: ravel,
    np.concatenate: concatenate, np.stack: stack, np.where: where, np.clip: clip,
    np.round: round_, np.around: round_,
    np.zeros_like: zeros_like, np.ones_like: ones_like, np.full_like: full_like, np.empty_like: zeros_like,
    np.dot: dot, np.inner: vdot_like_inner, np.outer: outer, np.shape: shape, np.ndim: ndim, np.size: size,
    np.astype: astype,
}
# ufuncs recorded as compositions of primitives rather than one primitive each (numpy_compose.py)
COMPOSITE_UFUNCS: dict = {}


def dispatch_function(func, args, kwargs):
    impl = FUNCTIONS.get(func)
    if impl is None:
        raise UnsupportedOperation(func.__name__)
    return impl(*args, **kwargs)


from . import numpy_compose  # noqa: E402,F401 - adds its functions to FUNCTIONS and COMPOSITE_UFUNCS
