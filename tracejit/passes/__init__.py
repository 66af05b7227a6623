"""Graph -> Graph passes: simplify, CSE, DCE; fusion into kernels lives in fusion.py."""
from .pipeline import optimize

__all__ = ["optimize"]
