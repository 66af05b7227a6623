"""matmul over (..., m, k) @ (..., k, n) with broadcast batch axes; the C backend calls BLAS for
floats and csrc/tracejit.h's loops for integers and bools.

1-D operands and np.dot are spelled with reshape around this by the front end.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .py_spelling import py_template
from .registry import Aval, Kind, Primitive, register
from .shape_util import broadcast_shapes
from .vjp_util import unbroadcast


def _matmul_rule(a, b):
    if a.dtype != b.dtype:
        raise DTypeError(f"matmul needs two operands of one dtype, got {a.dtype} and {b.dtype}")
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ShapeError(f"matmul primitive needs operands of rank >= 2, got {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(
            f"matmul: shapes {a.shape} and {b.shape} do not fit (inner sizes {a.shape[-1]} != {b.shape[-2]})"
        )
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return Aval(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _matmul_vjp(b, node, ct):
    """ct_a = ct @ b^T, ct_b = a^T @ ct, each summed over the batch axes it was broadcast along."""
    a, w = node.inputs
    ct_a = b.emit("matmul", ct, _swap_last(b, w))
    ct_w = b.emit("matmul", _swap_last(b, a), ct)
    return [unbroadcast(b, ct_a, a.shape), unbroadcast(b, ct_w, w.shape)]


def _swap_last(b, x):
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return b.emit("transpose", x, perm=perm)


matmul_p = register(Primitive("matmul", Kind.MATMUL, _matmul_rule, np.matmul, vjp=_matmul_vjp,
                              py_expr=py_template("{0} @ {1}")))
