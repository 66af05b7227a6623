"""Primitives with no array inputs: constants and iota (np.arange)."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .registry import Aval, Kind, Primitive, register


def _constant_rule(*, value):
    return Aval(value.shape, value.dtype)


def _iota_rule(*, length, dtype):
    return Aval((length,), dtypes.canonical(dtype))


constant_p = register(
    Primitive("constant", Kind.SOURCE, _constant_rule, lambda *, value: value.copy(), zero_vjp=True)
)
iota_p = register(
    Primitive("iota", Kind.SOURCE, _iota_rule, lambda *, length, dtype: np.arange(length, dtype=dtype), zero_vjp=True)
)
