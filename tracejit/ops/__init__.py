"""Every primitive, one record each. Importing this package fills registry.PRIMITIVES."""
from . import control, elementwise, index, linalg, reduce, scan, shape, source
from .registry import PRIMITIVES, Aval, Kind, Primitive

FAMILIES = (control, elementwise, index, linalg, reduce, scan, shape, source)  # imported for their registrations

__all__ = ["PRIMITIVES", "Aval", "Kind", "Primitive"]
