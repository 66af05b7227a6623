"""Reverse-mode differentiation as a graph-to-graph transformation (see vjp.py)."""
from .vjp import NotDifferentiableError, vjp_graph

__all__ = ["NotDifferentiableError", "vjp_graph"]
