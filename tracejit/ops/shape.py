"""Data-movement primitives: reshape, transpose, broadcast_to, slice, concatenate.

expand_dims, squeeze, stack, ravel and keepdims are spelled with these by the front end.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register
from .shape_util import broadcast_shapes, size_of
from .vjp_util import unbroadcast, zeros


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


def _reshape_vjp(b, node, ct):
    return [b.emit("reshape", ct, shape=node.inputs[0].shape)]


def _transpose_vjp(b, node, ct):
    return [b.emit("transpose", ct, perm=tuple(int(i) for i in np.argsort(node.params["perm"])))]


def _slice_vjp(b, node, ct):
    """The cotangent put back where the slice read it, zeros elsewhere: unit steps pad with zero
    blocks (concatenate); strided slices scatter_add to the positions they read."""
    x, p = node.inputs[0], node.params
    if ct.size == 0:
        return [zeros(b, x.shape, x.dtype)]
    if all(step == 1 for step in p["steps"]):
        return [_pad_with_zeros(b, ct, x.shape, p["starts"], p["stops"])]
    positions = [np.arange(*axis) for axis in zip(p["starts"], p["stops"], p["steps"])]  # stop -1: to the start
    indices = [b.constant(_along(pos, axis, x.ndim).astype(np.int64)) for axis, pos in enumerate(positions)]
    return [b.emit("scatter_add", ct, *indices, shape=x.shape)]


def _along(values, axis, ndim):
    return values.reshape([-1 if a == axis else 1 for a in range(ndim)])


def _pad_with_zeros(b, ct, shape, starts, stops):
    for axis, (start, stop, size) in enumerate(zip(starts, stops, shape)):
        block = lambda n: zeros(b, ct.shape[:axis] + (n,) + ct.shape[axis + 1:], ct.dtype)  # noqa: E731
        parts = ([block(start)] if start else []) + [ct] + ([block(size - stop)] if stop < size else [])
        if len(parts) > 1:
            ct = b.emit("concatenate", *parts, axis=axis)
    return ct


def _concatenate_vjp(b, node, ct):
    axis, offset, cts = node.params["axis"], 0, []
    for x in node.inputs:
        starts = tuple(offset if a == axis else 0 for a in range(x.ndim))
        stops = tuple(offset + x.shape[a] if a == axis else d for a, d in enumerate(ct.shape))
        cts.append(b.emit("slice", ct, starts=starts, stops=stops, steps=(1,) * x.ndim))
        offset += x.shape[axis]
    return cts


# ---- numpy spellings for ir/python.py ----------------------------------------------------------
def _reshape_py(args, params, node, ctx):
    return f"np.reshape({args[0]}, {tuple(params['shape'])})"


def _transpose_py(args, params, node, ctx):
    if len(params["perm"]) == 2:
        return f"{args[0]}.T"
    return f"{args[0]}.transpose({', '.join(map(str, params['perm']))})"


def _broadcast_to_py(args, params, node, ctx):
    return f"np.broadcast_to({args[0]}, {tuple(params['shape'])})"


def _slice_py(args, params, node, ctx):
    parts = []
    for start, stop, step in zip(params["starts"], params["stops"], params["steps"]):
        stop_text = "" if stop < 0 else str(stop)  # stop -1 with a negative step: run to the start
        parts.append(f"{start or ''}:{stop_text}" + (f":{step}" if step != 1 else ""))
    return f"{args[0]}[{', '.join(parts)}]"


def _concatenate_py(args, params, node, ctx):
    return f"np.concatenate([{', '.join(args)}], axis={params['axis']})"


reshape_p = register(
    Primitive("reshape", Kind.SHAPE, _reshape_rule, lambda x, *, shape: np.reshape(x, shape), vjp=_reshape_vjp,
              py_expr=_reshape_py)
)
transpose_p = register(
    Primitive("transpose", Kind.SHAPE, _transpose_rule, lambda x, *, perm: np.transpose(x, perm), vjp=_transpose_vjp,
              py_expr=_transpose_py)
)
broadcast_to_p = register(
    Primitive("broadcast_to", Kind.SHAPE, _broadcast_rule, lambda x, *, shape: np.broadcast_to(x, shape).copy(),
              vjp=lambda b, node, ct: [unbroadcast(b, ct, node.inputs[0].shape)], py_expr=_broadcast_to_py)
)
slice_p = register(Primitive("slice", Kind.SHAPE, _slice_rule, _slice_reference, vjp=_slice_vjp, py_expr=_slice_py))
concatenate_p = register(
    Primitive("concatenate", Kind.SHAPE, _concatenate_rule, lambda *xs, axis: np.concatenate(xs, axis=axis),
              vjp=_concatenate_vjp, py_expr=_concatenate_py)
)

SHAPE_OPS = [reshape_p, transpose_p, broadcast_to_p, slice_p, concatenate_p]
