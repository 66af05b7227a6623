"""Small IR-emitting helpers shared by the VJP rules of the op families.

A VJP rule has the signature `vjp(b, node, ct)`: `b` is a GraphBuilder, `node` the forward node,
`ct` the cotangent Value of its output (a list, one entry per output, for multiple_results
primitives; None entries are zeros). It returns one cotangent per input (None for "zero" or "not
differentiable", e.g. integer indices). Rules emit IR through `b`; they never compute numbers.
Every primitive a rule emits has a rule of its own, so derivatives can be differentiated again.
"""
from __future__ import annotations

import numpy as np


def _op(name):
    def emit(b, *values, **params):
        return b.emit(name, *values, **params)

    emit.__name__ = name
    return emit


add, sub, mul, div, neg = _op("add"), _op("subtract"), _op("multiply"), _op("divide"), _op("negative")
eq, where, astype, log = _op("equal"), _op("where"), _op("astype"), _op("log")


def const(b, value, like):
    """A 0-d constant with the dtype of `like` (it broadcasts in elementwise ops)."""
    return b.constant(np.asarray(value, dtype=like.dtype))


def zeros(b, shape, dtype):
    zero = b.constant(np.zeros((), dtype))
    return b.emit("broadcast_to", zero, shape=tuple(shape)) if shape else zero


def unbroadcast(b, ct, shape):
    """Sum `ct` over the axes numpy broadcasting added or stretched, so it has `shape` again."""
    shape = tuple(shape)
    if tuple(ct.shape) == shape:
        return ct
    lead = len(ct.shape) - len(shape)
    stretched = [lead + i for i, d in enumerate(shape) if d == 1 and ct.shape[lead + i] != 1]
    axes = tuple(range(lead)) + tuple(stretched)
    if axes:
        ct = b.emit("sum", ct, axes=axes)
    return b.emit("reshape", ct, shape=shape) if tuple(ct.shape) != shape else ct


def keepdims_shape(shape, axes):
    """The shape a reduction over `axes` has with keepdims=True."""
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def with_reduced_axes(b, value, in_shape, axes):
    """A reduction's result reshaped to keepdims form, so it broadcasts against the operand."""
    target = keepdims_shape(in_shape, axes)
    return b.emit("reshape", value, shape=target) if tuple(value.shape) != target else value


def broadcast_back(b, ct, in_shape, axes):
    """The cotangent of a reduction spread over the reduced axes again."""
    ct = with_reduced_axes(b, ct, in_shape, axes)
    return b.emit("broadcast_to", ct, shape=tuple(in_shape)) if tuple(ct.shape) != tuple(in_shape) else ct


def balanced_share(b, x, out, other):
    """1 where x alone produced `out`, 0.5 where x and `other` tie, 0 elsewhere (JAX's rule)."""
    tie = where(b, eq(b, other, out), const(b, 0.5, x), const(b, 1, x))
    return where(b, eq(b, x, out), tie, const(b, 0, x))
