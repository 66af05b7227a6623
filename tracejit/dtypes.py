"""Supported dtypes, numpy 2 (NEP 50) promotion with weak Python scalars, and C type names."""
from __future__ import annotations

import numpy as np

from .errors import DTypeError

bool_ = np.dtype(np.bool_)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

SUPPORTED = (bool_, int32, int64, float32, float64)

SHORT_NAME = {bool_: "bool", int32: "i32", int64: "i64", float32: "f32", float64: "f64"}
FROM_SHORT_NAME = {v: k for k, v in SHORT_NAME.items()}
C_TYPE = {bool_: "bool", int32: "int32_t", int64: "int64_t", float32: "float", float64: "double"}

# A weak value (a Python scalar, or a traced value born from one) promotes like this
# Python object does under NEP 50: it takes the other operand's dtype within its kind.
_WEAK_EXAMPLE = {bool_: True, int32: 1, int64: 1, float32: 1.0, float64: 1.0}

# Narrower dtypes that numpy might produce are widened to one we generate code for.
_CANONICAL = {"b": bool_, "i": None, "u": None, "f": None}


def canonical(dtype) -> np.dtype:
    """The supported dtype for `dtype`, or DTypeError naming it."""
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED:
        return dtype
    if not dtype.isnative:  # big-endian data (from a file, say) is read in native byte order
        return canonical(dtype.newbyteorder("="))
    if dtype.kind in "iu" and dtype.itemsize <= 4 and not (dtype.kind == "u" and dtype.itemsize == 4):
        return int32
    if dtype.kind == "i" or dtype == np.dtype(np.uint32):
        return int64  # uint64 is not: its values above 2**63 would turn negative
    if dtype.kind == "f" and dtype.itemsize < 4:
        return float32
    raise DTypeError(
        f"dtype {dtype} is not supported by tracejit (supported: bool, int32, int64, float32, float64)."
    )


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_int(dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def short_name(dtype) -> str:
    return SHORT_NAME[np.dtype(dtype)]


def c_type(dtype) -> str:
    return C_TYPE[np.dtype(dtype)]


def result_type(*operands: tuple[np.dtype, bool]) -> np.dtype:
    """Promote (dtype, weak) pairs as numpy 2 does for arrays and Python scalars; canonical."""
    return canonical(numpy_result_type(*operands))


def numpy_result_type(*operands: tuple[np.dtype, bool]) -> np.dtype:
    """Promote (dtype, weak) pairs as numpy 2 does for arrays and Python scalars."""
    args = [_WEAK_EXAMPLE[dt] if weak else dt for dt, weak in operands]
    if all(weak for _, weak in operands):
        # Only Python scalars: numpy gives the default dtype of the widest kind.
        kinds = {dt.kind for dt, _ in operands}
        if "f" in kinds:
            return float64
        if "i" in kinds or "u" in kinds:
            return int64
        return bool_
    return np.result_type(*args)


def check_python_int(value: int, dtype) -> None:
    """numpy's OverflowError (NEP 50) for a Python int that the integer `dtype` cannot hold."""
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise OverflowError(f"Python integer {value} out of bounds for {np.dtype(dtype)}")


def python_scalar_dtype(value) -> np.dtype:
    """The dtype numpy gives a lone Python scalar."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int64
    if isinstance(value, float):
        return float64
    raise DTypeError(f"unsupported Python scalar {value!r} of type {type(value).__name__}")
