"""Random numpy expressions, run by numpy and by tj.jit: the same values, dtype and shape, or both raise.

The other fuzzers compare the C backend with tracejit's own interpreter; this one compares with
numpy itself, so it also catches tracing-level mistakes: promotion, Python scalars (weak, or too
big for the dtype they meet), numpy scalars, bool loops, special values. Each expression mixes
ufuncs, operators, reductions, np.where, casts, shape functions and products over two arrays of
random dtypes and broadcastable shapes. It found the wrapped-around Python int literals, the missing bool loops of
np.add & co., heaviside's dtype, and integer powers with a negative constant exponent.

Arguments are sometimes of narrow dtypes (uint8, int8, uint16, float16). An op whose numpy result
has a dtype tracejit does not compute in (uint8 * 3, np.square of bools is int8, np.exp of bools
float16) must raise DTypeError saying so, like an unsupported function; where numpy
itself makes such a result at trace time, from Python scalars only (np.exp(True)), tracejit returns it
widened to float32 / int32, and the case is not compared.
Integer powers take exponents that may be negative at run time, where numpy raises ValueError and
so must the compiled loop. Left out on purpose (tracejit differs from numpy there, as documented
limitations): np.reciprocal of integers, and reductions with an axis of a 0-d array.
"""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj

DTYPES = ["float32", "float64", "int32", "int64", "bool"]
SUPPORTED = [np.dtype(d) for d in DTYPES]
# arguments: mostly supported dtypes, sometimes narrow ones (computed widened where numpy widens)
ARGUMENT_DTYPES = DTYPES * 3 + ["uint8", "int8", "uint16", "float16"]
UNARY = ["np.negative", "np.abs", "np.exp", "np.log", "np.sqrt", "np.sign", "np.floor", "np.ceil", "np.rint",
         "np.trunc", "np.square", "np.tanh", "np.sin", "np.isnan", "np.isfinite", "np.logical_not",
         "np.expm1", "np.log1p", "np.cbrt", "np.arctan"]
BINARY = ["np.add", "np.subtract", "np.multiply", "np.true_divide", "np.floor_divide", "np.remainder",
          "np.maximum", "np.minimum", "np.fmax", "np.fmin", "np.arctan2", "np.hypot", "np.copysign",
          "np.logaddexp", "np.equal", "np.less", "np.greater_equal", "np.not_equal", "np.logical_and",
          "np.logical_or", "np.logical_xor", "np.heaviside"]
OPERATORS = ["+", "-", "*", "/", "//", "%", "<", ">=", "==", "!=", "&", "|"]
REDUCTIONS = ["sum", "prod", "max", "min", "mean", "argmax", "argmin", "any", "all", "var", "std", "cumsum"]
# Shape functions, products, clip, casts and method spellings on an argument X (Y: a subexpression)
OTHERS = ["(X @ np.astype(a.T, np.float32))", "np.matmul(X, np.ones((X.shape[-1], 2), X.dtype))", "np.dot(X, X.T)",
          "X[0]", "X[..., 1:]", "X[::-1]", "X[:, None]", "X.T", "X.reshape(-1)", "np.concatenate([X, X])",
          "np.stack([X, X], axis=-1)", "np.clip(X, -1, 2)", "np.clip(X, 0.5, None)", "np.mean(X, dtype=np.float64)",
          "X.sum(axis=0, dtype=np.int64)", "np.round(X, 1)", "np.astype(X, bool)", "np.maximum.reduce(X, axis=0)",
          "np.add.reduce(X, axis=-1)", "np.cumsum(X, axis=0)", "np.flip(X, 0)", "np.expand_dims(Y, 0)",
          "np.broadcast_to(X, (2,) + X.shape)", "np.tile(X, 2)", "np.repeat(X, 2, axis=0)", "np.roll(X, 1)",
          "X.astype(np.float32).var(axis=0, ddof=1)", "np.outer(X, X)", "np.linalg.norm(X)",
          "np.argmax(X, axis=-1, keepdims=True)", "np.take(X, [0, 1])", "np.abs(X).min(axis=-1)",
          "np.floor_divide(X, 3)", "X % -3", "np.sign(Y) * X", "np.logical_not(X) | (X > 1)", "X != X",
          "np.minimum(X, 2**31)", "X < 2**40", "np.arctan2(X, 2)", "np.tril(np.atleast_2d(X))"]
LITERALS = ["3", "-2", "0", "2**31", "-2**31 - 1", "2**40", "2**62", "255", "0.5", "-2.0", "1e-3", "1e30", "1e40",
            "-0.0", "float('nan')", "float('inf')", "True", "False", "np.float32(1.5)", "np.float32(-0.25)",
            "np.int32(3)", "np.int32(-2)", "np.float64(0.1)", "np.int64(2)"]


class Expressions:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def pick(self, options):
        return options[int(self.rng.integers(0, len(options)))]

    def leaf(self):
        return self.pick(["a", "b"]) if self.rng.random() < 0.8 else self.pick(LITERALS)

    def expr(self, depth: int) -> str:
        r = self.rng.random()
        if depth == 0 or r < 0.2:
            return self.leaf()
        sub = lambda: self.expr(depth - 1)  # noqa: E731
        if r < 0.3:
            return self.pick(OTHERS).replace("X", self.pick(["a", "b"])).replace("Y", sub())
        if r < 0.45:
            return f"{self.pick(UNARY)}({sub()})"
        if r < 0.6:
            return f"{self.pick(BINARY)}({sub()}, {sub()})"
        if r < 0.75:
            return f"({sub()} {self.pick(OPERATORS)} {sub()})"
        if r < 0.8:  # half the time exponents >= 0, so that integer powers do not all raise
            exponent = self.pick(["a", "b", "2", "3", "0.5", "-1"])
            return f"np.power({sub()}, {exponent if self.rng.random() < 0.5 else f'np.abs({exponent})'})"
        if r < 0.9:
            name = self.pick(REDUCTIONS)
            operand, axis = (self.pick(["a", "b"]), self.pick(["0", "-1", "None"])) if self.rng.random() < 0.5 \
                else (sub(), "None")  # an axis only on the (at least 1-d) arguments
            keep = ", keepdims=True" if name not in ("argmax", "argmin", "cumsum") and self.rng.random() < 0.3 else ""
            return f"np.{name}({operand}, axis={axis}{keep})"
        if r < 0.95:
            return f"np.where({sub()} > 0, {sub()}, {sub()})"
        return f"np.astype({sub()}, np.{self.pick(DTYPES)})"

    def array(self, dtype: str, shape):
        if dtype == "bool":
            return self.rng.random(shape) < 0.5
        if dtype.startswith(("int", "uint")):
            a = self.rng.integers(-6, 7, shape).astype(dtype)
            if self.rng.random() < 0.2:
                a.flat[0] = np.iinfo(dtype).max
            return a
        a = (self.rng.standard_normal(shape) * self.pick([1, 3, 30])).astype(dtype)
        if self.rng.random() < 0.3:
            a.flat[int(self.rng.integers(0, a.size))] = self.pick([np.nan, np.inf, -np.inf, 0.0, -0.0, 6e4])
        return a


def _difference(got, want, float32_inside: bool) -> str | None:
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"{got.dtype}{list(got.shape)} where numpy gives {want.dtype}{list(want.shape)}"
    if want.dtype.kind in "biu":
        return None if np.array_equal(got, want) else "values differ"
    nan = np.isnan(want)
    if not np.array_equal(np.isnan(got), nan):
        return "nan in different places"
    g, w = got[~nan].astype(np.float64), want[~nan].astype(np.float64)
    inf = np.isinf(w) | np.isinf(g)
    if not np.array_equal(g[inf], w[inf]):
        return "inf in different places"
    g, w = g[~inf], w[~inf]
    # float32 math differs from numpy's by a few ulps, which later ops (x - x, pow) can amplify,
    # also into a float64 result
    rtol = 1e-4 if want.dtype == np.float32 or float32_inside else 1e-9
    floor = rtol * 1e-3 * (np.max(np.abs(w)) if w.size else 0.0)
    bad = np.abs(g - w) > rtol * np.abs(w) + floor
    return None if not bad.any() else f"values differ by up to {np.max(np.abs(g - w)):.3g}"


def _same_error_expected(numpy_error, our_error) -> bool:
    """True when the errors should agree and do not: numpy's ValueError for a negative integer
    power must come out of the compiled loop as such. numpy evaluates in order and may meet it
    before another error that tracejit finds first, while tracing (a ShapeError): that is allowed."""
    if "negative integer powers" not in str(numpy_error) or isinstance(our_error, tj.TracejitError):
        return False
    return not (isinstance(our_error, ValueError) and "negative integer powers" in str(our_error))


def _run(fn, *args):
    try:
        with np.errstate(all="ignore"):
            return fn(*args), None
    except Exception as exc:  # noqa: BLE001 - any error counts as "raises" here
        return None, exc


@pytest.mark.parametrize("seed", range(4))
def test_random_numpy_expressions_match_numpy(seed):
    gen = Expressions(seed)
    shapes = [(3, 4), (4,), (1, 4), (3, 1)]
    failures, compared = [], 0
    for _ in range(40):
        da, db = gen.pick(ARGUMENT_DTYPES), gen.pick(ARGUMENT_DTYPES)
        a, b = gen.array(da, gen.pick(shapes[:3])), gen.array(db, gen.pick(shapes))
        source = gen.expr(int(gen.rng.integers(1, 4)))
        namespace = {"np": np}
        exec(f"def f(a, b):\n    return {source}\n", namespace)  # noqa: S102 - generated test code
        f = namespace["f"]
        want, numpy_error = _run(f, a, b)
        got, our_error = _run(tj.jit(f), a, b)
        case = f"{source}   a: {da}{list(a.shape)}, b: {db}{list(b.shape)}"
        if isinstance(our_error, tj.UnsupportedOperation) or "tracejit does not compute in" in str(our_error):
            continue  # named as unsupported, with the line: allowed
        if numpy_error is not None or our_error is not None:
            if (numpy_error is None) != (our_error is None) or _same_error_expected(numpy_error, our_error):
                failures.append(f"{case}\n    numpy: {numpy_error!r}\n    tracejit: {our_error!r}")
            continue
        if np.asarray(want).dtype not in SUPPORTED:
            continue  # made by numpy from Python scalars while tracing (see the module docstring)
        problem = _difference(got, want, "float32" in (da, db) or "float32" in source)
        compared += 1
        if problem:
            failures.append(f"{case}\n    {problem}\n    numpy: {want!r}\n    tracejit: {got!r}")
    assert not failures, "\n".join(failures)
    assert compared >= 20  # most expressions must run on both sides for this to test anything
