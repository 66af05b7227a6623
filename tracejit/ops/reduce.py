"""Reductions over `axes` (a sorted tuple; reduced axes are dropped, keepdims is a reshape).

mean, var, std and logsumexp are not primitives: the front end decomposes them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from .index import one_hot_axis
from .py_spelling import dtype_text
from .registry import Aval, Kind, Primitive, register
from .shape_util import reduced_shape
from .vjp_util import astype, broadcast_back, const, div, eq, mul, where, with_reduced_axes


def _reduce_rule(name, result_dtype=None):
    def rule(x, *, axes):
        if any(not 0 <= a < len(x.shape) for a in axes):
            raise ShapeError(f"{name}: axes {axes} out of range for shape {x.shape}")
        if name in ("max", "min", "argmax", "argmin") and any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"{name}: zero-size reduction over axes {axes} of shape {x.shape} has no identity")
        if name in ("sum", "prod") and x.dtype == dtypes.bool_:
            raise DTypeError(f"{name} of bool: cast first")
        return Aval(reduced_shape(x.shape, axes), result_dtype or x.dtype)

    return rule


def _reference(np_fn, keep_dtype=True):
    def ref(x, *, axes):
        if keep_dtype:
            return np.asarray(np_fn(x, axis=axes, dtype=x.dtype))
        return np.asarray(np_fn(x, axis=axes))

    return ref


def _arg_reference(np_fn):
    def ref(x, *, axes):
        (axis,) = axes
        return np.asarray(np_fn(x, axis=axis)).astype(np.int64)

    return ref


def _arg_rule(name):
    base = _reduce_rule(name, dtypes.int64)

    def rule(x, *, axes):
        if len(axes) != 1:
            raise ShapeError(f"{name} reduces exactly one axis, got {axes}")
        return base(x, axes=axes)

    return rule


def _sum_vjp(b, node, ct):
    return [broadcast_back(b, ct, node.inputs[0].shape, node.params["axes"])]


def _prod_vjp(b, node, ct):
    """d prod / d x_i = the product of the other factors, exact with zeros: out / x_i when no factor
    is zero; at the only zero, the product of the rest; 0 when two or more factors are zero."""
    (x,), axes = node.inputs, node.params["axes"]
    zero, one = const(b, 0, x), const(b, 1, x)
    is_zero = eq(b, x, zero)
    nonzero = where(b, is_zero, one, x)
    rest = with_reduced_axes(b, b.emit("prod", nonzero, axes=axes), x.shape, axes)
    n_zeros = with_reduced_axes(b, _count(b, is_zero, axes, x.dtype), x.shape, axes)
    at_zero = where(b, eq(b, n_zeros, one), rest, zero)
    elsewhere = where(b, eq(b, n_zeros, zero), div(b, rest, nonzero), zero)
    return [mul(b, with_reduced_axes(b, ct, x.shape, axes), where(b, is_zero, at_zero, elsewhere))]


def _chooser_vjp(b, node, ct):
    """max/min: the cotangent goes to the elements equal to the result, split equally among tied
    ones (JAX's rule for reduce_max/reduce_min). A NaN result gives NaN cotangents."""
    (x,), axes = node.inputs, node.params["axes"]
    is_hit = eq(b, x, with_reduced_axes(b, node.out, x.shape, axes))
    share = div(b, ct, _count(b, is_hit, axes, x.dtype))
    return [mul(b, astype(b, is_hit, dtype=x.dtype), with_reduced_axes(b, share, x.shape, axes))]


def _count(b, mask, axes, dtype):
    """How many elements of the bool `mask` are true along `axes`, as `dtype`: summed as integers
    (exact, where a float sum is exact only below 2**24, and a cheaper accumulator), then converted."""
    reduced = math.prod(mask.shape[a] for a in axes)
    counter = np.int32 if reduced < 2**31 else np.int64
    return astype(b, b.emit("sum", astype(b, mask, dtype=counter), axes=axes), dtype=dtype)


def _sum_rewrite(b, node, producer, uses):
    """sum over axis j of where(iota_j == index, v, 0), v constant along j, is v: the compare holds
    at one column of each row (one_hot_axis checks the indices are in range), every other term is
    +0.0. Adding +0.0 is exact except that -0.0 + 0.0 is +0.0, so a v that may hold -0.0 is read
    as where(v == 0, 0, v). (W3: the one-hot row sum of the cross-entropy gradient disappears.)"""
    (x,), axes = node.inputs, node.params["axes"]
    select = producer.get(x)
    if len(axes) != 1 or select is None or select.prim.name != "where":
        return None
    cond, v, fill = select.inputs
    full = (1,) * (x.ndim - v.ndim) + tuple(v.shape)
    if v.dtype != x.dtype or full[axes[0]] != 1 or not _is_positive_zero(fill, producer):
        return None
    if one_hot_axis(cond, x.ndim, producer) != axes[0]:
        return None
    picked = _reshaped(b, v, full[:axes[0]] + full[axes[0] + 1:], node.out.shape)
    if v.dtype.kind != "f" or not _may_be_negative_zero(v, producer):
        return picked
    zero = b.constant(np.zeros((), v.dtype))
    return b.emit("where", b.emit("equal", picked, zero), zero, picked)


def _reshaped(b, v, shape, out_shape):
    if tuple(v.shape) != tuple(shape):
        v = b.emit("reshape", v, shape=tuple(shape))
    return v if tuple(shape) == tuple(out_shape) else b.emit("broadcast_to", v, shape=tuple(out_shape))


def _constant_through_views(value, producer):
    node = producer.get(value)
    while node is not None and node.prim.name in ("reshape", "broadcast_to"):
        node = producer.get(node.inputs[0])
    return node.params["value"] if node is not None and node.prim.name == "constant" else None


def _is_positive_zero(value, producer) -> bool:
    array = _constant_through_views(value, producer)
    return array is not None and array.size > 0 and bool(np.all(array == 0)) and not np.any(np.signbit(array))


def _may_be_negative_zero(value, producer) -> bool:
    array = _constant_through_views(value, producer)
    return array is None or bool(np.any((array == 0) & np.signbit(array)))


def _reduction_py(name):
    """np.<name>(x, axis=...); integer sum/prod name their dtype, as the reference keeps it (numpy
    would widen int32 to the platform integer)."""
    def render(args, params, node, ctx):
        axes = params["axes"]
        axis = axes[0] if len(axes) == 1 else tuple(axes)
        dtype = node.inputs[0].dtype
        exact_dtype = f", dtype={dtype_text(dtype)}" if name in ("sum", "prod") and np.dtype(dtype).kind != "f" else ""
        return f"np.{name}({args[0]}, axis={axis}{exact_dtype})"

    return render


sum_p = register(Primitive("sum", Kind.REDUCE, _reduce_rule("sum"), _reference(np.sum), vjp=_sum_vjp,
                           rewrite=_sum_rewrite, py_expr=_reduction_py("sum")))
prod_p = register(Primitive("prod", Kind.REDUCE, _reduce_rule("prod"), _reference(np.prod), vjp=_prod_vjp,
                            py_expr=_reduction_py("prod")))
max_p = register(
    Primitive("max", Kind.REDUCE, _reduce_rule("max"), _reference(np.max, keep_dtype=False), vjp=_chooser_vjp,
              py_expr=_reduction_py("max"))
)
min_p = register(
    Primitive("min", Kind.REDUCE, _reduce_rule("min"), _reference(np.min, keep_dtype=False), vjp=_chooser_vjp,
              py_expr=_reduction_py("min"))
)
argmax_p = register(Primitive("argmax", Kind.REDUCE, _arg_rule("argmax"), _arg_reference(np.argmax), zero_vjp=True,
                              py_expr=_reduction_py("argmax")))
argmin_p = register(Primitive("argmin", Kind.REDUCE, _arg_rule("argmin"), _arg_reference(np.argmin), zero_vjp=True,
                              py_expr=_reduction_py("argmin")))

REDUCTIONS = [sum_p, prod_p, max_p, min_p, argmax_p, argmin_p]
