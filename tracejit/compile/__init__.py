"""C source -> loaded shared library: the system compiler plus a content-addressed disk cache.

Names load on first use: a warm start imports only the read side (entries.py, programs.py),
not the build machinery in cache.py.
"""
__all__ = ["LoadedLibrary", "get_or_build", "find_compiler"]
_HOMES = {"LoadedLibrary": "entries", "get_or_build": "cache", "find_compiler": "toolchain"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
