"""Primitives with no array inputs: constants and iota (np.arange)."""
from __future__ import annotations

import base64

import numpy as np

from .. import dtypes
from .py_spelling import dtype_text, literal, nested_literal
from .registry import Aval, Kind, Primitive, register


def _constant_rule(*, value):
    return Aval(value.shape, value.dtype)


def _iota_rule(*, length, dtype):
    return Aval((length,), dtypes.canonical(dtype))


# ---- numpy spellings for ir/python.py ----------------------------------------------------------
INLINE_CONSTANT = 16  # constants up to this many elements are written out as literals


def _constant_py(args, params, node, ctx):
    """Small constants as literals; large ones as a module-level array decoded from base64."""
    value = params["value"]
    if value.ndim == 0:
        return f"{dtype_text(value.dtype)}({literal(value[()])})"
    if value.size <= INLINE_CONSTANT:
        return f"np.array({nested_literal(value.tolist())}, dtype={dtype_text(value.dtype)})"
    data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
    name = ctx.add_constant(
        f'np.frombuffer(base64.b64decode("{data}"), dtype={dtype_text(value.dtype)}).reshape({value.shape})'
    )
    return f"{name}.copy()"


def _iota_py(args, params, node, ctx):
    return f"np.arange({params['length']}, dtype={dtype_text(params['dtype'])})"


constant_p = register(
    Primitive("constant", Kind.SOURCE, _constant_rule, lambda *, value: value.copy(), zero_vjp=True,
              py_expr=_constant_py)
)
iota_p = register(
    Primitive("iota", Kind.SOURCE, _iota_rule, lambda *, length, dtype: np.arange(length, dtype=dtype), zero_vjp=True,
              py_expr=_iota_py)
)
