"""Strided views: how the elements of a value sit in the storage of another (a "root") value.

Shape ops (reshape, transpose, broadcast_to, slice) never copy when their input already has
storage: their output is a View of the input's root, and the consumer reads it through strides
(stride 0 on broadcast axes). Used by fusion.py; the C emitter turns views into index arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Value


@dataclass(frozen=True)
class View:
    """Element (i0, i1, ...) of the viewed value is root[offset + sum(i_k * strides[k])] (in elements)."""

    root: Value
    offset: int
    strides: tuple[int, ...]


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


def own_view(value: Value) -> View:
    """The view of a value that has its own contiguous storage."""
    return View(value, 0, contiguous_strides(value.shape))


def is_contiguous(view: View, shape) -> bool:
    """Row-major contiguous from the view's offset (strides of size-1 axes do not matter)."""
    expected = contiguous_strides(shape)
    return all(d == 1 or s == e for d, s, e in zip(shape, view.strides, expected))


def transpose_view(view: View, perm) -> View:
    return View(view.root, view.offset, tuple(view.strides[p] for p in perm))


def broadcast_view(view: View, in_shape, out_shape) -> View:
    """numpy broadcasting: new leading axes and size-1 axes read with stride 0."""
    lead = len(out_shape) - len(in_shape)
    strides = [0] * lead
    for d_in, d_out, s in zip(in_shape, out_shape[lead:], view.strides):
        strides.append(0 if d_in == 1 and d_out != 1 else s)
    return View(view.root, view.offset, tuple(strides))


def slice_view(view: View, starts, steps) -> View:
    offset = view.offset + sum(a * s for a, s in zip(starts, view.strides))
    return View(view.root, offset, tuple(s * c for s, c in zip(view.strides, steps)))


def reshape_view(view: View, in_shape, out_shape) -> View | None:
    """The view of a reshape without a copy, or None when strides cannot express it.

    numpy's _attempt_nocopy_reshape: match runs of input and output axes of equal total
    size; each input run must be contiguous within itself, and its innermost stride is then
    spread over the output run.
    """
    if any(d == 0 for d in in_shape):
        return View(view.root, view.offset, contiguous_strides(out_shape))
    old = [(d, s) for d, s in zip(in_shape, view.strides) if d != 1]
    old_dims, old_strides = [d for d, _ in old], [s for _, s in old]
    new_dims = list(out_shape)
    new_strides = [0] * len(new_dims)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new_dims) and oi < len(old_dims):
        np_, op = new_dims[ni], old_dims[oi]
        while np_ != op:
            if np_ < op:
                np_ *= new_dims[nj]
                nj += 1
            else:
                op *= old_dims[oj]
                oj += 1
        if any(old_strides[k] != old_dims[k + 1] * old_strides[k + 1] for k in range(oi, oj - 1)):
            return None
        new_strides[nj - 1] = old_strides[oj - 1]
        for k in range(nj - 1, ni, -1):
            new_strides[k - 1] = new_strides[k] * new_dims[k]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    return View(view.root, view.offset, tuple(new_strides))
