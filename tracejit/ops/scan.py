"""Scans along one axis: cumsum. out[..., 0, ...] = x[..., 0, ...], then each element adds the
previous output, in order, in the dtype of the output (the front end casts ints and bools to
int64 first, as numpy does): the same additions in the same order as np.cumsum, so the same bits.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register


def _cumsum_rule(x, *, axis):
    if not 0 <= axis < len(x.shape):
        raise ShapeError(f"cumsum: axis {axis} out of range for shape {x.shape}")
    if x.dtype == dtypes.bool_:
        raise DTypeError("cumsum of bool: cast first")
    return Aval(x.shape, x.dtype)


def _flip(b, v, axis):
    """v reversed along `axis` (a slice with step -1)."""
    n = v.shape[axis]
    starts = tuple(n - 1 if d == axis else 0 for d in range(v.ndim))
    stops = tuple(-1 if d == axis else size for d, size in enumerate(v.shape))
    steps = tuple(-1 if d == axis else 1 for d in range(v.ndim))
    return b.emit("slice", v, starts=starts, stops=stops, steps=steps)


def _cumsum_vjp(b, node, ct):
    """Each input element reaches every later output: its cotangent is the sum of the cotangents
    from its position to the end, a cumsum of the reversed cotangent, reversed back."""
    axis = node.params["axis"]
    if node.inputs[0].shape[axis] == 0:
        return [ct]
    return [_flip(b, b.emit("cumsum", _flip(b, ct, axis), axis=axis), axis)]


cumsum_p = register(Primitive(
    "cumsum", Kind.SCAN, _cumsum_rule, lambda x, *, axis: np.cumsum(x, axis=axis, dtype=x.dtype),
    vjp=_cumsum_vjp, py_expr=lambda args, params, node, ctx: f"np.cumsum({args[0]}, axis={params['axis']})",
))
