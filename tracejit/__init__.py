"""tracejit: a compiler for numpy code. Trace, differentiate IR to IR, fuse, emit C, cache."""
from . import ops as _ops  # noqa: F401  (fills the primitive table)
from ._version import __version__
from .api import IR, Lowered, grad, jit, make_ir, value_and_grad, vjp
from .trace.control_flow import cond, fori_loop, scan, while_loop
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
