"""C source -> loaded shared library: the system compiler plus a content-addressed disk cache."""
from .cache import LoadedLibrary, get_or_build
from .toolchain import find_compiler

__all__ = ["LoadedLibrary", "get_or_build", "find_compiler"]
