"""Every primitive, one record each. Importing this package fills registry.PRIMITIVES."""
from . import control, elementwise, index, linalg, reduce, shape, source  # noqa: F401  (registration)
from .registry import PRIMITIVES, Aval, Kind, Primitive

__all__ = ["PRIMITIVES", "Aval", "Kind", "Primitive"]
