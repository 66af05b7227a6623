"""Typed errors. Each names what went wrong, where (the user's file:line) and what to do."""
from __future__ import annotations

import functools
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_NUMPY_DIR = None


@functools.lru_cache(maxsize=1024)  # asked for every frame of every traced op: abspath per call adds up
def _is_internal(filename: str) -> bool:
    global _NUMPY_DIR
    if _NUMPY_DIR is None:
        import numpy

        _NUMPY_DIR = os.path.dirname(os.path.abspath(numpy.__file__))
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE_DIR + os.sep) or path.startswith(_NUMPY_DIR + os.sep) or filename.startswith("<frozen")


def user_frame():
    """The innermost stack frame that belongs to the user's code (not tracejit, not numpy)."""
    frame = sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_location() -> str | None:
    """'file.py:LINE' of the user's code that is running now, or None."""
    frame = user_frame()
    if frame is None:
        return None
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def user_location_long() -> str:
    """'path/to/file.py, line N, in func' plus the source line, for error messages."""
    frame = user_frame()
    if frame is None:
        return "<unknown location>"
    import linecache

    code = frame.f_code
    src = linecache.getline(code.co_filename, frame.f_lineno).strip()
    where = f'File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}'
    return f"{where}\n    {src}" if src else where


class TracejitError(Exception):
    """Base class of every error tracejit raises on purpose."""


class UnsupportedOperation(TracejitError, NotImplementedError):
    """A numpy function, method or argument form that tracejit cannot trace."""

    def __init__(self, name: str, detail: str = "", location: str | None = None):
        self.name = name
        location = location or user_location_long()
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"tracejit does not support numpy's `{name}`{extra} inside a traced function.\n"
            f"  at {location}\n"
            "Compute it outside the jitted function and pass the result in as an argument, "
            "or rewrite it with supported operations."
        )


class TracerConversionError(TracejitError, TypeError):
    """Python needed a concrete value (bool/int/float/index) of a traced array."""

    def __init__(self, what: str, value_desc: str, location: str | None = None):
        location = location or user_location_long()
        super().__init__(
            f"{what} was called on a traced value {value_desc}; its contents are not known "
            f"while tracing.\n  at {location}\n"
            "Python `if`/`while`/`bool()`/`float()`/`int()` need a concrete value. Use "
            "`np.where(cond, a, b)` for elementwise choices, `tj.cond(pred, true_fun, false_fun, *operands)` "
            "for branches, `tj.while_loop(cond_fun, body_fun, init)` or "
            "`tj.fori_loop(lower, upper, body_fun, init)` for loops, or mark the argument static "
            "with `tj.jit(..., static_argnums=...)`."
        )


class ShapeError(TracejitError, ValueError):
    """Operand shapes that do not fit together (or do not match the compiled signature)."""


class DTypeError(TracejitError, TypeError):
    """A dtype that tracejit does not support or that does not fit the operation."""


class CompileError(TracejitError):
    """The C compiler rejected generated code. Carries the command, output and the kept .c file."""

    def __init__(self, message: str, *, command=None, output: str = "", c_file: str | None = None):
        self.command = command
        self.output = output
        self.c_file = c_file
        text = message
        if command:
            text += "\n  command: " + " ".join(map(str, command))
        if c_file:
            text += f"\n  C source kept at: {c_file}"
        if output:
            text += "\n  compiler output:\n" + "\n".join("    " + line for line in output.rstrip().splitlines())
        super().__init__(text)


class CompilerNotFoundError(TracejitError):
    """No C compiler could be found."""


class CacheError(TracejitError):
    """The on-disk cache cannot be used safely (permissions, corruption that cannot be repaired)."""
