"""Reductions over `axes` (a sorted tuple; reduced axes are dropped, keepdims is a reshape).

mean, var, std and logsumexp are not primitives: the front end decomposes them.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register
from .shape_util import reduced_shape


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


sum_p = register(Primitive("sum", Kind.REDUCE, _reduce_rule("sum"), _reference(np.sum)))
prod_p = register(Primitive("prod", Kind.REDUCE, _reduce_rule("prod"), _reference(np.prod)))
max_p = register(Primitive("max", Kind.REDUCE, _reduce_rule("max"), _reference(np.max, keep_dtype=False)))
min_p = register(Primitive("min", Kind.REDUCE, _reduce_rule("min"), _reference(np.min, keep_dtype=False)))
argmax_p = register(Primitive("argmax", Kind.REDUCE, _arg_rule("argmax"), _arg_reference(np.argmax), zero_vjp=True))
argmin_p = register(Primitive("argmin", Kind.REDUCE, _arg_rule("argmin"), _arg_reference(np.argmin), zero_vjp=True))

REDUCTIONS = [sum_p, prod_p, max_p, min_p, argmax_p, argmin_p]
