"""Integer-array indexing: gather (x[i0, i1, ...]) and its transpose scatter_add.

gather(x, i0, ..., ik-1) indexes the k leading axes of x with integer arrays that broadcast
together; the result has shape broadcast(i*.shape) + x.shape[k:]. Negative indices wrap as
in numpy; out-of-range ones are an IndexError (the C code reports it through its return code).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register
from .shape_util import broadcast_shapes


def _check_indices(name, x_shape, indices):
    if len(indices) > len(x_shape):
        raise ShapeError(f"{name}: too many indices ({len(indices)}) for an array of shape {x_shape}")
    for idx in indices:
        if not dtypes.is_int(idx.dtype):
            raise DTypeError(f"{name}: index arrays must be integers, got {idx.dtype}")
    return broadcast_shapes(*(i.shape for i in indices))


def _gather_rule(x, *indices):
    index_shape = _check_indices("gather", x.shape, indices)
    return Aval(index_shape + tuple(x.shape[len(indices):]), x.dtype)


def _gather_reference(x, *indices):
    return np.asarray(x[tuple(indices)])


def _scatter_add_rule(updates, *indices, shape):
    index_shape = _check_indices("scatter_add", shape, indices)
    expected = index_shape + tuple(shape[len(indices):])
    if tuple(updates.shape) != expected:
        raise ShapeError(f"scatter_add: updates of shape {updates.shape}, expected {expected}")
    return Aval(tuple(shape), updates.dtype)


def _scatter_add_reference(updates, *indices, shape):
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, tuple(indices), updates)
    return out


def _gather_vjp(b, node, ct):
    x, *indices = node.inputs
    return [b.emit("scatter_add", ct, *indices, shape=x.shape)] + [None] * len(indices)


def _scatter_add_vjp(b, node, ct):
    _, *indices = node.inputs
    return [b.emit("gather", ct, *indices)] + [None] * len(indices)


gather_p = register(Primitive("gather", Kind.GATHER, _gather_rule, _gather_reference, vjp=_gather_vjp))
scatter_add_p = register(
    Primitive("scatter_add", Kind.SCATTER, _scatter_add_rule, _scatter_add_reference, vjp=_scatter_add_vjp)
)
