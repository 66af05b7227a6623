"""Integer-array indexing: gather (x[i0, i1, ...]) and its transpose scatter_add.

gather(x, i0, ..., ik-1) indexes the k leading axes of x with integer arrays that broadcast
together; the result has shape broadcast(i*.shape) + x.shape[k:]. Negative indices wrap as
in numpy; out-of-range ones are an IndexError (the C code reports it through its return code).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from .registry import Aval, Kind, Primitive, register
from .shape_util import broadcast_shapes


def _check_indices(name, x_shape, indices):
    if len(indices) > len(x_shape):
        raise ShapeError(f"{name}: too many indices ({len(indices)}) for an array of shape {x_shape}")
    for idx in indices:
        if not dtypes.is_int(idx.dtype):
            raise DTypeError(f"{name}: index arrays must be integers, got {idx.dtype}")
    return broadcast_shapes(*(i.shape for i in indices))


def _gather_rule(x, *indices):
    index_shape = _check_indices("gather", x.shape, indices)
    return Aval(index_shape + tuple(x.shape[len(indices):]), x.dtype)


def _gather_reference(x, *indices):
    return np.asarray(x[tuple(indices)])


def _scatter_add_rule(updates, *indices, shape):
    index_shape = _check_indices("scatter_add", shape, indices)
    expected = index_shape + tuple(shape[len(indices):])
    if tuple(updates.shape) != expected:
        raise ShapeError(f"scatter_add: updates of shape {updates.shape}, expected {expected}")
    return Aval(tuple(shape), updates.dtype)


def _scatter_add_reference(updates, *indices, shape):
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, tuple(indices), updates)
    return out


def _gather_vjp(b, node, ct):
    x, *indices = node.inputs
    return [b.emit("scatter_add", ct, *indices, shape=x.shape)] + [None] * len(indices)


def _scatter_add_vjp(b, node, ct):
    _, *indices = node.inputs
    return [b.emit("gather", ct, *indices)] + [None] * len(indices)


# ---- rewrites (applied by passes/index_rewrites.py) -----------------------------------------
# A gather that picks one element per row of an elementwise result, and the one-hot scatter
# that is its gradient, cost a whole (n, k) array each when run as written (x[arange(n), labels]
# of a log-softmax; the scatter zeroes and writes n*k elements). The rules below respell them
# so that no such array is stored: the gather moves through the elementwise ops onto their
# operands (n elements computed instead of n*k stored), and the scatter becomes a select
# `where(column == label, update, 0)` that fuses into the loops around it.

def _gather_rewrite(b, node, producer, uses):
    x, *indices = node.inputs
    pushed = _push_gather(b, x, indices, node.out.size, producer, uses)
    return pushed if pushed is not None and _same_type(pushed, node.out) else None


def _push_gather(b, x, indices, out_size, producer, uses):
    """gather(f(u, v, ...), *indices) as f(gather(u, ...), gather(v, ...), ...), or None.

    Pays off when x is big and the gather small (recomputing f on the gathered elements only),
    or when the gather is x's only reader. One operand, the checker, must keep every index (not
    broadcast along an indexed axis): its gather still checks each index against the array
    bounds, so the others may drop the indices of their size-1 axes."""
    node = producer.get(x)
    if node is None or node.prim.kind is not Kind.ELEMENTWISE or node.prim.multiple_results:
        return None
    if uses.get(x, 0) > 1 and out_size * 4 > x.size:
        return None
    k = len(indices)
    full = [u for u in node.inputs if _kept_axes(u, x.shape, k) == list(range(k))]
    if not full:
        return None
    checker = max(full, key=lambda u: u.size)  # a scalar constant has no storage to gather from
    operands = [_gather_operand(b, u, x.shape, indices, producer, uses, u is checker) for u in node.inputs]
    return b.emit(node.prim, *operands, loc=node.loc, **node.params)


def _kept_axes(u, shape, k, checks=True) -> list[int]:
    """Indexed axes (< k) whose index operand u of an elementwise result of `shape` must take:
    those it is not broadcast along, but for a non-checking operand only its longer ones."""
    full = (1,) * (len(shape) - u.ndim) + tuple(u.shape)
    return [j for j in range(k) if full[j] == shape[j] and (checks or full[j] != 1)]


def _gather_operand(b, u, shape, indices, producer, uses, checks):
    """What operand u contributes at the gathered positions (broadcasting like the result)."""
    k = len(indices)
    full = (1,) * (len(shape) - u.ndim) + tuple(u.shape)
    kept = _kept_axes(u, shape, k, checks)
    reduced = tuple(full[j] for j in kept) + full[k:]
    if reduced != tuple(u.shape):
        u = b.emit("reshape", u, shape=reduced)
    kept_indices = [indices[j] for j in kept]
    if not kept_indices or _is_identity_index(kept_indices, u, producer):
        return u
    out_shape = broadcast_shapes(*(i.shape for i in kept_indices)) + reduced[len(kept):]
    out = _push_gather(b, u, kept_indices, int(np.prod(out_shape, dtype=np.int64)), producer, uses)
    return out if out is not None else b.emit("gather", u, *kept_indices)


def _is_identity_index(indices, u, producer) -> bool:
    """gather(u, arange(len(u))): every row once, in order."""
    if len(indices) != 1:
        return False
    source = producer.get(indices[0])
    return source is not None and source.prim.name == "iota" and source.params["length"] == u.shape[0]


def _scatter_add_rewrite(b, node, producer, uses):
    """scatter_add(upd, arange(n), i1, ..., shape=(n, k1, ..., tail)): each row r receives one
    update, at column i1[r], ...: out = where(col1 == i1[r] & ..., upd[r], 0), no zeroed array.
    The indices are wrapped and bounds-checked by a gather from an iota (iota[i] is i, wrapped);
    the columns are int32 (axes longer than 2**31 are not worth a select), so the compare in the
    row loop runs at the width of float32 lanes."""
    if not _one_update_per_row(node, producer):
        return None
    updates, _, *rest = node.inputs
    shape = node.params["shape"]
    n, k, ndim = shape[0], 1 + len(rest), len(shape)
    row = (n,) + (1,) * (ndim - 1)
    cond = None
    for axis, idx in enumerate(rest, start=1):
        column = b.emit("iota", length=shape[axis], dtype=np.dtype(np.int32))
        wrapped = b.emit("reshape", b.emit("gather", column, idx, loc=node.loc), shape=row)
        along = tuple(shape[axis] if j == axis else 1 for j in range(ndim))
        hit = b.emit("equal", b.emit("reshape", column, shape=along), wrapped, loc=node.loc)
        cond = hit if cond is None else b.emit("logical_and", cond, hit, loc=node.loc)
    upd = b.emit("reshape", updates, shape=(n,) + (1,) * (k - 1) + tuple(shape[k:]))
    zero = b.constant(np.zeros((), updates.dtype))
    return b.emit("where", cond, upd, zero, loc=node.loc)


def _one_update_per_row(node, producer) -> bool:
    """scatter_add(upd, arange(n), i1, ...) with every index and upd of length n along axis 0."""
    updates, first, *rest = node.inputs
    shape = node.params["shape"]
    n, k = shape[0], 1 + len(rest)
    source = producer.get(first)
    if not rest or 0 in shape or max(shape[1:k]) >= 2**31:
        return False
    if source is None or source.prim.name != "iota" or source.params["length"] != n:
        return False
    return all(tuple(i.shape) == (n,) for i in (first, *rest)) and tuple(updates.shape) == (n,) + tuple(shape[k:])


# ---- one-hot compares (read by the sum rule in ops/reduce.py) ------------------------------
# where(column == label, v, 0) summed over the column axis is v itself when every label is in
# range: the compare then holds at exactly one column of each row. The scatter rule above makes
# that compare with labels gathered from an iota, which wraps and bounds-checks them first.

def one_hot_axis(cond, ndim, producer):
    """The axis j along which `cond` (read at rank ndim) is `iota_j == index` with every index in
    [0, len_j) and constant along j, so that it holds exactly once along j; else None."""
    node = producer.get(cond)
    if node is None or node.prim.name != "equal":
        return None
    a, c = node.inputs
    for column, index in ((a, c), (c, a)):
        axis = _iota_axis(column, ndim, producer)
        if axis is not None and _in_range_index(index, ndim, axis, column, producer):
            return axis
    return None


def _right_aligned(shape, ndim):
    return (1,) * (ndim - len(shape)) + tuple(shape)


def _through_reshapes(value, producer):
    node = producer.get(value)
    while node is not None and node.prim.name == "reshape":
        value = node.inputs[0]
        node = producer.get(value)
    return value, node


def _iota_axis(value, ndim, producer):
    """j when value (at rank ndim) is an iota laid along axis j and of length >= 2 there."""
    full = _right_aligned(value.shape, ndim)
    longer = [j for j, d in enumerate(full) if d != 1]
    _, source = _through_reshapes(value, producer)
    if len(longer) != 1 or source is None or source.prim.name != "iota":
        return None
    return longer[0] if source.params["length"] == full[longer[0]] else None


def _in_range_index(value, ndim, axis, column, producer):
    """value (at rank ndim) is constant along `axis` and holds entries of an iota as long as
    that axis: a gather from it, which fails on an index out of range, so each is in range."""
    if len(value.shape) > ndim or _right_aligned(value.shape, ndim)[axis] != 1:
        return False
    _, node = _through_reshapes(value, producer)
    if node is None or node.prim.name != "gather" or len(node.inputs) != 2:
        return False
    _, source = _through_reshapes(node.inputs[0], producer)
    length = _right_aligned(column.shape, ndim)[axis]
    return (source is not None and source.prim.name == "iota" and source.params["length"] == length
            and node.inputs[0].ndim == 1)


def _same_type(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


# ---- numpy spellings for ir/python.py: numpy has no scatter_add expression, so the module gets a helper
SCATTER_ADD_HELPER = '''def scatter_add(updates, indices, shape):
    """zeros(shape) with updates added at the (possibly repeated) positions `indices`."""
    out = np.zeros(shape, updates.dtype)
    np.add.at(out, indices, updates)
    return out'''


def _scatter_add_py(args, params, node, ctx):
    ctx.use_helper(SCATTER_ADD_HELPER)
    return f"scatter_add({args[0]}, ({', '.join(args[1:])},), {tuple(params['shape'])})"


def _gather_py(args, params, node, ctx):
    return f"{args[0]}[{', '.join(args[1:])}]"


gather_p = register(Primitive("gather", Kind.GATHER, _gather_rule, _gather_reference, vjp=_gather_vjp,
                              rewrite=_gather_rewrite, py_expr=_gather_py))
scatter_add_p = register(
    Primitive("scatter_add", Kind.SCATTER, _scatter_add_rule, _scatter_add_reference, vjp=_scatter_add_vjp,
              rewrite=_scatter_add_rewrite, py_expr=_scatter_add_py)
)
