"""Elementwise primitives: unary, binary, compare, logical, where, cast.

Operands of one node share a dtype (the tracer inserts `astype` per numpy promotion) and
broadcast as numpy's do; the C backend reads broadcast operands with stride 0.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from .registry import Aval, Kind, Primitive, c_template, register
from .shape_util import broadcast_shapes

FLOAT_ONLY = "float"
NUMERIC = "numeric"
ANY = "any"


def _check_dtypes(name, avals, allowed):
    first = avals[0].dtype
    if any(a.dtype != first for a in avals):
        raise DTypeError(f"{name}: operands must share a dtype, got {[str(a.dtype) for a in avals]}")
    if allowed == FLOAT_ONLY and not dtypes.is_float(first):
        raise DTypeError(f"{name} needs float operands, got {first}")
    if allowed == NUMERIC and first == dtypes.bool_:
        raise DTypeError(f"{name} needs numeric operands, got bool")


def _same_dtype_rule(name, allowed, result_dtype=None):
    def rule(*avals):
        _check_dtypes(name, avals, allowed)
        dtype = result_dtype if result_dtype is not None else avals[0].dtype
        return Aval(broadcast_shapes(*(a.shape for a in avals)), dtype)

    return rule


def _elementwise(name, reference, c, allowed=NUMERIC, result_dtype=None, **rules):
    prim = Primitive(
        name=name,
        kind=Kind.ELEMENTWISE,
        shape_rule=_same_dtype_rule(name, allowed, result_dtype),
        reference=reference,
        c_expr=c_template(c) if isinstance(c, str) else c,
        **rules,
    )
    return register(prim)


# ---- unary, float math (libm names; `{f}` is the float32 suffix) ----------------------------
exp_p = _elementwise("exp", np.exp, "exp{f}({0})", FLOAT_ONLY)
log_p = _elementwise("log", np.log, "log{f}({0})", FLOAT_ONLY)
log1p_p = _elementwise("log1p", np.log1p, "log1p{f}({0})", FLOAT_ONLY)
expm1_p = _elementwise("expm1", np.expm1, "expm1{f}({0})", FLOAT_ONLY)
sqrt_p = _elementwise("sqrt", np.sqrt, "sqrt{f}({0})", FLOAT_ONLY)
tanh_p = _elementwise("tanh", np.tanh, "tanh{f}({0})", FLOAT_ONLY)
sinh_p = _elementwise("sinh", np.sinh, "sinh{f}({0})", FLOAT_ONLY)
cosh_p = _elementwise("cosh", np.cosh, "cosh{f}({0})", FLOAT_ONLY)
sin_p = _elementwise("sin", np.sin, "sin{f}({0})", FLOAT_ONLY)
cos_p = _elementwise("cos", np.cos, "cos{f}({0})", FLOAT_ONLY)
tan_p = _elementwise("tan", np.tan, "tan{f}({0})", FLOAT_ONLY)
arctan_p = _elementwise("arctan", np.arctan, "atan{f}({0})", FLOAT_ONLY)
floor_p = _elementwise("floor", np.floor, "floor{f}({0})", FLOAT_ONLY, zero_vjp=True)
ceil_p = _elementwise("ceil", np.ceil, "ceil{f}({0})", FLOAT_ONLY, zero_vjp=True)
reciprocal_p = _elementwise("reciprocal", np.reciprocal, "(({T})1 / {0})", FLOAT_ONLY)

# ---- unary, any numeric dtype -------------------------------------------------------------
negative_p = _elementwise("negative", np.negative, "(-{0})")
square_p = _elementwise("square", np.square, "({0} * {0})")
abs_p = _elementwise("abs", np.abs, "tj_abs_{t}({0})")
sign_p = _elementwise("sign", np.sign, "tj_sign_{t}({0})", zero_vjp=True)

# ---- binary arithmetic --------------------------------------------------------------------
add_p = _elementwise("add", np.add, "({0} + {1})", commutative=True)
subtract_p = _elementwise("subtract", np.subtract, "({0} - {1})")
multiply_p = _elementwise("multiply", np.multiply, "({0} * {1})", commutative=True)
divide_p = _elementwise("divide", np.true_divide, "({0} / {1})", FLOAT_ONLY)
power_p = _elementwise("power", np.power, "tj_power_{t}({0}, {1})")
maximum_p = _elementwise("maximum", np.maximum, "tj_maximum_{t}({0}, {1})", commutative=True)
minimum_p = _elementwise("minimum", np.minimum, "tj_minimum_{t}({0}, {1})", commutative=True)

# ---- comparisons and logic (bool results; no gradient flows through them) ------------------
less_p = _elementwise("less", np.less, "({0} < {1})", ANY, dtypes.bool_, zero_vjp=True)
less_equal_p = _elementwise("less_equal", np.less_equal, "({0} <= {1})", ANY, dtypes.bool_, zero_vjp=True)
greater_p = _elementwise("greater", np.greater, "({0} > {1})", ANY, dtypes.bool_, zero_vjp=True)
greater_equal_p = _elementwise("greater_equal", np.greater_equal, "({0} >= {1})", ANY, dtypes.bool_, zero_vjp=True)
equal_p = _elementwise("equal", np.equal, "({0} == {1})", ANY, dtypes.bool_, zero_vjp=True, commutative=True)
not_equal_p = _elementwise(
    "not_equal", np.not_equal, "({0} != {1})", ANY, dtypes.bool_, zero_vjp=True, commutative=True
)
logical_and_p = _elementwise(
    "logical_and", np.logical_and, "({0} && {1})", ANY, dtypes.bool_, zero_vjp=True, commutative=True
)
logical_or_p = _elementwise(
    "logical_or", np.logical_or, "({0} || {1})", ANY, dtypes.bool_, zero_vjp=True, commutative=True
)
logical_not_p = _elementwise("logical_not", np.logical_not, "(!{0})", ANY, dtypes.bool_, zero_vjp=True)


# ---- where(cond, x, y): cond is bool, x and y share a dtype --------------------------------
def _where_rule(cond, x, y):
    if cond.dtype != dtypes.bool_:
        raise DTypeError(f"where: condition must be bool, got {cond.dtype}")
    _check_dtypes("where", (x, y), ANY)
    return Aval(broadcast_shapes(cond.shape, x.shape, y.shape), x.dtype)


where_p = register(
    Primitive("where", Kind.ELEMENTWISE, _where_rule, np.where, c_expr=c_template("({0} ? {1} : {2})"))
)


# ---- astype(x, dtype=...) -----------------------------------------------------------------
def _astype_rule(x, *, dtype):
    return Aval(x.shape, dtypes.canonical(dtype))


def _astype_reference(x, *, dtype):
    return np.asarray(x).astype(dtype)


def _astype_c(args, in_dtypes, out_dtype, **params):
    if out_dtype == dtypes.bool_:
        return f"({args[0]} != 0)"  # numpy: any non-zero (and NaN) is True
    return f"(({dtypes.c_type(out_dtype)}){args[0]})"


astype_p = register(Primitive("astype", Kind.ELEMENTWISE, _astype_rule, _astype_reference, c_expr=_astype_c))

UNARY_FLOAT = [exp_p, log_p, log1p_p, expm1_p, sqrt_p, tanh_p, sinh_p, cosh_p, sin_p, cos_p, tan_p, arctan_p,
               floor_p, ceil_p, reciprocal_p]
UNARY_NUMERIC = [negative_p, square_p, abs_p, sign_p]
BINARY_ARITH = [add_p, subtract_p, multiply_p, divide_p, power_p, maximum_p, minimum_p]
COMPARE = [less_p, less_equal_p, greater_p, greater_equal_p, equal_p, not_equal_p]
LOGICAL = [logical_and_p, logical_or_p, logical_not_p]
