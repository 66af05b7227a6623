"""csrc/tracejit.h against numpy: the libmvec vector math and the tj_* helpers.

Every function is applied in a vectorizable loop compiled with tracejit's own toolchain,
so what is measured is what generated kernels get: the AVX-512 (or AVX2...) libmvec
versions, not scalar libm. Accuracy is measured in ulps against a higher-precision
reference (float64 numpy for float32, np.longdouble -- 80-bit x87 -- for float64);
inf, nan and signed zeros must match numpy's exactly.
"""
import re

import numpy as np
import pytest

from tracejit.compile import get_or_build

MAX_ULP = 4.0
DTYPES = {np.float32: ("float", "f32"), np.float64: ("double", "f64")}

# numpy ufunc name -> C name of the double version (the float one adds "f").
UNARY = {"exp": "exp", "exp2": "exp2", "expm1": "expm1", "log": "log", "log2": "log2",
         "log10": "log10", "log1p": "log1p", "sin": "sin", "cos": "cos", "tan": "tan",
         "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
         "tanh": "tanh", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "cbrt": "cbrt"}
BINARY = {"power": "pow", "arctan2": "atan2", "hypot": "hypot"}
# Functions generated code takes from csrc/tracejit.h instead of libmvec: (numpy name, dtype) -> C name.
OWN = {("exp", "f32"): "tj_exp_f32"}
HELPERS_UNARY = ("sign", "square", "reciprocal")
HELPERS_BINARY = ("maximum", "minimum", "floor_divide", "remainder")
INT_HELPERS = ("sign", "maximum", "minimum", "floor_divide", "remainder")
INT_TYPES = {np.int32: ("int32_t", "i32"), np.int64: ("int64_t", "i64")}


# `omp simd` as on generated loops: gcc vectorizes atan through its simd declaration only under
# it (toolchain.py builds with -fno-builtin-atan).
def _c_unary(name, ctype, expr):
    return (f"void tj_t_{name}(const {ctype} *TJ_RESTRICT x, {ctype} *TJ_RESTRICT y, int64_t n)\n"
            f"{{\n#pragma omp simd\n for (int64_t i = 0; i < n; i++) y[i] = {expr.format('x[i]')}; }}\n")


def _c_binary(name, ctype, expr):
    return (f"void tj_t_{name}(const {ctype} *TJ_RESTRICT a, const {ctype} *TJ_RESTRICT b, "
            f"{ctype} *TJ_RESTRICT y, int64_t n)\n"
            f"{{\n#pragma omp simd\n for (int64_t i = 0; i < n; i++) y[i] = {expr.format('a[i]', 'b[i]')}; }}\n")


def _c_reduce(name, ctype, combine, init):
    return (f"{ctype} tj_t_{name}(const {ctype} *TJ_RESTRICT x, int64_t n)\n"
            f"{{ {ctype} acc = {init}; for (int64_t i = 0; i < n; i++) acc = {combine}(acc, x[i]); return acc; }}\n")


def _harness() -> str:
    """One C file with a loop per (function, dtype); names tj_t_<numpy name>_<suffix>."""
    parts = ['#include "tracejit.h"\n']
    for ctype, suf in DTYPES.values():
        f = "f" if suf == "f32" else ""
        parts += [_c_unary(f"{np_name}_{suf}", ctype, f"{OWN.get((np_name, suf), c_name + f)}({{}})")
                  for np_name, c_name in UNARY.items()]
        parts += [_c_binary(f"{np_name}_{suf}", ctype, f"{c_name}{f}({{}}, {{}})") for np_name, c_name in BINARY.items()]
        parts += [_c_unary(f"h{op}_{suf}", ctype, f"tj_{op}_{suf}({{}})") for op in HELPERS_UNARY]
        parts += [_c_binary(f"h{op}_{suf}", ctype, f"tj_{op}_{suf}({{}}, {{}})") for op in HELPERS_BINARY]
        parts.append(_c_reduce(f"max_{suf}", ctype, f"tj_max_combine_{suf}", "-INFINITY"))
        parts.append(_c_reduce(f"min_{suf}", ctype, f"tj_min_combine_{suf}", "INFINITY"))
    parts.append(_c_unary("exp_fast_f32", "float", "tj_exp_fast_f32({})"))
    parts.append("void tj_t_exp_outside_fast_f32(const float *TJ_RESTRICT x, int32_t *TJ_RESTRICT y, int64_t n)\n"
                 "{ for (int64_t i = 0; i < n; i++) y[i] = tj_exp_outside_fast_f32(x[i]); }\n")
    for ctype, suf in INT_TYPES.values():
        parts.append(_c_unary(f"hsign_{suf}", ctype, f"tj_sign_{suf}({{}})"))
        parts += [_c_binary(f"h{op}_{suf}", ctype, f"tj_{op}_{suf}({{}}, {{}})") for op in INT_HELPERS[1:]]
    return "".join(parts)


def _cdef(source: str) -> str:
    """Declarations for cffi: the signature line of every function in the harness."""
    lines = [line.replace("TJ_RESTRICT ", "") for line in source.splitlines() if line.startswith(("void ", "float ", "double "))]
    return "\n".join(line + ";" for line in lines)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """The harness compiled once per module, in a private cache folder."""
    source = _harness()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACEJIT_CACHE_DIR", str(tmp_path_factory.mktemp("math-cache")))
        return get_or_build(source, _cdef(source))


def _ptr(ffi, array):
    ctype = {**DTYPES, **INT_TYPES}[array.dtype.type][0]
    return ffi.from_buffer(f"{ctype}[]", array)


def _call(harness, name, *arrays):
    """Run tj_t_<name> over whole arrays; returns the output array."""
    out = np.empty_like(arrays[0])
    ptrs = [_ptr(harness.ffi, a) for a in (*arrays, out)]
    getattr(harness.lib, f"tj_t_{name}")(*ptrs, out.size)
    return out


def _specials(dtype):
    fi = np.finfo(dtype)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, fi.smallest_subnormal, -fi.smallest_subnormal,
            fi.tiny, -fi.tiny, fi.max, -fi.max, fi.eps, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0]
    return np.array(vals, dtype=dtype)


def _logspace(dtype, lo, hi, n, signs=(1.0,)):
    """n points per sign with magnitudes log-uniform in [lo, hi] (clipped to the dtype)."""
    fi = np.finfo(dtype)
    lo, hi = max(lo, float(fi.smallest_subnormal)), min(hi, float(fi.max))
    with np.errstate(over="ignore"):
        mags = np.minimum(np.geomspace(lo, hi, n), hi)
    return np.concatenate([s * mags for s in signs]).astype(dtype)


def _linspace(dtype, lo, hi, n):
    return np.linspace(lo, hi, n).astype(dtype)


def _domain(name, dtype):
    """A dense sweep over the useful inputs of each function (plus its overflow edges)."""
    fi = np.finfo(dtype)
    big, sub = float(fi.max), float(fi.smallest_subnormal)
    lmax, lsub = np.log(big), np.log(sub)
    both = (1.0, -1.0)
    lin, log = (lambda lo, hi: _linspace(dtype, lo, hi, 60001)), (lambda lo, hi, s=(1.0,): _logspace(dtype, lo, hi, 20001, s))
    table = {
        "exp": [lin(lsub - 2, lmax + 2), log(sub, 1, both)],
        "exp2": [lin(np.log2(sub) - 2, np.log2(big) + 2), log(sub, 1, both)],
        "expm1": [lin(-40, lmax + 2), log(sub, 1, both)],
        "log": [log(sub, big), lin(0.5, 2.0)], "log2": [log(sub, big), lin(0.5, 2.0)],
        "log10": [log(sub, big), lin(0.5, 2.0)],
        "log1p": [lin(-1, 1), log(sub, big), log(sub, 1, (-1.0,))],
        "sin": [lin(-20, 20), log(sub, 1e6, both)], "cos": [lin(-20, 20), log(sub, 1e6, both)],
        "tan": [lin(-20, 20), log(sub, 1e6, both)],
        "arcsin": [lin(-1, 1), log(sub, 1, both)], "arccos": [lin(-1, 1), log(sub, 1, both)],
        "arctan": [lin(-20, 20), log(sub, big, both)],
        "sinh": [lin(-lmax - 2, lmax + 2), log(sub, 1, both)], "cosh": [lin(-lmax - 2, lmax + 2)],
        "tanh": [lin(-20, 20), log(sub, big, both)],
        "arcsinh": [lin(-20, 20), log(sub, big, both)],
        "arccosh": [lin(1, 20), 1 + log(sub, 1).astype(dtype), log(1, big)],
        "arctanh": [lin(-1, 1), log(sub, 1, both)],
        "cbrt": [lin(-20, 20), log(sub, big, both)],
    }
    return np.concatenate(table[name] + [_specials(dtype)]).astype(dtype)


def _binary_domain(name, dtype, rng):
    """Random pairs plus every pair of special values."""
    n = 100_000
    s = _specials(dtype)
    sa, sb = np.repeat(s, s.size), np.tile(s, s.size)
    if name == "power":
        a = np.concatenate([np.exp(rng.uniform(-20, 20, n)), -rng.integers(1, 20, n // 4).astype(float)])
        b = np.concatenate([rng.uniform(-30, 30, n), rng.integers(-30, 30, n // 4).astype(float)])
    else:
        a = np.exp(rng.uniform(-80, 80, n)) * rng.choice([-1.0, 1.0], n)
        b = np.exp(rng.uniform(-80, 80, n)) * rng.choice([-1.0, 1.0], n)
    return (np.concatenate([a.astype(dtype), sa]), np.concatenate([b.astype(dtype), sb]))


def _reference(ufunc, dtype, *arrays):
    """float64 for float32 inputs, 80-bit long double for float64 inputs."""
    wide = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        return ufunc(*(a.astype(wide) for a in arrays))


def _max_ulp(got, ref, dtype):
    """Largest error in units of the last place of the correctly rounded result."""
    with np.errstate(all="ignore"):
        ref_t = ref.astype(dtype)
        finite = np.isfinite(ref_t) & np.isfinite(got)
        ulp = np.spacing(np.abs(ref_t[finite])).astype(ref.dtype)
        err = np.abs(got[finite].astype(ref.dtype) - ref[finite]) / ulp
    return float(err.max()) if err.size else 0.0


def _assert_same_specials(got, expected, inputs_desc):
    """Where either result is nan, inf or zero, both must be the same (signs included)."""
    special = ~np.isfinite(got) | ~np.isfinite(expected) | (got == 0) | (expected == 0)
    g, e = got[special], expected[special]
    same = (np.isnan(g) & np.isnan(e)) | ((g == e) & (np.signbit(g) == np.signbit(e)))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, f"{inputs_desc}: ours {g[bad[:5]]} vs numpy {e[bad[:5]]} at {bad[:5]}"


def _assert_same_class(got, expected, desc):
    """nan exactly where numpy has nan; +-inf exactly where numpy has +-inf."""
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{desc}: nan positions differ"
    inf = np.isinf(got) | np.isinf(expected)
    assert np.array_equal(got[inf], expected[inf]), f"{desc}: inf positions differ"


def test_harness_calls_libmvec_vector_versions(harness):
    """The loops must have been vectorized with libmvec, or this file tests scalar libm."""
    dynstr = harness.path.read_bytes()
    for np_name, c_name in {**UNARY, **BINARY}.items():
        for f, suf in (("f", "f32"), ("", "f64")):
            if (np_name, suf) in OWN:
                continue
            assert re.search(rb"_ZGV[bcde]N\d+v+_" + (c_name + f).encode() + rb"\x00", dynstr), \
                f"{c_name}{f} was not vectorized: no libmvec symbol in {harness.path}"


def _check_ulps_and_classes(harness, name, dtype, x):
    """The compiled `name` on x: within MAX_ULP of the correctly rounded result, and nan/inf/zero
    where numpy has them. Returns (ours, numpy's) for further checks."""
    got = _call(harness, f"{name}_{DTYPES[dtype][1]}", x)
    ufunc = getattr(np, name)
    ulps = _max_ulp(got, _reference(ufunc, dtype, x), dtype)
    assert ulps <= MAX_ULP, f"{name} {dtype.__name__}: {ulps:.2f} ulp"
    with np.errstate(all="ignore"):
        expected = ufunc(x)
    _assert_same_class(got, expected, f"{name} {dtype.__name__}")
    return got, expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_accuracy(harness, name, dtype):
    x = _domain(name, dtype)
    got, expected = _check_ulps_and_classes(harness, name, dtype, x)
    s = _specials(dtype)
    _assert_same_specials(got[-s.size:], expected[-s.size:], f"{name}({s})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BINARY)
def test_binary_accuracy(harness, name, dtype, rng):
    a, b = _binary_domain(name, dtype, rng)
    got = _call(harness, f"{name}_{DTYPES[dtype][1]}", a, b)
    ufunc = getattr(np, name)
    ulps = _max_ulp(got, _reference(ufunc, dtype, a, b), dtype)
    assert ulps <= MAX_ULP, f"{name} {dtype.__name__}: {ulps:.2f} ulp"
    with np.errstate(all="ignore"):
        expected = ufunc(a, b)
    _assert_same_class(got, expected, f"{name} {dtype.__name__}")
    n = _specials(dtype).size ** 2
    _assert_same_specials(got[-n:], expected[-n:], f"{name} on special pairs")


def _bits_equal(got, expected):
    """Bitwise equality, except that any nan matches any nan."""
    nan = np.isnan(expected)
    return np.array_equal(np.isnan(got), nan) and np.array_equal(got[~nan].tobytes(), expected[~nan].tobytes())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", HELPERS_UNARY + HELPERS_BINARY)
def test_float_helpers_match_numpy_bitwise(harness, name, dtype, rng):
    """tj_sign/square/reciprocal/maximum/minimum/floor_divide/remainder == numpy, bit for bit."""
    s = _specials(dtype)
    x = np.concatenate([s, (rng.standard_normal(5000) * 10).astype(dtype), np.round(rng.standard_normal(5000) * 5).astype(dtype)])
    y = np.concatenate([s[::-1], (rng.standard_normal(5000) * 3).astype(dtype), np.round(rng.standard_normal(5000) * 3).astype(dtype)])
    xs, ys = np.repeat(s, s.size), np.tile(s, s.size)
    a, b = np.concatenate([x, xs]), np.concatenate([y, ys])
    args = (a,) if name in HELPERS_UNARY else (a, b)
    got = _call(harness, f"h{name}_{DTYPES[dtype][1]}", *args)
    with np.errstate(all="ignore"):
        expected = getattr(np, name)(*args)
    assert _bits_equal(got, expected), f"{name}: first mismatch at {np.flatnonzero(got != expected)[:5]}"


@pytest.mark.parametrize("dtype", INT_TYPES)
@pytest.mark.parametrize("name", INT_HELPERS)
def test_integer_helpers_match_numpy(harness, name, dtype, rng):
    """Python-style // and %, zero divisors, MIN // -1 wrap-around: as numpy does them."""
    ii = np.iinfo(dtype)
    edge = np.array([0, 1, -1, 2, -2, 7, -7, ii.min, ii.max, ii.min + 1], dtype=dtype)
    a = np.concatenate([np.repeat(edge, edge.size), rng.integers(ii.min, ii.max, 5000, dtype=dtype, endpoint=True)])
    b = np.concatenate([np.tile(edge, edge.size), rng.integers(-100, 100, 5000, dtype=dtype)])
    args = (a,) if name == "sign" else (a, b)
    got = _call(harness, f"h{name}_{INT_TYPES[dtype][1]}", *args)
    with np.errstate(all="ignore"):
        expected = getattr(np, name)(*args)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["max", "min"])
def test_reduction_combine_propagates_nan(harness, name, dtype, rng):
    suf = DTYPES[dtype][1]
    fn = getattr(harness.lib, f"tj_t_{name}_{suf}")
    for n_nan_at in [None, 0, 17, 999]:
        x = rng.standard_normal(1000).astype(dtype)
        if n_nan_at is not None:
            x[n_nan_at] = np.nan
        x[500] = np.inf if name == "max" else -np.inf
        got = fn(_ptr(harness.ffi, x), x.size)
        expected = getattr(np, name)(x)
        assert (np.isnan(got) and np.isnan(expected)) or got == expected, (n_nan_at, got, expected)


def _random_bit_patterns(dtype, n, rng):
    """n floats drawn uniformly over the bit patterns: every binade of both signs equally,
    subnormals, infs and nans with payloads included (the linspace/logspace sweeps above cover
    each function's interesting range densely; this covers the rest of the domain)."""
    bits = np.uint32 if dtype == np.float32 else np.uint64
    return rng.integers(0, np.iinfo(bits).max, n, dtype=bits, endpoint=True).view(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_accuracy_over_all_bit_patterns(harness, name, dtype, rng):
    x = _random_bit_patterns(dtype, 200_000, rng)
    got, expected = _check_ulps_and_classes(harness, name, dtype, x)
    # exact agreement on special inputs; a zero *result* may differ from numpy's by the last
    # rounding (exp2f(-149.6) is 1e-45 correctly rounded, numpy says 0): the ulp check covers it
    special_input = ~np.isfinite(x) | (np.abs(x) < np.finfo(dtype).tiny)
    _assert_same_specials(got[special_input], expected[special_input], f"{name} {dtype.__name__} of special inputs")


def _every_bit_pattern(stride: int, dtype=np.float32):
    """Every `stride`-th float32 bit pattern: all signs, binades, subnormals and nans, evenly."""
    return np.arange(0, 2**32, stride, dtype=np.uint64).astype(np.uint32).view(dtype)


def test_own_exp_over_a_sweep_of_all_bit_patterns(harness):
    """tj_exp_f32 replaces libmvec's expf (csrc/tracejit.h, 1b). All 2^32 inputs were checked
    once (max 1.081 ulp); this keeps every 1021st of them under test."""
    x = _every_bit_pattern(1021)
    got, expected = _check_ulps_and_classes(harness, "exp", np.float32, x)
    special_input = ~np.isfinite(x) | (np.abs(x) < np.finfo(np.float32).tiny)
    _assert_same_specials(got[special_input], expected[special_input], "exp float32 of special inputs")


def test_fast_exp_is_the_full_range_exp_wherever_it_is_not_flagged(harness):
    """Row passes run tj_exp_fast_f32 and redo a row whose flag is set with tj_exp_f32: the two
    must give the same bits wherever the flag is clear, and the flag must cover every input
    whose result is near overflow, subnormal, or nan."""
    x = np.concatenate([_every_bit_pattern(4099), _domain("exp", np.float32),
                        np.float32([-103.97, -103.99, -87.0, -88.0, 88.0, 88.5, np.nan, np.inf, -np.inf])])
    fast, full = _call(harness, "exp_fast_f32", x), _call(harness, "exp_f32", x)
    flag = np.empty(x.size, np.int32)
    harness.lib.tj_t_exp_outside_fast_f32(_ptr(harness.ffi, x), _ptr(harness.ffi, flag), x.size)
    clear = flag == 0
    assert _bits_equal(fast[clear], full[clear])
    with np.errstate(invalid="ignore"):
        assert flag[np.isnan(x) | (x > 88.4) | ((x >= -103.9) & (x <= -87.7))].all()
        assert not flag[((x >= -87.3) & (x <= 88.3)) | (x < -104.0)].any()  # incl. -inf -> 0
    assert clear.sum() > x.size // 10
