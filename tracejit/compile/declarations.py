"""The C declarations (cdef) a library is called through, for cffi: parsed once per cdef, and as
data that rebuilds the FFI without cffi's C parser.

`ffi_tables(cdef)` gives the type tables cffi's out-of-line ABI mode writes into a generated
module, as JSON-ready data; `ffi_from_tables(tables)` rebuilds the FFI from them with
`_cffi_backend` alone. Importing cffi's parser (pycparser) and parsing cost a warm process
~10-20 ms; programs.py stores the tables instead. Both parse results are memoized, and a build
computes them while the compiler runs (cache._build), so a cold start does not wait for them.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=128)
def parsed_ffi(cdef: str):
    """A cffi.FFI with `cdef` declared (shared by every library loaded with that cdef)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi


@functools.lru_cache(maxsize=128)
def _tables(cdef: str) -> tuple:
    import ast
    import io

    from cffi import recompiler

    out = io.StringIO()
    recompiler.make_py_source(parsed_ffi(cdef), "_tracejit_program", out)
    call = next(node for node in ast.walk(ast.parse(out.getvalue())) if isinstance(node, ast.Call))
    return tuple((kw.arg, ast.literal_eval(kw.value)) for kw in call.keywords)


def ffi_tables(cdef: str) -> dict:
    """`cdef` as the keyword arguments of `_cffi_backend.FFI`, in JSON types (bytes as hex)."""
    return {name: _to_json(value) for name, value in _tables(cdef)}


def ffi_from_tables(tables: dict):
    """The FFI `ffi_tables` describes, built without importing cffi's parser."""
    import _cffi_backend

    return _cffi_backend.FFI("_tracejit_program", **{k: _from_json(v) for k, v in tables.items()})


def _to_json(value):
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, dict):
        return bytes.fromhex(value["bytes"])
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value
