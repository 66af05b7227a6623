"""tracejit: a compiler for numpy code. Trace, differentiate IR to IR, fuse, emit C, cache."""
from . import ops as _ops  # noqa: F401  (fills the primitive table)
from ._version import __version__
from .api import IR, Lowered, grad, jit, make_ir, value_and_grad, vjp
from .errors import (
    CacheError,
    CompileError,
    CompilerNotFoundError,
    DTypeError,
    ShapeError,
    TracejitError,
    TracerConversionError,
    UnsupportedOperation,
)

__all__ = [
    "__version__", "jit", "Lowered", "grad", "value_and_grad", "vjp", "make_ir", "IR",
    "TracejitError", "UnsupportedOperation", "TracerConversionError", "ShapeError", "DTypeError",
    "CompileError", "CompilerNotFoundError", "CacheError",
    "cond", "fori_loop", "while_loop", "scan",
]

_CONTROL_FLOW = ("cond", "fori_loop", "scan", "while_loop")


def __getattr__(name: str):
    """cond, fori_loop, scan and while_loop load their tracing machinery on first use: most
    programs use none of them, and `import tracejit` should not pay for it."""
    if name in _CONTROL_FLOW:
        from .trace import control_flow

        return getattr(control_flow, name)
    raise AttributeError(f"module 'tracejit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_CONTROL_FLOW))
