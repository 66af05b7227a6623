"""Elementwise primitives: unary, binary, compare, logical, where, cast.

Operands of one node share a dtype (the tracer inserts `astype` per numpy promotion) and
broadcast as numpy's do; the C backend reads broadcast operands with stride 0.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from .py_spelling import dtype_text, py_template
from .registry import Aval, Kind, Primitive, c_template, register
from .shape_util import broadcast_shapes
from .vjp_util import add, astype, balanced_share, const, div, eq, log, mul, neg, sub, unbroadcast, where

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


def _elementwise(name, reference, c, py, allowed=NUMERIC, result_dtype=None, **rules):
    """`c`: the C spelling, a c_template string or a c_expr; `py`: the numpy one, a py_template string."""
    prim = Primitive(
        name=name,
        kind=Kind.ELEMENTWISE,
        shape_rule=_same_dtype_rule(name, allowed, result_dtype),
        reference=reference,
        c_expr=c_template(c) if isinstance(c, str) else c,
        py_expr=py_template(py),
        **rules,
    )
    return register(prim)


# ---- VJP rules (IR in, IR out; y is the node's output). Ties and zeros: see each docstring. ----
def _unary(derivative):
    """VJP of y = f(x): ct * dy/dx, with dy/dx = derivative(b, x, y) emitted as IR."""

    def vjp(b, node, ct):
        return [mul(b, ct, derivative(b, node.inputs[0], node.out))]

    return vjp


def _unary_div(denominator):
    """VJP of y = f(x) whose derivative is 1/denominator(b, x, y) (divide, not multiply by 1/d)."""

    def vjp(b, node, ct):
        return [div(b, ct, denominator(b, node.inputs[0], node.out))]

    return vjp


def _binary(rule):
    """VJP of z = f(x, y) under broadcasting: `rule` gives output-shaped cotangents, then each is
    summed back to its operand's shape."""

    def vjp(b, node, ct):
        x, y = node.inputs
        cts = rule(b, ct, x, y, node.out)
        return [unbroadcast(b, c, v.shape) for c, v in zip(cts, node.inputs)]

    return vjp


def _one_plus(b, v, w):
    return add(b, const(b, 1, v), mul(b, v, w))


def _power_rule(b, ct, x, p, out):
    """d/dx = p*x**(p-1) (0 where p == 0); d/dp = x**p * log(x) (0 where x == 0), as JAX guards it."""
    zero, one = const(b, 0, x), const(b, 1, x)
    d_x = where(b, eq(b, p, zero), zero, mul(b, p, b.emit("power", x, sub(b, p, one))))
    x_is_zero = eq(b, x, zero)
    d_p = where(b, x_is_zero, zero, mul(b, out, log(b, where(b, x_is_zero, one, x))))
    return mul(b, ct, d_x), mul(b, ct, d_p)


def _chooser_rule(b, ct, x, y, out):
    """maximum/minimum: the operand equal to the result gets the cotangent; on a tie (x == y) each
    gets half, as in JAX. Where the result is NaN, neither operand equals it and both get 0."""
    return mul(b, ct, balanced_share(b, x, out, y)), mul(b, ct, balanced_share(b, y, out, x))


# ---- unary, float math (libm names; `{f}` is the float32 suffix) ----------------------------
def _exp_c(args, in_dtypes, out_dtype, **params):
    """float32: csrc/tracejit.h's inlined tj_exp_f32; float64: libm's exp, which gcc vectorizes
    through libmvec."""
    return f"tj_exp_f32({args[0]})" if in_dtypes[0] == dtypes.float32 else f"exp({args[0]})"


def _exp_fast_c(args, in_dtypes):
    """float32: tj_exp_fast_f32, right while the result is a normal float (or 0 far below)."""
    if in_dtypes[0] != dtypes.float32:
        return None
    return f"tj_exp_fast_f32({args[0]})", f"tj_exp_outside_fast_f32({args[0]})"


exp_p = _elementwise("exp", np.exp, _exp_c, "np.exp({0})", FLOAT_ONLY, vjp=_unary(lambda b, x, y: y),
                     c_fast=_exp_fast_c)
log_p = _elementwise("log", np.log, "log{f}({0})", "np.log({0})", FLOAT_ONLY, vjp=_unary_div(lambda b, x, y: x))
log1p_p = _elementwise("log1p", np.log1p, "log1p{f}({0})", "np.log1p({0})", FLOAT_ONLY,
                       vjp=_unary_div(lambda b, x, y: add(b, x, const(b, 1, x))))
expm1_p = _elementwise("expm1", np.expm1, "expm1{f}({0})", "np.expm1({0})", FLOAT_ONLY,
                       vjp=_unary(lambda b, x, y: add(b, y, const(b, 1, y))))
sqrt_p = _elementwise("sqrt", np.sqrt, "sqrt{f}({0})", "np.sqrt({0})", FLOAT_ONLY,
                      vjp=_unary_div(lambda b, x, y: mul(b, y, const(b, 2, y))))
tanh_p = _elementwise("tanh", np.tanh, "tanh{f}({0})", "np.tanh({0})", FLOAT_ONLY,
                      vjp=_unary(lambda b, x, y: sub(b, const(b, 1, y), mul(b, y, y))))
sinh_p = _elementwise("sinh", np.sinh, "sinh{f}({0})", "np.sinh({0})",
                      FLOAT_ONLY, vjp=_unary(lambda b, x, y: b.emit("cosh", x)))
cosh_p = _elementwise("cosh", np.cosh, "cosh{f}({0})", "np.cosh({0})",
                      FLOAT_ONLY, vjp=_unary(lambda b, x, y: b.emit("sinh", x)))
sin_p = _elementwise("sin", np.sin, "sin{f}({0})", "np.sin({0})",
                     FLOAT_ONLY, vjp=_unary(lambda b, x, y: b.emit("cos", x)))
cos_p = _elementwise("cos", np.cos, "cos{f}({0})", "np.cos({0})", FLOAT_ONLY,
                     vjp=_unary(lambda b, x, y: neg(b, b.emit("sin", x))))
tan_p = _elementwise("tan", np.tan, "tan{f}({0})", "np.tan({0})",
                     FLOAT_ONLY, vjp=_unary(lambda b, x, y: _one_plus(b, y, y)))
arctan_p = _elementwise("arctan", np.arctan, "atan{f}({0})", "np.arctan({0})", FLOAT_ONLY,
                        vjp=_unary_div(lambda b, x, y: _one_plus(b, x, x)))


def _sqrt(b, v):
    return b.emit("sqrt", v)


def _one_minus_square(b, x):
    return sub(b, const(b, 1, x), mul(b, x, x))


# glibc's libmvec has vector versions of all of these (csrc/tracejit.h; accuracy in tests/test_math.py).
exp2_p = _elementwise("exp2", np.exp2, "exp2{f}({0})", "np.exp2({0})", FLOAT_ONLY,
                      vjp=_unary(lambda b, x, y: mul(b, y, const(b, np.log(2.0), y))))
log2_p = _elementwise("log2", np.log2, "log2{f}({0})", "np.log2({0})", FLOAT_ONLY,
                      vjp=_unary_div(lambda b, x, y: mul(b, x, const(b, np.log(2.0), x))))
log10_p = _elementwise("log10", np.log10, "log10{f}({0})", "np.log10({0})", FLOAT_ONLY,
                       vjp=_unary_div(lambda b, x, y: mul(b, x, const(b, np.log(10.0), x))))
arcsin_p = _elementwise("arcsin", np.arcsin, "asin{f}({0})", "np.arcsin({0})", FLOAT_ONLY,
                        vjp=_unary_div(lambda b, x, y: _sqrt(b, _one_minus_square(b, x))))
arccos_p = _elementwise("arccos", np.arccos, "acos{f}({0})", "np.arccos({0})", FLOAT_ONLY,
                        vjp=_unary_div(lambda b, x, y: neg(b, _sqrt(b, _one_minus_square(b, x)))))
arcsinh_p = _elementwise("arcsinh", np.arcsinh, "asinh{f}({0})", "np.arcsinh({0})", FLOAT_ONLY,
                         vjp=_unary_div(lambda b, x, y: _sqrt(b, _one_plus(b, x, x))))
arccosh_p = _elementwise("arccosh", np.arccosh, "acosh{f}({0})", "np.arccosh({0})", FLOAT_ONLY,
                         vjp=_unary_div(lambda b, x, y: _sqrt(b, sub(b, mul(b, x, x), const(b, 1, x)))))
arctanh_p = _elementwise("arctanh", np.arctanh, "atanh{f}({0})", "np.arctanh({0})", FLOAT_ONLY,
                         vjp=_unary_div(lambda b, x, y: _one_minus_square(b, x)))
cbrt_p = _elementwise("cbrt", np.cbrt, "cbrt{f}({0})", "np.cbrt({0})", FLOAT_ONLY,
                      vjp=_unary_div(lambda b, x, y: mul(b, const(b, 3, y), mul(b, y, y))))


def _rounding_c(libm: str):
    """floor/ceil/trunc: libm on floats; on integers and bools the identity (numpy 2 keeps the dtype)."""
    def render(args, in_dtypes, out_dtype, **params):
        if not dtypes.is_float(out_dtype):
            return f"({args[0]})"
        return f"{libm}{'f' if out_dtype == dtypes.float32 else ''}({args[0]})"

    render.template = f"{libm}{{f}}({{0}})"
    return render


floor_p = _elementwise("floor", np.floor, _rounding_c("floor"), "np.floor({0})", ANY, zero_vjp=True)
ceil_p = _elementwise("ceil", np.ceil, _rounding_c("ceil"), "np.ceil({0})", ANY, zero_vjp=True)
trunc_p = _elementwise("trunc", np.trunc, _rounding_c("trunc"), "np.trunc({0})", ANY, zero_vjp=True)
# rint rounds half to even, as numpy does; C's rint does the same in the default rounding mode.
rint_p = _elementwise("rint", np.rint, "rint{f}({0})", "np.rint({0})", FLOAT_ONLY, zero_vjp=True)
reciprocal_p = _elementwise("reciprocal", np.reciprocal, "(({T})1 / {0})", "np.reciprocal({0})", FLOAT_ONLY,
                            vjp=_unary(lambda b, x, y: neg(b, mul(b, y, y))))

# ---- unary, any numeric dtype -------------------------------------------------------------
negative_p = _elementwise("negative", np.negative, "(-{0})", "-{0}", vjp=lambda b, node, ct: [neg(b, ct)], cheap=True)
square_p = _elementwise("square", np.square, "({0} * {0})", "np.square({0})",
                        vjp=_unary(lambda b, x, y: mul(b, x, const(b, 2, x))), cheap=True)
# abs: the derivative at 0 is sign(0) = 0.
abs_p = _elementwise("abs", np.abs, "tj_abs_{t}({0})", "np.abs({0})", vjp=_unary(lambda b, x, y: b.emit("sign", x)),
                     cheap=True)
sign_p = _elementwise("sign", np.sign, "tj_sign_{t}({0})", "np.sign({0})", zero_vjp=True)

# ---- binary arithmetic --------------------------------------------------------------------
add_p = _elementwise("add", np.add, "({0} + {1})", "{0} + {1}",
                     commutative=True, vjp=_binary(lambda b, ct, x, y, z: (ct, ct)), cheap=True)
subtract_p = _elementwise(  # negate after summing over broadcast axes: the same bits, less work
    "subtract", np.subtract, "({0} - {1})", "{0} - {1}",
    vjp=lambda b, node, ct: [unbroadcast(b, ct, node.inputs[0].shape),
                             neg(b, unbroadcast(b, ct, node.inputs[1].shape))], cheap=True,
)
multiply_p = _elementwise("multiply", np.multiply, "({0} * {1})", "{0} * {1}", commutative=True,
                          vjp=_binary(lambda b, ct, x, y, z: (mul(b, ct, y), mul(b, ct, x))), cheap=True)
divide_p = _elementwise("divide", np.true_divide, "({0} / {1})", "{0} / {1}", FLOAT_ONLY,
                        vjp=_binary(lambda b, ct, x, y, z: (div(b, ct, y), neg(b, div(b, mul(b, ct, z), y)))))
def _negative_integer_power(in_dtypes):
    """numpy refuses an integer power with a negative exponent (a constant one is refused while
    tracing: trace/numpy_map.py); an exponent known only at run time is checked in the loop."""
    if dtypes.is_float(in_dtypes[-1]):
        return None
    return "({1} < 0)", "ValueError: Integers to negative integer powers are not allowed."


power_p = _elementwise("power", np.power, "tj_power_{t}({0}, {1})", "{0} ** {1}", vjp=_binary(_power_rule),
                       c_error=_negative_integer_power)
# Python's // and % (numpy's floor_divide and remainder): the quotient rounded down, the remainder
# with the divisor's sign; numpy's own npy_divmod for floats, and for integers 0 where the divisor
# is 0, as numpy gives (csrc/tracejit.h). d(x % y)/dy = -(x // y), as x % y = x - y * (x // y).
floor_divide_p = _elementwise("floor_divide", np.floor_divide, "tj_floor_divide_{t}({0}, {1})", "{0} // {1}",
                              zero_vjp=True)
remainder_p = _elementwise(
    "remainder", np.remainder, "tj_remainder_{t}({0}, {1})", "{0} % {1}",
    vjp=_binary(lambda b, ct, x, y, z: (ct, neg(b, mul(b, ct, b.emit("floor_divide", x, y))))),
)
def _arctan2_rule(b, ct, y, x, out):
    """d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)."""
    r2 = add(b, mul(b, x, x), mul(b, y, y))
    return div(b, mul(b, ct, x), r2), neg(b, div(b, mul(b, ct, y), r2))


arctan2_p = _elementwise("arctan2", np.arctan2, "atan2{f}({0}, {1})", "np.arctan2({0}, {1})", FLOAT_ONLY,
                         vjp=_binary(_arctan2_rule))
hypot_p = _elementwise("hypot", np.hypot, "hypot{f}({0}, {1})", "np.hypot({0}, {1})", FLOAT_ONLY, commutative=True,
                       vjp=_binary(lambda b, ct, x, y, h: (div(b, mul(b, ct, x), h), div(b, mul(b, ct, y), h))))
maximum_p = _elementwise("maximum", np.maximum, "tj_maximum_{t}({0}, {1})", "np.maximum({0}, {1})", commutative=True,
                         vjp=_binary(_chooser_rule), cheap=True)
minimum_p = _elementwise("minimum", np.minimum, "tj_minimum_{t}({0}, {1})", "np.minimum({0}, {1})", commutative=True,
                         vjp=_binary(_chooser_rule), cheap=True)

# fmax/fmin ignore a nan operand; the operand equal to the result gets the cotangent, as for maximum.
fmax_p = _elementwise("fmax", np.fmax, "tj_fmax_{t}({0}, {1})", "np.fmax({0}, {1})", vjp=_binary(_chooser_rule))
fmin_p = _elementwise("fmin", np.fmin, "tj_fmin_{t}({0}, {1})", "np.fmin({0}, {1})", vjp=_binary(_chooser_rule))
# d copysign(x, y)/dx = sign(x) * (the sign y gives, -0.0 included); nothing flows to y.
copysign_p = _elementwise(
    "copysign", np.copysign, "copysign{f}({0}, {1})", "np.copysign({0}, {1})", FLOAT_ONLY,
    vjp=lambda b, node, ct: [unbroadcast(b, mul(b, ct, mul(b, b.emit("sign", node.inputs[0]), b.emit(
        "copysign", const(b, 1, node.inputs[1]), node.inputs[1]))), node.inputs[0].shape), None],
)


# ---- comparisons and logic (bool results; no gradient flows through them) ------------------
less_p = _elementwise("less", np.less, "({0} < {1})", "{0} < {1}", ANY, dtypes.bool_, zero_vjp=True, cheap=True)
less_equal_p = _elementwise("less_equal", np.less_equal, "({0} <= {1})", "{0} <= {1}", ANY, dtypes.bool_,
                            zero_vjp=True, cheap=True)
greater_p = _elementwise("greater", np.greater, "({0} > {1})", "{0} > {1}", ANY, dtypes.bool_, zero_vjp=True,
                         cheap=True)
greater_equal_p = _elementwise("greater_equal", np.greater_equal, "({0} >= {1})", "{0} >= {1}",
                               ANY, dtypes.bool_, zero_vjp=True, cheap=True)
equal_p = _elementwise("equal", np.equal, "({0} == {1})", "{0} == {1}",
                       ANY, dtypes.bool_, zero_vjp=True, commutative=True, cheap=True)
not_equal_p = _elementwise(
    "not_equal", np.not_equal, "({0} != {1})", "{0} != {1}", ANY, dtypes.bool_, zero_vjp=True, commutative=True,
    cheap=True
)
logical_and_p = _elementwise(
    "logical_and", np.logical_and, "({0} && {1})", "np.logical_and({0}, {1})",
    ANY, dtypes.bool_, zero_vjp=True, commutative=True, cheap=True
)
logical_or_p = _elementwise(
    "logical_or", np.logical_or, "({0} || {1})", "np.logical_or({0}, {1})",
    ANY, dtypes.bool_, zero_vjp=True, commutative=True, cheap=True
)
logical_xor_p = _elementwise(
    "logical_xor", np.logical_xor, "(!{0} != !{1})", "np.logical_xor({0}, {1})",
    ANY, dtypes.bool_, zero_vjp=True, commutative=True, cheap=True
)
# On integers and bools numpy answers these without looking (never nan or inf): so does the C.
isnan_p = _elementwise("isnan", np.isnan, "({0} != {0})", "np.isnan({0})", ANY, dtypes.bool_, zero_vjp=True, cheap=True)
isinf_p = _elementwise("isinf", np.isinf, "(fabs{f}({0}) == INFINITY)", "np.isinf({0})",
                       ANY, dtypes.bool_, zero_vjp=True)
isfinite_p = _elementwise("isfinite", np.isfinite, "({0} - {0} == 0)", "np.isfinite({0})",
                          ANY, dtypes.bool_, zero_vjp=True, cheap=True)
logical_not_p = _elementwise("logical_not", np.logical_not, "(!{0})", "np.logical_not({0})",
                             ANY, dtypes.bool_, zero_vjp=True, cheap=True)


# ---- where(cond, x, y): cond is bool, x and y share a dtype --------------------------------
def _where_rule(cond, x, y):
    if cond.dtype != dtypes.bool_:
        raise DTypeError(f"where: condition must be bool, got {cond.dtype}")
    _check_dtypes("where", (x, y), ANY)
    return Aval(broadcast_shapes(cond.shape, x.shape, y.shape), x.dtype)


def _where_vjp(b, node, ct):
    """The chosen operand gets the cotangent, the other zero; the condition gets none."""
    cond, x, y = node.inputs
    zero = const(b, 0, ct)
    return [None, unbroadcast(b, where(b, cond, ct, zero), x.shape), unbroadcast(b, where(b, cond, zero, ct), y.shape)]


where_p = register(
    Primitive("where", Kind.ELEMENTWISE, _where_rule, np.where, c_expr=c_template("({0} ? {1} : {2})"),
              vjp=_where_vjp, cheap=True, py_expr=py_template("np.where({0}, {1}, {2})"))
)


# ---- astype(x, dtype=...) -----------------------------------------------------------------
def _astype_rule(x, *, dtype):
    return Aval(x.shape, dtypes.canonical(dtype))


def _astype_reference(x, *, dtype):
    return np.asarray(x).astype(dtype)


def _astype_c(args, in_dtypes, out_dtype, **params):
    if out_dtype == dtypes.bool_:
        return f"({args[0]} != 0)"  # numpy: any non-zero (and NaN) is True
    if dtypes.is_float(in_dtypes[0]) and not dtypes.is_float(out_dtype):  # defined for nan, inf, overflow
        return f"tj_to_{dtypes.short_name(out_dtype)}_{dtypes.short_name(in_dtypes[0])}({args[0]})"
    return f"(({dtypes.c_type(out_dtype)}){args[0]})"


def _astype_py(args, params, node, ctx):
    return f"{args[0]}.astype({dtype_text(params['dtype'])})"


def _astype_vjp(b, node, ct):
    """float -> float: cast the cotangent back. To or from int/bool no gradient flows."""
    x = node.inputs[0]
    if not (dtypes.is_float(x.dtype) and dtypes.is_float(node.out.dtype)):
        return [None]
    return [astype(b, ct, dtype=x.dtype)]


astype_p = register(
    Primitive("astype", Kind.ELEMENTWISE, _astype_rule, _astype_reference, c_expr=_astype_c, vjp=_astype_vjp,
              cheap=True, py_expr=_astype_py)
)

UNARY_FLOAT = [exp_p, log_p, log1p_p, expm1_p, sqrt_p, tanh_p, sinh_p, cosh_p, sin_p, cos_p, tan_p, arctan_p,
               rint_p, reciprocal_p]
UNARY_ANY = [floor_p, ceil_p, trunc_p]  # identity on integers and bools
UNARY_NUMERIC = [negative_p, square_p, abs_p, sign_p]
BINARY_ARITH = [add_p, subtract_p, multiply_p, divide_p, power_p, maximum_p, minimum_p]
COMPARE = [less_p, less_equal_p, greater_p, greater_equal_p, equal_p, not_equal_p]
LOGICAL = [logical_and_p, logical_or_p, logical_not_p]
