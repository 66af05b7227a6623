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
    np.isnan: "isnan", np.isinf: "isinf", np.isfinite: "isfinite",
    np.less: "less", np.less_equal: "less_equal", np.greater: "greater",
    np.greater_equal: "greater_equal", np.equal: "equal", np.not_equal: "not_equal",
    np.logical_and: "logical_and", np.logical_or: "logical_or", np.logical_not: "logical_not",
}
# bitwise ops on bool arrays are numpy's logical ops (mask & mask)
BOOL_ONLY_UFUNCS = {np.bitwise_and: "logical_and", np.bitwise_or: "logical_or", np.invert: "logical_not"}
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


def _weak_descriptor(x):
    """What ufunc.resolve_dtypes needs for x: a dtype, or the Python type for a weak operand."""
    dt = _dtype_of(x)
    if _is_weak(x) and dt.kind in "fi":
        return float if dt.kind == "f" else int
    return dt


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
    result = COMPOSITE_UFUNCS[ufunc](*inputs) if ufunc in COMPOSITE_UFUNCS else apply_ufunc(ufunc, inputs)
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
    try:
        # all operands weak (Python scalars, loop counters): numpy has no rule for (int, int) comparisons
        describe = _dtype_of if all(_is_weak(x) for x in operands) else _weak_descriptor
        resolved = ufunc.resolve_dtypes(tuple(describe(x) for x in operands) + (None,) * ufunc.nout)
    except Exception as exc:
        types = ", ".join(str(_dtype_of(x)) for x in operands)
        raise DTypeError(f"np.{ufunc.__name__} is not defined for ({types}): {exc} (at {user_location()})") from None
    in_dtypes = [dtypes.canonical(dt) for dt in resolved[: ufunc.nin]]
    values = [_value(x, dt) for x, dt in zip(operands, in_dtypes)]
    out = emit(prim, *values)
    out_dtype = dtypes.canonical(resolved[-1])
    if out.dtype != out_dtype:  # e.g. a float-only op on ints resolved to float64 inputs already
        out = emit("astype", out, dtype=out_dtype)
    return _wrap(out, weak=all(_is_weak(x) for x in operands))


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


def _reduction(name, x, axis, keepdims, dtype=None):
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
    return _mean_of(a, axis, keepdims, _mean_dtype(_dtype_of(a), dtype))


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    _require_absent("var", out=out, where=where, mean=mean, correction=correction)
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
    return _wrap(emit("reshape", value, shape=shape) if shape != value.shape else value, _is_weak(a))


def transpose(a, axes=None):
    value = _value(a)
    perm = tuple(reversed(range(value.ndim))) if axes is None else tuple(a % value.ndim for a in axes)
    if perm == tuple(range(value.ndim)):
        return _wrap(value)
    return _wrap(emit("transpose", value, perm=perm))


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
    return _wrap(emit("broadcast_to", value, shape=shape) if shape != value.shape else value)


def expand_dims(a, axis):
    value = _value(a)
    ndim = value.ndim + (1 if isinstance(axis, int) else len(axis))
    axes = normalize_axes(axis, ndim)
    it = iter(value.shape)
    shape = tuple(1 if i in axes else next(it) for i in range(ndim))
    return _wrap(emit("reshape", value, shape=shape))


def squeeze(a, axis=None):
    value = _value(a)
    axes = tuple(i for i, d in enumerate(value.shape) if d == 1) if axis is None else normalize_axes(axis, value.ndim)
    if any(value.shape[i] != 1 for i in axes):
        raise ShapeError(f"cannot select an axis to squeeze out which has size not equal to one: {value.shape}")
    shape = tuple(d for i, d in enumerate(value.shape) if i not in axes)
    return _wrap(emit("reshape", value, shape=shape) if shape != value.shape else value)


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
    return dtypes.result_type(*[(_dtype_of(x), _is_weak(x)) for x in operands])


def astype(a, dtype):
    value = _value(a)
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
    shape = tuple(_shape_of(a)) if shape is None else tuple(shape)
    dtype = dtypes.canonical(dtype if dtype is not None else _dtype_of(a))
    if _is_tracer(fill_value):
        return broadcast_to(astype(fill_value, dtype), shape)
    scalar = _trace().builder.constant(np.asarray(fill_value, dtype), loc=user_location())
    return _wrap(emit("broadcast_to", scalar, shape=shape) if shape else scalar)


def zeros_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 0, dtype, shape=shape)


def ones_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 1, dtype, shape=shape)


# ---- reorderings and selections built from indexing (strided reads and gathers) -------------
def _index(a, key):
    from .tracer import wrap

    return (a if _is_tracer(a) else wrap(_value(a)))[key]


def flip(m, axis=None):
    ndim = len(_shape_of(m))
    axes = range(ndim) if axis is None else normalize_axes(axis, ndim)
    return _index(m, tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(ndim)))


def take(a, indices, axis=None, out=None, mode="raise"):
    """np.take: out-of-range indices raise IndexError, as numpy's default mode does."""
    _require_absent("take", out=out, mode=None if mode == "raise" else mode)
    if axis is None:
        return _index(ravel(a), indices)
    (axis,) = normalize_axes(axis, len(_shape_of(a)))
    return _index(a, (slice(None),) * axis + (indices,))


def take_along_axis(arr, indices, axis):
    """np.take_along_axis: a gather with the index arrays of the other axes made from np.arange."""
    shape = _shape_of(arr)
    if axis is None:
        return _index(ravel(arr), indices)
    (axis,) = normalize_axes(axis, len(shape))
    if len(_shape_of(indices)) != len(shape):
        raise ShapeError(f"take_along_axis: indices need {len(shape)} dimensions like the array, got "
                         f"{len(_shape_of(indices))} (at {user_location()})")
    key = tuple(indices if d == axis else np.arange(n).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
                for d, n in enumerate(shape))
    return _index(arr, key)


def roll(a, shift, axis=None):
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), tuple(_shape_of(a)))
    shifts, axes = (shift, axis) if isinstance(axis, (tuple, list)) else ((shift,), (axis,))
    if isinstance(shift, (tuple, list)) != isinstance(axis, (tuple, list)) or len(shifts) != len(axes):
        raise ShapeError(f"roll: shift and axis must both be ints or sequences of one length (at {user_location()})")
    for n, ax in zip(shifts, normalize_axes(tuple(axes), len(_shape_of(a)))):
        size = _shape_of(a)[ax]
        k = operator.index(n) % size if size else 0
        if k:
            head = (slice(None),) * ax
            a = concatenate([_index(a, head + (slice(size - k, None),)), _index(a, head + (slice(None, size - k),))], ax)
    return a


def repeat(a, repeats, axis=None):
    """np.repeat with one repeat count for every element (counts per element would make the
    result's shape depend on the data)."""
    if not isinstance(repeats, (int, np.integer)):
        raise UnsupportedOperation("repeat", "a count per element; one int count is traced")
    if axis is None:
        a, axis = ravel(a), 0
    shape = tuple(_shape_of(a))
    (axis,) = normalize_axes(axis, len(shape))
    spread = broadcast_to(expand_dims(a, axis + 1), shape[:axis + 1] + (int(repeats),) + shape[axis + 1:])
    return reshape(spread, shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:])


def tile(A, reps):
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    shape = tuple(_shape_of(A))
    ndim = max(len(shape), len(reps))
    shape, reps = (1,) * (ndim - len(shape)) + shape, (1,) * (ndim - len(reps)) + reps
    a = reshape(A, tuple(d for n in shape for d in (1, n)))
    spread = broadcast_to(a, tuple(d for r, n in zip(reps, shape) for d in (int(r), n)))
    return reshape(spread, tuple(int(r) * n for r, n in zip(reps, shape)))


def pad(array, pad_width, mode="constant", constant_values=0):
    """np.pad in its default mode: constant borders."""
    if mode != "constant":
        raise UnsupportedOperation("pad", f"mode={mode!r}; only 'constant' is traced")
    ndim = len(_shape_of(array))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2))
    result = array
    for ax, (before, after) in enumerate(widths):
        if before or after:
            shape = list(_shape_of(result))
            parts = [full_like(result, constant_values, shape=shape[:ax] + [int(before)] + shape[ax + 1:]), result,
                     full_like(result, constant_values, shape=shape[:ax] + [int(after)] + shape[ax + 1:])]
            result = concatenate([p for p, w in zip(parts, (before, 1, after)) if w], ax)
    return result


def diag(v, k=0):
    """np.diag: the k-th diagonal of a matrix, or a matrix with v on its k-th diagonal."""
    shape = _shape_of(v)
    if len(shape) == 1:
        n, length = shape[0] + abs(k), shape[0]
        rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
        # the entry on the diagonal at (r, r + k) is v[r] for k >= 0 and v[c] for k < 0
        source = take(v, np.minimum(np.arange(n), builtins.max(length - 1, 0)))
        source = expand_dims(source, 1 if k >= 0 else 0)
        return where(cols - rows == k, source, zeros_like(v, shape=()))
    if len(shape) != 2:
        raise ShapeError(f"diag: input must be 1-d or 2-d, got shape {tuple(shape)} (at {user_location()})")
    i = np.arange(builtins.max(0, builtins.min(shape[0] + builtins.min(k, 0), shape[1] - builtins.max(k, 0))))
    return _index(v, (i - builtins.min(k, 0), i + builtins.max(k, 0)))


def trace_(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _require_absent("trace", out=out)
    if len(_shape_of(a)) != 2 or (axis1, axis2) != (0, 1):
        raise UnsupportedOperation("trace", "only of a matrix")
    return sum(diag(a, offset), dtype=dtype)


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    if returned:
        raise UnsupportedOperation("average", "returned=True")
    if weights is None:
        return mean(a, axis, keepdims=keepdims)
    if len(_shape_of(weights)) != len(_shape_of(a)):
        raise UnsupportedOperation("average", "weights of another shape than the array")
    weighted = sum(apply_ufunc(np.multiply, (a, weights)), axis, keepdims=keepdims)
    return apply_ufunc(np.true_divide, (weighted, sum(weights, axis, keepdims=keepdims)))


def ptp(a, axis=None, out=None, keepdims=False):
    _require_absent("ptp", out=out)
    return apply_ufunc(np.subtract, (amax(a, axis, keepdims=keepdims), amin(a, axis, keepdims=keepdims)))


def heaviside(x1, x2):
    """np.heaviside: 0 below zero, 1 above, x2 at zero, nan at nan."""
    if not dtypes.is_float(_dtype_of(x1)):  # numpy's heaviside loops are float ones
        x1 = astype(x1, dtypes.float64)
    zero_one = where(apply_ufunc(np.less, (x1, 0)), full_like(x1, 0, shape=()), full_like(x1, 1, shape=()))
    return where(apply_ufunc(np.isnan, (x1,)), x1, where(apply_ufunc(np.equal, (x1, 0)), x2, zero_one))


def split(ary, indices_or_sections, axis=0):
    (axis,) = normalize_axes(axis, len(_shape_of(ary)))
    size = _shape_of(ary)[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if size % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        step = size // indices_or_sections
        cuts = list(range(step, size, step)) if step else []
    else:
        cuts = [operator.index(i) for i in indices_or_sections]
    bounds = [0] + cuts + [size]
    return [_index(ary, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(bounds, bounds[1:])]


def _triangle(m, k, lower):
    shape = _shape_of(m)
    if len(shape) < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'} needs an array of at least 2 dimensions, got shape "
                         f"{tuple(shape)} (at {user_location()})")
    rows, cols = np.arange(shape[-2])[:, None], np.arange(shape[-1])[None, :]
    keep = cols - rows <= k if lower else cols - rows >= k
    return where(keep, m, zeros_like(m, shape=()))


def tril(m, k=0):
    return _triangle(m, k, lower=True)


def triu(m, k=0):
    return _triangle(m, k, lower=False)


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm for ord=None: the 2-norm of vectors, Frobenius of matrices (the square root
    of the sum of squares, summed in tracejit's order, not BLAS's)."""
    if ord not in (None, 2, "fro") or (ord == 2 and (axis is None and len(_shape_of(x)) != 1)):
        raise UnsupportedOperation("linalg.norm", f"ord={ord!r}; only the 2-norm of vectors and Frobenius")
    acc = _mean_dtype(_dtype_of(x), None)
    xf = astype(x, acc)
    return apply_ufunc(np.sqrt, (_reduction("sum", apply_ufunc(np.multiply, (xf, xf)), axis, keepdims),))


def logaddexp(x1, x2):
    """log(exp(x1) + exp(x2)) as numpy's npy_logaddexp computes it, max + log1p(exp(-|x1 - x2|)),
    with x1 + x2 where the difference is nan (equal infinities); at x1 == x2 the gradient splits
    evenly (maximum's rule, and abs has derivative 0 there)."""
    larger = apply_ufunc(np.maximum, (x1, x2))
    delta = apply_ufunc(np.subtract, (x1, x2))
    spread = apply_ufunc(np.log1p, (apply_ufunc(np.exp, (apply_ufunc(np.negative, (apply_ufunc(np.absolute, (delta,)),)),)),))
    return where(apply_ufunc(np.isnan, (delta,)), apply_ufunc(np.add, (x1, x2)), apply_ufunc(np.add, (larger, spread)))


# ---- products -------------------------------------------------------------------------------
def matmul(a, b):
    common = _common_dtype([a, b])
    if not dtypes.is_float(common):
        raise DTypeError(f"matmul of {common} operands is not supported; cast to float first (at {user_location()})")
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


def einsum(subscripts, *operands, out=None, dtype=None, optimize=False, **kwargs):
    """np.einsum of one or two float operands, as transposes, reshapes, sums and one (batched)
    matmul. Not traced: ellipses, an index repeated within one operand (diagonals), three or more
    operands (chain two-operand einsums instead)."""
    _require_absent("einsum", out=out, dtype=dtype, **kwargs)
    if not isinstance(subscripts, str) or "..." in subscripts or not 1 <= len(operands) <= 2:
        raise UnsupportedOperation("einsum", "only 'ij,jk->ik'-style subscripts of one or two operands, no '...'")
    inputs, arrow, output = subscripts.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands) or any(len(set(t)) != len(t) for t in terms + [output]):
        raise UnsupportedOperation("einsum", f"subscripts {subscripts!r}: one term per operand, no repeated index")
    if not arrow:  # implicit output: the indices that appear once, in alphabetical order
        output = "".join(sorted(i for i in set(inputs) - {","} if inputs.count(i) == 1))
    for term, x in zip(terms, operands):
        if len(term) != len(_shape_of(x)):
            raise ShapeError(f"einsum: {term!r} names {len(term)} axes of an operand of shape {tuple(_shape_of(x))} "
                             f"(at {user_location()})")
    others = [set("".join(terms[:n] + terms[n + 1:])) | set(output) for n in range(len(terms))]
    # indices only one operand has, and the output does not: summed out of that operand first
    summed = [_sum_indices(x, t, keep) for x, t, keep in zip(operands, terms, others)]
    if len(summed) == 1:
        (x, term), = summed
        return transpose(x, [term.index(i) for i in output]) if term != output else x
    (a, ta), (b, tb) = summed
    batch = [i for i in output if i in ta and i in tb]
    contracted = [i for i in ta if i in tb and i not in output]
    free_a, free_b = [i for i in ta if i not in tb], [i for i in tb if i not in ta]
    sizes = {i: n for t, x in ((ta, a), (tb, b)) for i, n in zip(t, _shape_of(x))}
    size = lambda idx: int(np.prod([sizes[i] for i in idx], dtype=np.int64))  # noqa: E731
    a3 = reshape(transpose(a, [ta.index(i) for i in batch + free_a + contracted]),
                 (size(batch), size(free_a), size(contracted)))
    b3 = reshape(transpose(b, [tb.index(i) for i in batch + contracted + free_b]),
                 (size(batch), size(contracted), size(free_b)))
    product = reshape(matmul(a3, b3), tuple(sizes[i] for i in batch + free_a + free_b))
    order = batch + free_a + free_b
    return transpose(product, [order.index(i) for i in output]) if order != list(output) else product


def _sum_indices(x, term, keep):
    axes = tuple(n for n, i in enumerate(term) if i not in keep)
    if not axes:
        return x, term
    return _reduction("sum", x, axes, False), "".join(i for i in term if i in keep)


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
    np.reshape: reshape, np.transpose: transpose, np.swapaxes: swapaxes, np.moveaxis: moveaxis,
    np.broadcast_to: broadcast_to, np.expand_dims: expand_dims, np.squeeze: squeeze, np.ravel: ravel,
    np.concatenate: concatenate, np.stack: stack, np.where: where, np.clip: clip,
    np.round: round_, np.around: round_,
    np.zeros_like: zeros_like, np.ones_like: ones_like, np.full_like: full_like, np.empty_like: zeros_like,
    np.dot: dot, np.inner: vdot_like_inner, np.outer: outer, np.shape: shape, np.ndim: ndim, np.size: size,
    np.astype: astype, np.flip: flip, np.take: take, np.take_along_axis: take_along_axis, np.tril: tril,
    np.triu: triu, np.linalg.norm: norm, np.einsum: einsum, np.roll: roll, np.repeat: repeat, np.tile: tile,
    np.pad: pad, np.diag: diag, np.trace: trace_, np.average: average, np.ptp: ptp, np.split: split,
}
# ufuncs recorded as compositions of primitives rather than one primitive each
COMPOSITE_UFUNCS = {np.logaddexp: logaddexp, np.heaviside: heaviside}


def dispatch_function(func, args, kwargs):
    impl = FUNCTIONS.get(func)
    if impl is None:
        raise UnsupportedOperation(func.__name__)
    return impl(*args, **kwargs)
