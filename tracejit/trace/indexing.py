"""x[key] for tracers: basic indexing (ints, slices with steps, None, Ellipsis) becomes slice +
reshape; integer-array indexing becomes gather (its gradient is scatter_add).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import ShapeError, UnsupportedOperation
from . import numpy_map as nm


def _is_int_array(k) -> bool:
    if nm._is_tracer(k):
        return dtypes.is_int(k.dtype) or k.dtype == dtypes.bool_
    if isinstance(k, (list, np.ndarray)):
        arr = np.asarray(k)
        return arr.dtype.kind in "iub"
    return False


def _expand_ellipsis(key: list, ndim: int) -> list:
    """Replace `...` by full slices (identity tests only: == on a tracer would record a node)."""
    where = [n for n, k in enumerate(key) if k is Ellipsis]
    if len(where) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if not where:
        return key
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    n = where[0]
    return key[:n] + [slice(None)] * (ndim - consumed) + key[n + 1:]


def getitem(x, key):
    key = key if isinstance(key, tuple) else (key,)
    result = _advanced(x, key) if any(_is_int_array(k) for k in key) else _basic(x, key)
    return nm.keep_narrow(result, x)


def _basic(x, key):
    """ints, slices, None, Ellipsis."""
    value = nm._value(x)
    key = _expand_ellipsis(list(key), value.ndim)
    key += [slice(None)] * (value.ndim - sum(1 for k in key if k is not None))
    starts, stops, steps, out_shape = [], [], [], []
    axis = 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        if axis >= value.ndim:
            raise ShapeError(f"too many indices for array of shape {value.shape}")
        size = value.shape[axis]
        if isinstance(k, slice):
            start, stop, step = k.indices(size)
            starts.append(start), stops.append(stop), steps.append(step)
            out_shape.append(len(range(start, stop, step)))
        else:
            i = _static_int(k)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {size}")
            i %= size
            starts.append(i), stops.append(i + 1), steps.append(1)
        axis += 1
    result = value
    if (starts, stops, steps) != ([0] * value.ndim, list(value.shape), [1] * value.ndim):
        result = nm.emit("slice", value, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if tuple(out_shape) != result.shape:
        result = nm.emit("reshape", result, shape=tuple(out_shape))
    return nm._wrap(result)


def _static_int(k) -> int:
    if nm._is_tracer(k):
        raise UnsupportedOperation("__getitem__", "a traced scalar as a basic index; use an integer array index")
    try:
        return int(k.__index__())
    except (AttributeError, TypeError):
        raise UnsupportedOperation("__getitem__", f"index of type {type(k).__name__}") from None


def _advanced(x, key):
    """x[..., i, j, ...] with integer arrays in one consecutive block, full slices elsewhere."""
    value = nm._value(x)
    key = tuple(_expand_ellipsis(list(key), value.ndim))
    positions = [n for n, k in enumerate(key) if _is_int_array(k)]
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise UnsupportedOperation("__getitem__", "integer-array indices separated by slices")
    others = [k for n, k in enumerate(key) if n not in positions]
    if any(not (isinstance(k, slice) and k == slice(None)) for k in others):
        raise UnsupportedOperation("__getitem__", "mixing integer-array indices with partial slices, ints or None")
    first, count = positions[0], len(positions)
    indices = [_index_value(key[n]) for n in positions]
    perm = tuple(range(first, first + count)) + tuple(range(first)) + tuple(range(first + count, value.ndim))
    moved = nm.emit("transpose", value, perm=perm) if first else value
    gathered = nm.emit("gather", moved, *indices)
    if first:  # numpy puts the indexed block back where it was
        nb = gathered.ndim - (value.ndim - count)
        back = tuple(range(nb, nb + first)) + tuple(range(nb)) + tuple(range(nb + first, gathered.ndim))
        gathered = nm.emit("transpose", gathered, perm=back)
    return nm._wrap(gathered)


def _index_value(k):
    if nm._is_tracer(k) and k.dtype == dtypes.bool_ or (not nm._is_tracer(k) and np.asarray(k).dtype == bool):
        raise UnsupportedOperation("__getitem__", "boolean mask indexing (its shape depends on the data); use np.where")
    value = nm._value(k if nm._is_tracer(k) else np.asarray(k))
    return value
