"""Tracer: a stand-in for a numpy array while tracing. It takes part in numpy's own protocols
(__array_ufunc__, __array_function__, operators, methods), so plain numpy code records IR nodes.

Anything that needs the concrete contents (bool(), float(), np.asarray) raises
TracerConversionError pointing at the user's line.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import TracejitError, TracerConversionError, UnsupportedOperation
from ..ir.graph import Value
from . import numpy_map as nm


class Tracer:
    __slots__ = ("trace", "value", "weak", "narrow")
    __array_priority__ = 1000  # numpy defers binary operators to us

    def __init__(self, trace, value: Value, weak: bool = False, narrow: np.dtype | None = None):
        self.trace = trace
        self.value = value
        self.weak = weak  # born from a Python scalar: promotes like one (NEP 50)
        # an argument of a dtype tracejit widens (uint8 -> int32): numpy's dtype, for its promotions
        self.narrow = narrow

    # -- array attributes ---------------------------------------------------------------------
    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: len(self.value.shape))
    size = property(lambda self: self.value.size)
    T = property(lambda self: nm.transpose(self))
    mT = property(lambda self: nm.swapaxes(self, -1, -2))

    def __repr__(self) -> str:
        return f"Tracer<{self.value.type_str}{' weak' if self.weak else ''}>"

    def __getattr__(self, name):
        """Only for names not defined here: an ndarray method or attribute we do not trace says so
        at the user's line, rather than a bare AttributeError. Private names stay AttributeErrors
        (numpy and copy probe for them with getattr(obj, name, default))."""
        if not name.startswith("_") and hasattr(np.ndarray, name):
            raise UnsupportedOperation(f"ndarray.{name}")
        raise AttributeError(f"'Tracer' object has no attribute {name!r}")

    __hash__ = object.__hash__

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # -- numpy protocols ----------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return nm.dispatch_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return nm.dispatch_function(func, args, kwargs)

    def __array__(self, dtype=None, copy=None):
        raise TracerConversionError("np.asarray()/np.array()", repr(self))

    # -- concrete conversions are errors ------------------------------------------------------
    def __bool__(self):
        raise TracerConversionError("bool() (an `if`, `while`, `and`/`or` or `assert`)", repr(self))

    def __float__(self):
        raise TracerConversionError("float()", repr(self))

    def __int__(self):
        raise TracerConversionError("int()", repr(self))

    def __index__(self):
        raise TracerConversionError("int() (use as an index or a size)", repr(self))

    def __complex__(self):
        raise TracerConversionError("complex()", repr(self))

    def item(self, *args):
        raise TracerConversionError(".item()", repr(self))

    def tolist(self):
        raise TracerConversionError(".tolist()", repr(self))

    # -- indexing -----------------------------------------------------------------------------
    def __getitem__(self, key):
        from .indexing import getitem

        return getitem(self, key)

    def __setitem__(self, key, value):
        raise UnsupportedOperation(
            "__setitem__", "in-place assignment to a traced array; build the result with np.where or np.concatenate"
        )

    # -- methods numpy users reach for --------------------------------------------------------
    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return nm.sum(self, axis, dtype, out, keepdims, **kw)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return nm.prod(self, axis, dtype, out, keepdims, **kw)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return nm.mean(self, axis, dtype, out, keepdims, **kw)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
        return nm.var(self, axis, dtype, out, ddof, keepdims, **kw)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
        return nm.std(self, axis, dtype, out, ddof, keepdims, **kw)

    def max(self, axis=None, out=None, keepdims=False, **kw):
        return nm.amax(self, axis, out, keepdims, **kw)

    def min(self, axis=None, out=None, keepdims=False, **kw):
        return nm.amin(self, axis, out, keepdims, **kw)

    def cumsum(self, axis=None, dtype=None, out=None):
        return nm.cumsum(self, axis, dtype, out)

    def any(self, axis=None, out=None, keepdims=False, **kw):
        return nm.any_(self, axis, out, keepdims, **kw)

    def all(self, axis=None, out=None, keepdims=False, **kw):
        return nm.all_(self, axis, out, keepdims, **kw)

    def argmax(self, axis=None, out=None, keepdims=False):
        return nm.argmax(self, axis, out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return nm.argmin(self, axis, out, keepdims=keepdims)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return nm.reshape(self, shape, order=order)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return nm.transpose(self, axes or None)

    def swapaxes(self, a, b):
        return nm.swapaxes(self, a, b)

    def squeeze(self, axis=None):
        return nm.squeeze(self, axis)

    def ravel(self, order="C"):
        return nm.reshape(self, (-1,), order=order)

    def flatten(self, order="C"):
        return nm.reshape(self, (-1,), order=order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        return nm.astype(self, dtype)

    def clip(self, min=None, max=None, **kw):
        return nm.clip(self, min, max, **kw)

    def dot(self, other):
        return nm.dot(self, other)

    def round(self, decimals=0, out=None):
        return nm.round_(self, decimals, out)

    __round__ = round

    def copy(self, order="C"):
        return self

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # -- operators (numpy's ufuncs, so promotion and broadcasting are numpy's) ---------------
    def __neg__(self):
        return nm.apply_ufunc(np.negative, (self,))

    def __pos__(self):
        return self

    def __abs__(self):
        return nm.apply_ufunc(np.absolute, (self,))

    def __invert__(self):
        return nm.apply_ufunc(np.invert, (self,))

    def __matmul__(self, other):
        return nm.matmul(self, other)

    def __rmatmul__(self, other):
        return nm.matmul(other, self)


def _binary(ufunc):
    def op(self, other):
        return nm.apply_ufunc(ufunc, (self, other))

    def rop(self, other):
        return nm.apply_ufunc(ufunc, (other, self))

    return op, rop


for _name, _ufunc in [
    ("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
    ("pow", np.power), ("floordiv", np.floor_divide), ("mod", np.remainder),
    ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
]:
    _op, _rop = _binary(_ufunc)
    setattr(Tracer, f"__{_name}__", _op)
    setattr(Tracer, f"__r{_name}__", _rop)

for _name, _ufunc in [
    ("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
    ("eq", np.equal), ("ne", np.not_equal),
]:
    setattr(Tracer, f"__{_name}__", _binary(_ufunc)[0])


def to_value(x, trace=None) -> Value:
    """The Value of x in `trace` (default: the current one): tracers are captured from enclosing
    traces; numpy arrays and Python scalars become constants."""
    from .tracing import current_trace, on_stack

    trace = trace or current_trace()
    if isinstance(x, Tracer):
        if x.trace is trace:
            return x.value
        if on_stack(x.trace) and x.trace.depth < trace.depth:
            return trace.capture(x)
        raise TracejitError(
            f"a traced value {x!r} escaped the function that traced it (it was stored outside, e.g. in a "
            "global or a list, and used later). Return values from the traced function instead."
        )
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return trace.builder.constant(x, dtypes.python_scalar_dtype(x))
    if isinstance(x, (np.ndarray, np.generic)):
        array = np.asarray(x)
        return trace.builder.constant(array.astype(dtypes.canonical(array.dtype), copy=False))
    raise UnsupportedOperation(type(x).__name__, f"a {type(x).__name__} value used as an array operand")


def wrap(value: Value, weak: bool = False) -> Tracer:
    from .tracing import current_trace

    return Tracer(current_trace(), value, weak)
