"""Every primitive and every supported numpy spelling, through the C backend AND the interpreter,
compared with numpy's own result: values, dtype and shape.

Registry-driven: test_every_primitive_has_a_case traces all cases and fails when a primitive
in PRIMITIVES appears in none of them, so a new op is tested the moment it exists.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
from tracejit import pytree
from tracejit.ir.interpret import evaluate
from tracejit.ops import PRIMITIVES, Kind
from tracejit.passes.pipeline import optimize

FLOATS = [np.float32, np.float64]


def _rand(shape, dtype, low=-2.0, high=2.0, seed=0):
    r = np.random.default_rng(seed + len(shape) * 7 + int(np.prod(shape, dtype=np.int64)))
    return r.uniform(low, high, shape).astype(dtype)


def pos(shape, dtype, seed=0):
    return _rand(shape, dtype, 0.1, 3.0, seed)


def rnd(shape, dtype, seed=0):
    return _rand(shape, dtype, -2.0, 2.0, seed)


def ints(shape, dtype=np.int64, low=-5, high=6, seed=0):
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


def tolerance(dtype, exact):
    if exact:
        return dict(rtol=0, atol=0)
    if np.dtype(dtype) == np.float32:
        return dict(rtol=2e-6, atol=1e-6)
    return dict(rtol=1e-13, atol=1e-14)


def run_interpreter(fn, args):
    traced = tj.jit(fn).lower(*args).traced
    leaves, _ = pytree.flatten((args, {}))
    outs = evaluate(traced.graph, [np.asarray(x) for x in leaves])
    return pytree.unflatten(traced.out_treedef, outs)


def assert_same(got, want, exact, label):
    got_leaves, got_tree = pytree.flatten(got)
    want_leaves, want_tree = pytree.flatten(want)
    assert got_tree == want_tree, f"{label}: structure {got_tree} != {want_tree}"
    for path, g, w in zip(pytree.leaf_paths(want_tree), got_leaves, want_leaves):
        g, w, where = np.asarray(g), np.asarray(w), f"{label}, output {path}"
        assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != numpy's {w.dtype}"
        assert g.shape == w.shape, f"{where}: shape {g.shape} != numpy's {w.shape}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, equal_nan=True, err_msg=where, **tolerance(w.dtype, exact))
        else:
            np.testing.assert_array_equal(g, w, err_msg=where)


def check(fn, *args, exact=False):
    """tj.jit(fn) (the C path) and the interpreter both match numpy on `args`."""
    with np.errstate(all="ignore"):
        want = fn(*args)
    got = tj.jit(fn)(*args)
    assert_same(got, want, exact, "C backend")
    assert_same(run_interpreter(fn, args), want, exact, "interpreter")


# ---- cases: (id, function, argument maker(dtype), exact) ----------------------------------------
UNARY_FLOAT = {
    "exp": (np.exp, rnd), "log": (np.log, pos), "log1p": (np.log1p, pos), "expm1": (np.expm1, rnd),
    "sqrt": (np.sqrt, pos), "tanh": (np.tanh, rnd), "sinh": (np.sinh, rnd), "cosh": (np.cosh, rnd),
    "sin": (np.sin, rnd), "cos": (np.cos, rnd), "tan": (np.tan, lambda s, d: _rand(s, d, -1.2, 1.2)),
    "arctan": (np.arctan, rnd), "reciprocal": (np.reciprocal, pos),
    "exp2": (np.exp2, rnd), "log2": (np.log2, pos), "log10": (np.log10, pos),
    "arcsin": (np.arcsin, lambda s, d: _rand(s, d, -0.99, 0.99)), "arccos": (np.arccos, lambda s, d: _rand(s, d, -0.99, 0.99)),
    "arcsinh": (np.arcsinh, rnd), "arccosh": (np.arccosh, lambda s, d: _rand(s, d, 1.0, 4.0)),
    "arctanh": (np.arctanh, lambda s, d: _rand(s, d, -0.9, 0.9)), "cbrt": (np.cbrt, rnd),
}
UNARY_EXACT = {
    "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc, "negative": np.negative, "square": np.square,
    "abs": np.abs, "sign": np.sign,
}
BINARY_EXACT = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum,
    "minimum": np.minimum, "less": np.less, "less_equal": np.less_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "equal": np.equal, "not_equal": np.not_equal,
    "floor_divide": np.floor_divide, "remainder": np.remainder,
}


@pytest.mark.parametrize("dtype", FLOATS)
def test_unary_float(dtype):
    """Every float-only unary op in one program, each on inputs from its domain."""
    inputs = {name: make((3, 5), dtype) for name, (_, make) in UNARY_FLOAT.items()}
    check(lambda xs: {name: UNARY_FLOAT[name][0](x) for name, x in xs.items()}, inputs)


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64])
def test_unary_exact(dtype):
    is_int = np.dtype(dtype).kind == "i"
    x = ints((4, 6), dtype) if is_int else rnd((4, 6), dtype)
    check(lambda x: {name: f(x) for name, f in UNARY_EXACT.items()}, x, exact=True)


def test_floor_ceil_trunc_of_bools_keep_bool():
    check(lambda x: (np.floor(x), np.ceil(x), np.trunc(x)), np.array([True, False]), exact=True)


def test_arithmetic_ufuncs_on_bools_use_numpys_bool_loops():
    """numpy has '??->?' loops for these: add is or, multiply is and, abs the identity. Before,
    tracejit refused them (DTypeError)."""
    a, b = np.array([True, False, True, False]), np.array([True, True, False, False])
    check(lambda a, b: (a + b, a * b, np.maximum(a, b), np.minimum(a, b), np.fmax(a, b), np.fmin(a, b),
                        np.abs(a), np.add(a, True), (a * b).sum(), a + 1), a, b, exact=True)


@pytest.mark.parametrize("fn", [lambda b: np.square(b), lambda b: b % b, lambda b: b // b, lambda b: np.exp(b),
                                lambda b: np.logaddexp(b, b), lambda b: np.heaviside(b, b), lambda b: np.power(b, b)])
def test_a_result_numpy_makes_int8_or_float16_is_a_dtype_error(fn):
    """numpy gives int8 / float16 here; computing in int32 / float32 instead would change the
    dtypes (and so the promotions) of everything after, so tracejit says so at the line."""
    b = np.array([True, False, True])
    with np.errstate(all="ignore"):
        assert fn(b).dtype in (np.int8, np.float16)
    with pytest.raises(tj.DTypeError, match=r"in numpy, a dtype tracejit does not compute in .* \(at "):
        tj.jit(fn)(b)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_and_bool_matmul_are_numpys(dtype):
    """No BLAS for these, in numpy or here: integers sum in their own dtype and wrap around, bools
    are an or of ands. Transposed and batched operands, vectors, and np.dot; DTypeError before."""
    rng = np.random.default_rng(5)
    make = (lambda s: rng.random(s) < 0.4) if dtype is np.bool_ else (lambda s: rng.integers(-9, 10, s).astype(dtype))
    a, b, batch = make((5, 7)), make((7, 3)), make((2, 3, 7))
    check(lambda a, b, batch: (a @ b, a.T.T @ b, b.T @ a.T, a[0] @ b, a @ b[:, 0], batch @ b, np.dot(a, b),
                               np.matmul(a[:, :0], b[:0])), a, b, batch, exact=True)
    if dtype is not np.bool_:
        big = np.full((2, 3), np.iinfo(dtype).max // 3, dtype)
        check(lambda big: big @ big.T, big, exact=True)  # wraps around, as numpy's does


def test_reductions_over_axes_of_one_fuse_with_full_reductions():
    """np.std over an axis of length 1 beside np.any over everything, in one fused loop: the loop
    nest failed with a KeyError. A sum over one element is 0.0 + it, as in numpy (-0.0 -> 0.0)."""
    a = np.array([[0.5, 2.0, -0.0, -1.0]])
    b = np.array([[True, False, True, True]])
    check(lambda a, b: np.where(np.sqrt(np.abs(a)) > 0, np.any(a, axis=None), np.std(b, axis=0, keepdims=True)),
          a, b, exact=True)
    check(lambda a: (a.sum(axis=0), a.max(axis=0) + a.sum(), a.prod(axis=0), a.argmin(axis=0)), a, exact=True)
    got = tj.jit(lambda a: a.sum(axis=0))(a)
    assert not np.signbit(got[2]) and np.signbit(a[0, 2])


@pytest.mark.parametrize("dtype", FLOATS)
def test_sin_and_cos_of_arctan_keep_nan(dtype):
    """gcc folds sin(atan(x)) to x / sqrt(x*x + 1) or copysign(1, x) once math calls may not set
    errno, and gave +-1 (cos: 0) for a nan; toolchain.py turns the atan builtin off."""
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.5, -3.0, 1e30], dtype)
    check(lambda x: (np.sin(np.arctan(x)), np.cos(np.arctan(x)), np.sin(np.arctan(x * 0))), x)


def test_adding_a_float_zero_keeps_numpys_sign_of_zero():
    x = np.array([-0.0, 0.0, 1.5], np.float32)
    for fn in (lambda x: x + 0.0, lambda x: 0.0 + x, lambda x: x - (-0.0), lambda x: x + (-0.0), lambda x: x - 0.0):
        np.testing.assert_array_equal(np.signbit(tj.jit(fn)(x)), np.signbit(fn(x)))


def test_integer_power_with_a_negative_constant_exponent_is_numpys_value_error():
    x = np.array([2, 0, -1], np.int32)
    negative_exponents = (lambda x: x ** -1, lambda x: np.power(x, np.int64(-2)), lambda x: x ** np.array([1, -1, 2]))
    for fn in negative_exponents:
        with pytest.raises(ValueError, match="Integers to negative integer powers are not allowed"):
            fn(x)
        with pytest.raises(ValueError, match="Integers to negative integer powers are not allowed"):
            tj.jit(fn)(x)
    check(lambda x: (x ** 2, x ** 0, x.astype(np.float32) ** -1), x, exact=True)


def test_float_to_int_casts_give_numpys_integer_indefinite():
    """nan, inf and values out of range become the most negative integer, as numpy's x86 loops
    give; a plain C cast is undefined there, and gcc folded a constant inf to INT32_MAX."""
    values = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 2.7, -2.7, -0.0, 2.0 ** 31, -2.0 ** 31, 9.3e18, 1e30])
    for source in FLOATS:
        for target in (np.int32, np.int64):
            x = values.astype(source)
            with np.errstate(invalid="ignore"):
                want = (x.astype(target), np.maximum(x, np.inf).astype(target))
            got = tj.jit(lambda x: (x.astype(target), np.maximum(x, np.inf).astype(target)))(x)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=f"{np.dtype(source)} -> {np.dtype(target)}")
    flags = np.array([True, False])  # np.maximum(bool, inf) is inf whatever the flag: gcc folds it
    with np.errstate(invalid="ignore"):
        want = np.maximum(flags, np.inf).astype(np.int32)
    np.testing.assert_array_equal(tj.jit(lambda b: np.maximum(b, np.inf).astype(np.int32))(flags), want)


NEGATIVE_POWER = "Integers to negative integer powers are not allowed"


@pytest.mark.parametrize("size", [12, 400_000])  # one thread, and the parallel loops
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_power_with_an_exponent_negative_at_run_time_is_numpys_value_error(size, dtype):
    """The loop ORs `exponent < 0` into a flag and the kernel returns numpy's error, with the
    line: in an elementwise loop, a row reduction, a cond branch, on both call paths."""
    x = (np.arange(size) % 7).astype(dtype).reshape(-1, 4)
    y = (np.arange(size) % 3).astype(dtype).reshape(-1, 4)
    functions = [lambda x, y: x ** y + 1, lambda x, y: (x ** y).sum(axis=1),
                 lambda x, y: tj.cond(x.sum() >= 0, lambda x, y: np.power(x, y), lambda x, y: x, x, y)]
    for fn in functions:
        jitted = tj.jit(fn)
        np.testing.assert_array_equal(jitted(x, y), fn(x, y))  # exponents >= 0: numpy's values
        negative = y.copy()
        negative.flat[size // 2] = -1
        for _ in range(2):  # the first call takes the Python path, the second the C dispatcher
            with pytest.raises(ValueError, match=NEGATIVE_POWER + r".*\(at test_ops\.py:\d+\)"):
                jitted(x, negative)
        np.testing.assert_array_equal(jitted(x, y), fn(x, y))  # and it still runs afterwards
    assert "_invalid" not in tj.jit(lambda x, y: x ** y).lower(x.astype(float), y.astype(float)).c_source


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_rint_and_round_half_to_even(dtype):
    halves = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.25, 1.005, -0.0, np.inf, np.nan, 123.456, -7.75])
    x = halves.astype(dtype) if np.dtype(dtype).kind == "f" else ints((7,), dtype)
    check(lambda x: (np.rint(x), np.round(x), np.around(x, 2), x.round(1)), x, exact=True)
    if np.dtype(dtype).kind == "f":
        check(lambda x: np.round(x, -1), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64])
def test_binary_broadcasting(dtype):
    make = rnd if np.dtype(dtype).kind == "f" else (lambda s, d, seed=0: ints(s, d, seed=seed))
    ops = lambda x, y: {name: f(x, y) for name, f in BINARY_EXACT.items()}  # noqa: E731
    check(ops, make((3, 1, 5), dtype), make((4, 1), dtype, seed=1), exact=True)
    check(ops, make((2, 3), dtype), make((), dtype, seed=2), exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64])
def test_floor_divide_and_remainder_at_their_edges(dtype):
    """Python's // and %: rounded down, the divisor's sign; zero divisors, MIN // -1, infinities,
    nan and signed zeros as numpy gives them (exact, signs of zeros included)."""
    if np.dtype(dtype).kind == "i":
        low = np.iinfo(dtype).min
        a = np.array([7, -7, 7, -7, 5, 0, low, low, low, 3, -1], dtype)
        b = np.array([2, 2, -2, -2, 0, 0, -1, 1, 7, low, 3], dtype)
    else:
        a = np.array([7.5, -7.5, 7.5, -7.5, 5, 0, -0.0, np.inf, np.nan, 1e30, 3, -3, 1.0, -0.0], dtype)
        b = np.array([2, 2, -2, -2, 0, 0, 3, 2, 1, 1e-30, np.inf, np.inf, -0.0, -2.0], dtype)
    check(lambda a, b: (a // b, a % b, np.floor_divide(a, b), np.remainder(a, b)), a, b, exact=True)
    with np.errstate(all="ignore"):
        got, want = tj.jit(lambda a, b: a % b)(a, b), a % b
    assert np.array_equal(np.signbit(got), np.signbit(want))
    check(lambda a: (a // 3, a % 3, 7 // (a + 20), (a + 20) % 4), a[np.isfinite(a)] if a.dtype.kind == "f" else a // 2,
          exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_divide_and_power(dtype):
    check(np.divide, rnd((3, 4), dtype), pos((4,), dtype))
    check(np.power, pos((3, 4), dtype), rnd((3, 1), dtype))
    check(lambda x: x ** 2, rnd((5,), dtype), exact=True)
    check(lambda x: 1 / x, np.array([0.0, -0.0, 2.0, np.inf], dtype))


def test_integer_power_and_abs_wrap():
    check(np.power, ints((6,), np.int64, 0, 5), ints((6,), np.int64, 0, 9), exact=True)
    check(np.abs, np.array([np.iinfo(np.int32).min, -3, 3], np.int32), exact=True)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_maximum_minimum_propagate_nan(name, dtype):
    a = np.array([np.nan, 1.0, -np.inf, 0.0, -0.0, np.nan], dtype)
    b = np.array([1.0, np.nan, 2.0, -0.0, 0.0, np.nan], dtype)
    check(getattr(np, name), a, b, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], dtype)
    check(lambda x: (np.log(x), np.exp(x), np.sign(x), np.sqrt(x), x / 0.0), x)
    check(lambda x: (np.isnan(x), np.isinf(x), np.isfinite(x), np.log2(x), np.arcsin(x), np.cbrt(x)), x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_isnan_isinf_isfinite_of_integers_and_bools(dtype):
    x = np.array([0, 1, 1, 0], dtype) if dtype == np.bool_ else np.array([0, -3, np.iinfo(dtype).min, 7], dtype)
    check(lambda x: (np.isnan(x), np.isinf(x), np.isfinite(x)), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64])
def test_fmax_fmin_ignore_one_nan(dtype):
    """Values as numpy's (which of -0.0 and 0.0 a tie of zeros gives differs between numpy's own
    float32 and float64 loops, so it is not compared)."""
    if np.dtype(dtype).kind == "f":
        a = np.array([-0.0, np.nan, 1.0, np.nan, 2.0, -np.inf, 7.0], dtype)
        b = np.array([-0.0, 1.0, np.nan, np.nan, 3.0, 5.0, np.inf], dtype)
    else:
        a, b = ints((3, 4), dtype), ints((4,), dtype, seed=1)
    check(lambda a, b: (np.fmax(a, b), np.fmin(a, b), np.fmax(a, 2), np.fmin(b, a)), a, b, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_copysign(dtype):
    x = np.array([3.0, -2.0, 0.0, -0.0, np.inf, np.nan, 1.5], dtype)
    y = np.array([-0.0, np.nan, -1.0, 2.0, -np.inf, -1.0, 0.0], dtype)
    check(lambda x, y: (np.copysign(x, y), np.copysign(x, -1.0), np.copysign(2.0, y)), x, y, exact=True)
    with np.errstate(all="ignore"):
        assert np.array_equal(np.signbit(tj.jit(np.copysign)(x, y)), np.signbit(np.copysign(x, y)))


@pytest.mark.parametrize("dtype", FLOATS)
def test_arctan2_and_hypot(dtype):
    check(np.arctan2, rnd((3, 4), dtype), rnd((4,), dtype, seed=1))
    check(np.hypot, rnd((3, 1), dtype), rnd((1, 4), dtype, seed=2))
    quadrants = np.array([1.0, 1.0, -1.0, -1.0, 0.0, -0.0, 0.0, -0.0, np.inf, np.nan], dtype)
    signs = np.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, np.inf, 1.0], dtype)
    check(lambda y, x: (np.arctan2(y, x), np.hypot(y, x)), quadrants, signs)


@pytest.mark.parametrize("dtype", FLOATS + [np.int64, np.bool_])
def test_any_and_all_with_axes_keepdims_and_no_elements(dtype):
    x = np.array([[0, 1, 2], [0, 0, 0], [3, 4, 5]]).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[0, 0] = np.nan  # nan is true
    check(lambda x: (np.any(x), np.all(x), x.any(axis=1), x.all(axis=0, keepdims=True), np.any(x, axis=(0, 1)),
                     (x > 0).all(axis=-1)), x, exact=True)
    check(lambda x: (np.any(x[:, :0], axis=1), np.all(x[:, :0], axis=1, keepdims=True), np.all(x[:0]),
                     x[:0].any()), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_flip_take_take_along_axis_tril_triu(dtype):
    x = (ints((3, 4, 5), dtype) if np.dtype(dtype).kind == "i" else rnd((3, 4, 5), dtype))
    check(lambda x: (np.flip(x), np.flip(x, 1), np.flip(x, (0, -1))), x, exact=True)
    check(lambda x: (np.take(x, [0, 7, 59]), np.take(x, [[0, 3], [1, 1]], axis=1), np.take(x, np.array([2, 0]), axis=0),
                     np.take(x, -1, axis=2)), x, exact=True)
    check(lambda x: (np.take_along_axis(x, np.argmax(x, axis=2)[..., None], axis=2),
                     np.take_along_axis(x, np.array([[[2], [0], [1], [2]]]), axis=0)), x, exact=True)
    check(lambda x: (np.tril(x), np.triu(x, 1), np.tril(x[0], -2), np.triu(x[1], -1)), x, exact=True)


def test_take_out_of_range_raises_index_error():
    with pytest.raises(IndexError, match="out of bounds"):
        tj.jit(lambda x, i: np.take(x, i))(np.ones(4), np.array([1, 4]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_linalg_norm_and_logaddexp(dtype):
    x = rnd((3, 4), dtype)
    check(lambda x: (np.linalg.norm(x), np.linalg.norm(x, axis=1), np.linalg.norm(x[0], 2),
                     np.linalg.norm(x, axis=0, keepdims=True), np.linalg.norm(x, "fro")), x)
    check(lambda x, y: (np.logaddexp(x, y), np.logaddexp(x, x), np.logaddexp(x, 3.0)), x, rnd((4,), dtype, seed=3))
    edges = np.array([np.inf, -np.inf, np.nan, np.inf, 0.0, -0.0, 1e30], dtype)
    check(np.logaddexp, edges, np.array([np.inf, -np.inf, 1.0, -np.inf, 0.0, 0.0, -1e30], dtype))
    with pytest.raises(tj.UnsupportedOperation, match="ord=1"):
        tj.jit(lambda x: np.linalg.norm(x, 1))(x)


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.int64, np.bool_])
def test_cumsum_is_numpys_to_the_bit(dtype):
    """Sequential additions in the output dtype, as np.cumsum: the same bits; ints and bools in
    int64; -0.0 kept at the start; strided and transposed inputs; every axis and the flattened form."""
    x = rnd((3, 4, 5), dtype) if np.dtype(dtype).kind == "f" else ints((3, 4, 5), dtype) > 0 \
        if dtype == np.bool_ else ints((3, 4, 5), dtype)
    check(lambda x: (np.cumsum(x), np.cumsum(x, axis=0), x.cumsum(axis=1), np.cumsum(x, -1),
                     np.cumsum(x.T, axis=1), np.cumsum(x[:, ::2], axis=2), np.cumsum(x[:1], axis=0)), x, exact=True)
    if np.dtype(dtype).kind == "f":
        zeros = np.array([-0.0, -0.0, 1.0, np.inf, -np.inf, np.nan], dtype)
        with np.errstate(all="ignore"):
            got, want = tj.jit(np.cumsum)(zeros), np.cumsum(zeros)
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        check(lambda x: np.cumsum(x, dtype=np.float64), x)


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_roll_repeat_tile_pad_split(dtype):
    x = ints((3, 4), dtype) if np.dtype(dtype).kind == "i" else rnd((3, 4), dtype)
    check(lambda x: (np.roll(x, 1), np.roll(x, -1, axis=1), np.roll(x, (1, 2), axis=(0, 1)), np.roll(x, 7, 0)), x, exact=True)
    check(lambda x: (np.repeat(x, 2), np.repeat(x, 3, axis=1), np.repeat(x, 2, axis=-2)), x, exact=True)
    check(lambda x: (np.tile(x, 2), np.tile(x, (2, 1)), np.tile(x[0], (2, 2)), np.tile(x, (2, 1, 1))), x, exact=True)
    check(lambda x: (np.pad(x, 1), np.pad(x, ((0, 1), (2, 0))), np.pad(x, 2, constant_values=5)), x, exact=True)
    check(lambda x: (*np.split(x, 2, axis=1), *np.split(x, [1, 3], axis=1), *np.split(x, 3)), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_diag_trace_average_ptp(dtype):
    x = ints((3, 4), dtype) if np.dtype(dtype).kind == "i" else rnd((3, 4), dtype)
    check(lambda x: (np.diag(x), np.diag(x, 1), np.diag(x, -1), np.diag(x, 9), np.trace(x), np.trace(x, 1)), x, exact=True)
    check(lambda x: tuple(np.diag(x[0, :k], k - 2) for k in (1, 2, 4)), x, exact=True)
    check(lambda x: (np.average(x), np.average(x, axis=0), np.ptp(x), np.ptp(x, axis=1)), x)
    if np.dtype(dtype).kind == "f":
        check(lambda x, w: np.average(x, axis=1, weights=w), x, pos((3, 4), dtype))


@pytest.mark.parametrize("dtype", FLOATS + [np.int64])
def test_heaviside(dtype):
    x = np.array([-1, 0, 2, -3], dtype)
    if np.dtype(dtype).kind == "f":
        x = np.concatenate([x, np.array([np.nan, -0.0, np.inf, -np.inf], dtype)])
    check(lambda x: (np.heaviside(x, 0.5), np.heaviside(x, x)), x, exact=True)


def test_heaviside_computes_in_the_loop_numpy_picks_for_its_operands():
    """heaviside(bool, float32) is float32 in numpy (its float32 loop), and heaviside(0.0, float32)
    too (a Python float is weak); before, both came out float64."""
    h, f = np.array([True, False, True]), np.array([0.5, 2.0, -1.0], np.float32)
    check(lambda h, f: (np.heaviside(h, f), np.heaviside(0.0, f), np.heaviside(f, 1), np.heaviside(f, h)), h, f,
          exact=True)


def test_reorderings_refuse_what_they_cannot_trace():
    x = np.ones((2, 3))
    for fun, match in [(lambda x: np.pad(x, 1, mode="edge"), "pad"), (lambda x: np.repeat(x, [1, 2], axis=0), "repeat"),
                       (lambda x: np.average(x, weights=x[0]), "average")]:
        with pytest.raises(tj.UnsupportedOperation, match=match):
            tj.jit(fun)(x)


EINSUMS = ["bij,bjk->bik", "ij,jk", "ij,jk->ki", "bij,bjk->ik", "i,i->", "i,j->ij", "ij->ji", "ij->", "bij->bj",
           "bij,bkj->bik", "bhqd,bhkd->bhqk", "ij,i->j", "bij,j->bi", "ij,kj"]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("subscripts", EINSUMS)
def test_einsum_of_one_and_two_operands(subscripts, dtype):
    sizes = dict(b=2, h=3, q=5, d=4, k=6, i=4, j=4)
    terms = subscripts.split("->")[0].split(",")
    operands = [rnd(tuple(sizes[c] for c in term), dtype, seed=n) for n, term in enumerate(terms)]
    check(lambda *xs: np.einsum(subscripts, *xs), *operands)


@pytest.mark.parametrize("subscripts, why", [("ii->i", "repeated"), ("...ij,jk", "'...'"), ("ij,jk,kl", "two")])
def test_einsum_forms_not_traced_are_named(subscripts, why):
    operands = [np.ones((3, 3))] * len(subscripts.split("->")[0].split(","))
    with pytest.raises(tj.UnsupportedOperation, match="einsum"):
        tj.jit(lambda *xs: np.einsum(subscripts, *xs))(*operands)


def test_logical_ops_and_where():
    a, b = ints((4, 5), np.int64) > 0, ints((5,), np.int64, seed=1) > 0
    check(np.logical_and, a, b, exact=True)
    check(np.logical_or, a, b, exact=True)
    check(np.logical_not, a, exact=True)
    check(np.logical_xor, a, b, exact=True)
    check(np.logical_xor, ints((4,), np.int64), rnd((4,), np.float64), exact=True)  # any dtype: its truth
    check(lambda a, b: (a & b, a | b, ~a), a, b, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_where_and_clip(dtype):
    x = rnd((4, 5), dtype)
    check(lambda x: np.where(x > 0, x, 0.5 * x), x, exact=True)
    check(lambda x, y: np.where(x > y, x, y), x, rnd((5,), dtype, seed=3), exact=True)
    check(lambda x: np.clip(x, -0.5, 0.5), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS + [np.int64, np.bool_])
def test_astype(dtype):
    if np.dtype(dtype) == np.bool_:
        x = ints((7,), np.int64) > 0
    else:
        x = np.array([-2.5, -1.0, -0.0, 0.0, 0.5, 1.7, 3.0], np.float64).astype(dtype)
    targets = [np.float32, np.float64, np.int32, np.int64, np.bool_]
    check(lambda x: [x.astype(to) for to in targets], x, exact=True)


# ---- reductions --------------------------------------------------------------------------------
REDUCE_AXES = [None, 0, 1, (0, 2), -1]


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min", "mean"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_reductions(name, dtype):
    x = _rand((3, 4, 5), dtype, 0.5, 1.5) if name == "prod" else rnd((3, 4, 5), dtype)
    check(lambda x: [getattr(np, name)(x, axis=axis) for axis in REDUCE_AXES]
          + [getattr(x, name)(axis=axis, keepdims=True) for axis in REDUCE_AXES], x)


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min"])
def test_integer_and_bool_reductions(name):
    x = ints((3, 4), np.int64, -3, 4)
    check(lambda x: getattr(np, name)(x, axis=1), x, exact=True)
    check(lambda x: getattr(np, name)(x.astype(np.int32), axis=0), x, exact=True)
    if name in ("max", "min"):
        check(lambda x: getattr(np, name)(x > 0, axis=1), x, exact=True)


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_max_min_propagate_nan(name, dtype):
    x = rnd((3, 6), dtype)
    x[1, 2] = np.nan
    x[2, 0] = -np.inf
    check(lambda x: (getattr(np, name)(x, axis=1), getattr(np, name)(x)), x, exact=True)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", FLOATS + [np.int32])
def test_arg_reductions(name, dtype):
    x = ints((4, 6), np.int64, -2, 3).astype(dtype)  # ties: the first wins
    check(lambda x: getattr(np, name)(x, axis=1), x, exact=True)
    check(lambda x: getattr(x, name)(axis=0), x, exact=True)
    check(lambda x: getattr(np, name)(x), x, exact=True)
    if np.dtype(dtype).kind == "f":
        x[1, 3] = np.nan
        x[1, 5] = np.nan
        check(lambda x: getattr(np, name)(x, axis=1), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_var_std_mean_over_axes(dtype):
    x = rnd((4, 3, 5), dtype)
    check(lambda x: (np.var(x, axis=0), np.std(x, axis=(0, 2)), x.mean(axis=(1, 2)), np.mean(x)), x)
    check(lambda x: np.std(x, axis=1, keepdims=True, ddof=1), x)


def test_float32_sum_is_accurate():
    x = np.random.default_rng(0).standard_normal(1_000_003, dtype=np.float32) + np.float32(1.0)
    got = tj.jit(np.sum)(x)
    exact = np.sum(x.astype(np.float64))
    assert got.dtype == np.float32
    assert abs(float(got) - exact) <= 2e-7 * abs(exact) + 1e-3


# ---- shape ops ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_shape_ops(dtype):
    x = rnd((2, 3, 4), dtype)
    check(lambda x: x.reshape(6, 4) * 2, x, exact=True)
    check(lambda x: x.reshape(4, -1), x, exact=True)
    check(lambda x: x.T + 1, x, exact=True)
    check(lambda x: np.transpose(x, (1, 0, 2)).reshape(3, 8), x, exact=True)
    check(lambda x: np.broadcast_to(x[:, :1], (2, 3, 4)) - x, x, exact=True)
    check(lambda x: x[:, 1:3, ::2] * x[:, :2, 1::2], x, exact=True)
    check(lambda x: x[::-1, 2, -1], x, exact=True)
    check(lambda x: np.expand_dims(x, 1).squeeze(), x, exact=True)
    check(lambda x: np.squeeze(x[:, :1, :], axis=1), x, exact=True)
    check(lambda x: x.ravel()[3:9], x, exact=True)
    check(lambda x: np.swapaxes(x, 0, 2), x, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_concatenate_and_stack(dtype):
    a, b = rnd((2, 3), dtype), rnd((2, 5), dtype, seed=1)
    check(lambda a, b: np.concatenate([a, b], axis=1), a, b, exact=True)
    check(lambda a, b: np.concatenate([a * 2, a.T.reshape(2, 3)], axis=0), a, b, exact=True)
    check(lambda a: np.stack([a, a + 1, -a], axis=1), a, exact=True)
    check(lambda a: np.stack([a, a], axis=-1), a, exact=True)


@pytest.mark.parametrize("dtype", FLOATS)
def test_filled_like(dtype):
    x = rnd((3, 4), dtype)
    check(lambda x: (np.zeros_like(x), np.ones_like(x) + x, np.full_like(x, 2.5) * x), x, exact=True)


def test_arange_iota():
    check(lambda x: x + np.arange(5), ints((3, 5), np.int64), exact=True)


# ---- indexing --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_gather(dtype):
    x = rnd((5, 4), dtype)
    labels = np.array([3, 0, -1, 2, 1])
    check(lambda x, y: x[np.arange(5), y], x, labels, exact=True)
    check(lambda x, i: x[i], x, np.array([[0, -5], [4, 2]]), exact=True)
    check(lambda x, i: x[:, i], x, np.array([1, 1, 3], np.int32), exact=True)


def test_gather_out_of_range_raises_index_error():
    f = tj.jit(lambda x, i: x[i])
    with pytest.raises(IndexError, match="index 7 is out of bounds for axis 0 with size 5"):
        f(np.ones(5, np.float32), np.array([1, 7]))
    with pytest.raises(IndexError, match="-6"):
        f(np.ones(5, np.float32), np.array([-6]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_scatter_add_through_gradient(dtype):
    """scatter_add has no numpy spelling; its reference is np.add.at (checked against it here)."""
    from tracejit.ir.builder import GraphBuilder
    from tracejit.runtime.executable import build_executable

    b = GraphBuilder("scatter")
    upd = b.new_input((6, 3), dtype, "upd")
    idx = b.new_input((6,), np.int64, "idx")
    out = b.emit("scatter_add", upd, idx, shape=(4, 3))
    graph = b.build([out])
    u, i = rnd((6, 3), dtype), np.array([0, 3, 3, -1, 1, 0])
    want = np.zeros((4, 3), dtype)
    np.add.at(want, i, u)
    got = build_executable(graph, "scatter")(u, i)[0]
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **tolerance(dtype, False))
    np.testing.assert_allclose(evaluate(graph, [u, i])[0], want, **tolerance(dtype, False))
    with pytest.raises(IndexError, match="index 4 is out of bounds"):
        build_executable(graph, "scatter")(u, np.array([0, 4, 0, 0, 0, 0]))


# ---- matmul --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_matmul_spellings(dtype):
    a, b = rnd((4, 3), dtype), rnd((3, 5), dtype, seed=1)
    v, w = rnd((3,), dtype, seed=2), rnd((4,), dtype, seed=3)
    check(lambda a, b: a @ b, a, b)
    check(np.matmul, a, b)
    check(np.dot, a, b)
    check(lambda a, v: a @ v, a, v)
    check(lambda w, a: w @ a, w, a)
    check(lambda v: np.dot(v, v), v)
    check(lambda a, b: a.T.T @ b + 1.0, a, b)
    check(lambda a, b: (b.T @ a.T), a, b)


@pytest.mark.parametrize("dtype", FLOATS)
def test_matmul_batched_and_broadcast(dtype):
    a, b = rnd((2, 3, 4, 5), dtype), rnd((3, 5, 2), dtype, seed=1)
    check(np.matmul, a, b)
    check(lambda a, b: np.tanh(a @ b + 1.0), rnd((2, 1, 4, 5), dtype), b)
    check(lambda a, b: np.swapaxes(a, -1, -2) @ b, rnd((3, 5, 4), dtype), rnd((3, 5, 6), dtype, seed=1))
    check(lambda a, b: a[:, ::2] @ b, rnd((4, 6), dtype), rnd((3, 2), dtype, seed=1))


def test_matmul_empty_inner_axis():
    check(np.matmul, np.ones((3, 0), np.float32), np.ones((0, 4), np.float32))


# ---- 0-d, empty, zero-size ----------------------------------------------------------------------
def test_zero_d_and_empty():
    check(lambda x: x * 2 + 1, np.array(3.0, np.float32), exact=True)
    check(lambda x: (x * 2, x.sum(axis=0), x.max(axis=1)), np.ones((0, 3), np.float32), exact=True)
    check(lambda x: (x.sum(axis=1), np.exp(x)), np.ones((3, 0), np.float64), exact=True)


# ---- completeness ------------------------------------------------------------------------------
CASES_FOR_COVERAGE = [
    (lambda x: [f(x) for f, _ in UNARY_FLOAT.values()], (pos((2,), np.float32),)),
    (lambda x: [f(x) for f in UNARY_EXACT.values()] + [np.rint(x)], (rnd((2,), np.float32),)),
    (lambda x, y: [f(x, y) for f in BINARY_EXACT.values()] + [x / y, x ** y], (pos((2,), np.float32),) * 2),
    (lambda x: (np.logical_and(x > 0, x < 1), np.logical_or(x > 0, x < 1), ~(x > 0), np.where(x > 0, x, 1.0),
                x.astype(np.int32), np.logical_xor(x > 0, x < 1), np.isnan(x), np.isinf(x), np.isfinite(x)),
     (rnd((2,), np.float32),)),
    (lambda x, y: (np.arctan2(x, y), np.hypot(x, y), np.fmax(x, y), np.fmin(x, y), np.copysign(x, y)),
     (rnd((2,), np.float32),) * 2),
    (lambda x: (x.sum(0), x.prod(0), x.max(0), x.min(0), x.argmax(0), x.argmin(0), x.cumsum(1)),
     (rnd((2, 3), np.float32),)),
    (lambda x: (x.reshape(3, 2), x.T, np.broadcast_to(x, (2, 2, 3)), x[:, 1:], np.concatenate([x, x])),
     (rnd((2, 3), np.float32),)),
    (lambda x, y: (x[np.arange(2), y], x @ x.T), (rnd((2, 3), np.float32), np.array([0, 2]))),
]


def test_every_primitive_has_a_case():
    covered = set()
    for fn, args in CASES_FOR_COVERAGE:
        graph = tj.jit(fn).lower(*args).traced.graph
        covered |= {node.prim.name for g in (graph, optimize(graph)) for node in g.nodes}
    covered |= {"scatter_add"}  # test_scatter_add_through_gradient builds it directly
    required = {name for name, prim in PRIMITIVES.items() if prim.kind is not Kind.CONTROL}
    missing = sorted(required - covered)
    assert not missing, f"primitives without a test case in test_ops.py: {missing}"
