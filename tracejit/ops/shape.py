"""Data-movement primitives: reshape, transpose, broadcast_to, slice, concatenate.

expand_dims, squeeze, stack, ravel and keepdims are spelled with these by the front end.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register
from .shape_util import broadcast_shapes, size_of


def _reshape_rule(x, *, shape):
    if size_of(shape) != size_of(x.shape):
        raise ShapeError(f"cannot reshape array of shape {x.shape} into shape {shape}")
    return Aval(tuple(shape), x.dtype)


def _transpose_rule(x, *, perm):
    if sorted(perm) != list(range(len(x.shape))):
        raise ShapeError(f"transpose: {perm} is not a permutation of the axes of shape {x.shape}")
    return Aval(tuple(x.shape[p] for p in perm), x.dtype)


def _broadcast_rule(x, *, shape):
    if broadcast_shapes(x.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast shape {x.shape} to {shape}")
    return Aval(tuple(shape), x.dtype)


def _slice_rule(x, *, starts, stops, steps):
    if not len(starts) == len(stops) == len(steps) == len(x.shape):
        raise ShapeError(f"slice needs one (start, stop, step) per axis of shape {x.shape}")
    shape = tuple(len(range(a, b, c)) for a, b, c in zip(starts, stops, steps))
    return Aval(shape, x.dtype)


def _slice_reference(x, *, starts, stops, steps):
    return x[tuple(slice(a, b if b >= 0 else None, c) for a, b, c in zip(starts, stops, steps))]


def _concatenate_rule(*xs, axis):
    first = xs[0]
    for x in xs[1:]:
        if x.dtype != first.dtype:
            raise DTypeError(f"concatenate: operands must share a dtype, got {first.dtype} and {x.dtype}")
        if len(x.shape) != len(first.shape) or any(
            a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis
        ):
            raise ShapeError(f"concatenate along axis {axis}: shapes {[s.shape for s in xs]} do not match")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Aval(tuple(shape), first.dtype)


reshape_p = register(Primitive("reshape", Kind.SHAPE, _reshape_rule, lambda x, *, shape: np.reshape(x, shape)))
transpose_p = register(Primitive("transpose", Kind.SHAPE, _transpose_rule, lambda x, *, perm: np.transpose(x, perm)))
broadcast_to_p = register(
    Primitive("broadcast_to", Kind.SHAPE, _broadcast_rule, lambda x, *, shape: np.broadcast_to(x, shape).copy())
)
slice_p = register(Primitive("slice", Kind.SHAPE, _slice_rule, _slice_reference))
concatenate_p = register(
    Primitive("concatenate", Kind.SHAPE, _concatenate_rule, lambda *xs, axis: np.concatenate(xs, axis=axis))
)

SHAPE_OPS = [reshape_p, transpose_p, broadcast_to_p, slice_p, concatenate_p]
