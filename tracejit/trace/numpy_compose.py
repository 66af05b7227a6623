"""numpy functions recorded as compositions of other traced numpy operations: reorderings
(flip, roll, repeat, tile, pad, split), selections (take, take_along_axis, diag, tril/triu),
reductions and formulas (trace, average, ptp, linalg.norm, logaddexp, heaviside) and einsum. No
primitive of their own: their gradients come from the pieces'. Registered into numpy_map's
FUNCTIONS and COMPOSITE_UFUNCS at the end of this file.
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from .. import dtypes
from ..errors import ShapeError, UnsupportedOperation, user_location
from ..ops.shape_util import normalize_axes
from .numpy_map import (COMPOSITE_UFUNCS, FUNCTIONS, _dtype_of, _is_tracer, _is_weak, _mean_dtype, _numpy_dtype_of,
                        _reduction, _require_absent, _shape_of, _value, _weak_descriptor, amax, amin, apply_ufunc,
                        astype, broadcast_to, concatenate, expand_dims, full_like, matmul, mean, ravel, reshape, sum,
                        transpose, where, zeros_like)


# ---- reorderings and selections built from indexing (strided reads and gathers) -------------
def _index(a, key):
    from .tracer import wrap

    return (a if _is_tracer(a) else wrap(_value(a)))[key]


def flip(m, axis=None):
    ndim = len(_shape_of(m))
    axes = range(ndim) if axis is None else normalize_axes(axis, ndim)
    return _index(m, tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(ndim)))


def take(a, indices, axis=None, out=None, mode="raise"):
    """np.take: out-of-range indices raise IndexError, as numpy's default mode does."""
    _require_absent("take", out=out, mode=None if mode == "raise" else mode)
    if axis is None:
        return _index(ravel(a), indices)
    (axis,) = normalize_axes(axis, len(_shape_of(a)))
    return _index(a, (slice(None),) * axis + (indices,))


def take_along_axis(arr, indices, axis):
    """np.take_along_axis: a gather with the index arrays of the other axes made from np.arange."""
    shape = _shape_of(arr)
    if axis is None:
        return _index(ravel(arr), indices)
    (axis,) = normalize_axes(axis, len(shape))
    if len(_shape_of(indices)) != len(shape):
        raise ShapeError(f"take_along_axis: indices need {len(shape)} dimensions like the array, got "
                         f"{len(_shape_of(indices))} (at {user_location()})")
    key = tuple(indices if d == axis else np.arange(n).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
                for d, n in enumerate(shape))
    return _index(arr, key)


def roll(a, shift, axis=None):
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), tuple(_shape_of(a)))
    shifts, axes = (shift, axis) if isinstance(axis, (tuple, list)) else ((shift,), (axis,))
    if isinstance(shift, (tuple, list)) != isinstance(axis, (tuple, list)) or len(shifts) != len(axes):
        raise ShapeError(f"roll: shift and axis must both be ints or sequences of one length (at {user_location()})")
    for n, ax in zip(shifts, normalize_axes(tuple(axes), len(_shape_of(a)))):
        size = _shape_of(a)[ax]
        k = operator.index(n) % size if size else 0
        if k:
            head = (slice(None),) * ax
            a = concatenate([_index(a, head + (slice(size - k, None),)), _index(a, head + (slice(None, size - k),))], ax)
    return a


def repeat(a, repeats, axis=None):
    """np.repeat with one repeat count for every element (counts per element would make the
    result's shape depend on the data)."""
    if not isinstance(repeats, (int, np.integer)):
        raise UnsupportedOperation("repeat", "a count per element; one int count is traced")
    if axis is None:
        a, axis = ravel(a), 0
    shape = tuple(_shape_of(a))
    (axis,) = normalize_axes(axis, len(shape))
    spread = broadcast_to(expand_dims(a, axis + 1), shape[:axis + 1] + (int(repeats),) + shape[axis + 1:])
    return reshape(spread, shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:])


def tile(A, reps):
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    shape = tuple(_shape_of(A))
    ndim = max(len(shape), len(reps))
    shape, reps = (1,) * (ndim - len(shape)) + shape, (1,) * (ndim - len(reps)) + reps
    a = reshape(A, tuple(d for n in shape for d in (1, n)))
    spread = broadcast_to(a, tuple(d for r, n in zip(reps, shape) for d in (int(r), n)))
    return reshape(spread, tuple(int(r) * n for r, n in zip(reps, shape)))


def pad(array, pad_width, mode="constant", constant_values=0):
    """np.pad in its default mode: constant borders."""
    if mode != "constant":
        raise UnsupportedOperation("pad", f"mode={mode!r}; only 'constant' is traced")
    if not _is_tracer(constant_values):
        if np.ndim(constant_values) != 0:
            raise UnsupportedOperation("pad", "constant_values per axis or side; one scalar is traced")
        # numpy's own conversion into the array's dtype (it wraps 300 into uint8 as 44, and
        # raises for 2**40 into int32), read off a padded 1-element array
        constant_values = np.pad(np.zeros(1, _numpy_dtype_of(array)), 1, constant_values=constant_values)[0]
    ndim = len(_shape_of(array))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2))
    result = array
    for ax, (before, after) in enumerate(widths):
        if before or after:
            shape = list(_shape_of(result))
            parts = [full_like(result, constant_values, shape=shape[:ax] + [int(before)] + shape[ax + 1:]), result,
                     full_like(result, constant_values, shape=shape[:ax] + [int(after)] + shape[ax + 1:])]
            result = concatenate([p for p, w in zip(parts, (before, 1, after)) if w], ax)
    return result


def diag(v, k=0):
    """np.diag: the k-th diagonal of a matrix, or a matrix with v on its k-th diagonal."""
    shape = _shape_of(v)
    if len(shape) == 1:
        n, length = shape[0] + abs(k), shape[0]
        rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
        # the entry on the diagonal at (r, r + k) is v[r] for k >= 0 and v[c] for k < 0
        source = take(v, np.minimum(np.arange(n), builtins.max(length - 1, 0)))
        source = expand_dims(source, 1 if k >= 0 else 0)
        return where(cols - rows == k, source, zeros_like(v, shape=()))
    if len(shape) != 2:
        raise ShapeError(f"diag: input must be 1-d or 2-d, got shape {tuple(shape)} (at {user_location()})")
    i = np.arange(builtins.max(0, builtins.min(shape[0] + builtins.min(k, 0), shape[1] - builtins.max(k, 0))))
    return _index(v, (i - builtins.min(k, 0), i + builtins.max(k, 0)))


def trace_(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _require_absent("trace", out=out)
    if len(_shape_of(a)) != 2 or (axis1, axis2) != (0, 1):
        raise UnsupportedOperation("trace", "only of a matrix")
    return sum(diag(a, offset), dtype=dtype)


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    if returned:
        raise UnsupportedOperation("average", "returned=True")
    if weights is None:
        return mean(a, axis, keepdims=keepdims)
    if len(_shape_of(weights)) != len(_shape_of(a)):
        raise UnsupportedOperation("average", "weights of another shape than the array")
    weighted = sum(apply_ufunc(np.multiply, (a, weights)), axis, keepdims=keepdims)
    return apply_ufunc(np.true_divide, (weighted, sum(weights, axis, keepdims=keepdims)))


def ptp(a, axis=None, out=None, keepdims=False):
    _require_absent("ptp", out=out)
    return apply_ufunc(np.subtract, (amax(a, axis, keepdims=keepdims), amin(a, axis, keepdims=keepdims)))


def _loop_dtype(ufunc, x1, x2) -> np.dtype:
    """The dtype of the (float) loop numpy runs `ufunc` in for these two operands."""
    return dtypes.canonical(ufunc.resolve_dtypes((_weak_descriptor(x1), _weak_descriptor(x2), None))[0])


def heaviside(x1, x2):
    """np.heaviside: 0 below zero, 1 above, x2 at zero, nan at nan; in the float loop numpy picks
    for the two operands (bool and float32: float32)."""
    loop = _loop_dtype(np.heaviside, x1, x2)
    x1 = astype(x1, loop)
    x2 = x2 if _is_weak(x2) else astype(x2, loop)
    zero_one = where(apply_ufunc(np.less, (x1, 0)), full_like(x1, 0, shape=()), full_like(x1, 1, shape=()))
    return where(apply_ufunc(np.isnan, (x1,)), x1, where(apply_ufunc(np.equal, (x1, 0)), x2, zero_one))


def split(ary, indices_or_sections, axis=0):
    (axis,) = normalize_axes(axis, len(_shape_of(ary)))
    size = _shape_of(ary)[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if size % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        step = size // indices_or_sections
        cuts = list(range(step, size, step)) if step else []
    else:
        cuts = [operator.index(i) for i in indices_or_sections]
    bounds = [0] + cuts + [size]
    return [_index(ary, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(bounds, bounds[1:])]


def _triangle(m, k, lower):
    shape = _shape_of(m)
    if len(shape) < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'} needs an array of at least 2 dimensions, got shape "
                         f"{tuple(shape)} (at {user_location()})")
    rows, cols = np.arange(shape[-2])[:, None], np.arange(shape[-1])[None, :]
    keep = cols - rows <= k if lower else cols - rows >= k
    return where(keep, m, zeros_like(m, shape=()))


def tril(m, k=0):
    return _triangle(m, k, lower=True)


def triu(m, k=0):
    return _triangle(m, k, lower=False)


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm for ord=None: the 2-norm of vectors, Frobenius of matrices (the square root
    of the sum of squares, summed in tracejit's order, not BLAS's)."""
    if ord not in (None, 2, "fro") or (ord == 2 and (axis is None and len(_shape_of(x)) != 1)):
        raise UnsupportedOperation("linalg.norm", f"ord={ord!r}; only the 2-norm of vectors and Frobenius")
    acc = _mean_dtype(_dtype_of(x), None)
    xf = astype(x, acc)
    return apply_ufunc(np.sqrt, (_reduction("sum", apply_ufunc(np.multiply, (xf, xf)), axis, keepdims),))


def logaddexp(x1, x2):
    """log(exp(x1) + exp(x2)) as numpy's npy_logaddexp computes it, max + log1p(exp(-|x1 - x2|)),
    with x1 + x2 where the difference is nan (equal infinities); at x1 == x2 the gradient splits
    evenly (maximum's rule, and abs has derivative 0 there). Integers go to numpy's float loop first."""
    loop = _loop_dtype(np.logaddexp, x1, x2)
    x1, x2 = (x if _is_weak(x) and isinstance(x, float) else astype(x, loop) for x in (x1, x2))
    larger = apply_ufunc(np.maximum, (x1, x2))
    delta = apply_ufunc(np.subtract, (x1, x2))
    spread = apply_ufunc(np.log1p, (apply_ufunc(np.exp, (apply_ufunc(np.negative, (apply_ufunc(np.absolute, (delta,)),)),)),))
    return where(apply_ufunc(np.isnan, (delta,)), apply_ufunc(np.add, (x1, x2)), apply_ufunc(np.add, (larger, spread)))



# ---- einsum -----------------------------------------------------------------------------
def einsum(subscripts, *operands, out=None, dtype=None, optimize=False, **kwargs):
    """np.einsum of one or two float operands, as transposes, reshapes, sums and one (batched)
    matmul. Not traced: ellipses, an index repeated within one operand (diagonals), three or more
    operands (chain two-operand einsums instead)."""
    _require_absent("einsum", out=out, dtype=dtype, **kwargs)
    if not isinstance(subscripts, str) or "..." in subscripts or not 1 <= len(operands) <= 2:
        raise UnsupportedOperation("einsum", "only 'ij,jk->ik'-style subscripts of one or two operands, no '...'")
    inputs, arrow, output = subscripts.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands) or any(len(set(t)) != len(t) for t in terms + [output]):
        raise UnsupportedOperation("einsum", f"subscripts {subscripts!r}: one term per operand, no repeated index")
    if not arrow:  # implicit output: the indices that appear once, in alphabetical order
        output = "".join(sorted(i for i in set(inputs) - {","} if inputs.count(i) == 1))
    for term, x in zip(terms, operands):
        if len(term) != len(_shape_of(x)):
            raise ShapeError(f"einsum: {term!r} names {len(term)} axes of an operand of shape {tuple(_shape_of(x))} "
                             f"(at {user_location()})")
    others = [set("".join(terms[:n] + terms[n + 1:])) | set(output) for n in range(len(terms))]
    # indices only one operand has, and the output does not: summed out of that operand first
    summed = [_sum_indices(x, t, keep) for x, t, keep in zip(operands, terms, others)]
    if len(summed) == 1:
        (x, term), = summed
        return transpose(x, [term.index(i) for i in output]) if term != output else x
    (a, ta), (b, tb) = summed
    batch = [i for i in output if i in ta and i in tb]
    contracted = [i for i in ta if i in tb and i not in output]
    free_a, free_b = [i for i in ta if i not in tb], [i for i in tb if i not in ta]
    sizes = {i: n for t, x in ((ta, a), (tb, b)) for i, n in zip(t, _shape_of(x))}
    size = lambda idx: int(np.prod([sizes[i] for i in idx], dtype=np.int64))  # noqa: E731
    a3 = reshape(transpose(a, [ta.index(i) for i in batch + free_a + contracted]),
                 (size(batch), size(free_a), size(contracted)))
    b3 = reshape(transpose(b, [tb.index(i) for i in batch + contracted + free_b]),
                 (size(batch), size(contracted), size(free_b)))
    product = reshape(matmul(a3, b3), tuple(sizes[i] for i in batch + free_a + free_b))
    order = batch + free_a + free_b
    return transpose(product, [order.index(i) for i in output]) if order != list(output) else product


def _sum_indices(x, term, keep):
    axes = tuple(n for n, i in enumerate(term) if i not in keep)
    if not axes:
        return x, term
    return _reduction("sum", x, axes, False), "".join(i for i in term if i in keep)


FUNCTIONS.update({
    np.flip: flip, np.take: take, np.take_along_axis: take_along_axis, np.tril: tril, np.triu: triu,
    np.linalg.norm: norm, np.einsum: einsum, np.roll: roll, np.repeat: repeat, np.tile: tile, np.pad: pad,
    np.diag: diag, np.trace: trace_, np.average: average, np.ptp: ptp, np.split: split,
})
COMPOSITE_UFUNCS.update({np.logaddexp: logaddexp, np.heaviside: heaviside})
