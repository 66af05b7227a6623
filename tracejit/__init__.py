"""tracejit: a compiler for numpy code. Trace, differentiate IR to IR, fuse, emit C, cache."""
from . import ops as _ops  # noqa: F401  (fills the primitive table)
from ._version import __version__
from .api import Lowered, jit
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
    "__version__", "jit", "Lowered",
    "TracejitError", "UnsupportedOperation", "TracerConversionError", "ShapeError", "DTypeError",
    "CompileError", "CompilerNotFoundError", "CacheError",
]
