"""Shared pieces of the ops' `py_expr` rules: each op's numpy spelling for ir/python.py (to_python).

A py_expr(args, params, node, ctx) returns one Python expression: `args` are the operands'
identifiers, `params` the node's params, `node` the IR node (for dtypes and shapes), and `ctx` a
PyModule the expression may add module-level text to (large constants, helper functions).
This module imports nothing from tracejit, so every ops/<family>.py can use it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


class PyModule:
    """The module-level text that expressions need besides their own statement, in first-use order."""

    def __init__(self):
        self.constants: list[str] = []  # `CONSTANT_<n> = ...` definitions
        self.helpers: list[str] = []  # helper function sources, each once

    def add_constant(self, expression: str) -> str:
        """Define `CONSTANT_<n> = expression` at module level; returns its name."""
        name = f"CONSTANT_{len(self.constants)}"
        self.constants.append(f"{name} = {expression}")
        return name

    def use_helper(self, source: str) -> None:
        if source not in self.helpers:
            self.helpers.append(source)


def py_template(fmt: str) -> Callable:
    """A py_expr from a format string over the operands: "np.exp({0})", "{0} + {1}"."""

    def render(args, params, node, ctx):
        return fmt.format(*args)

    render.template = fmt
    return render


def dtype_text(dtype) -> str:
    return f"np.{np.dtype(dtype).name}"


def literal(x) -> str:
    """A scalar as Python source that reads back to the same value (nan and inf as np names)."""
    if isinstance(x, (bool, np.bool_)):
        return "True" if x else "False"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if np.isnan(x):
            return "np.nan"
        if np.isinf(x):
            return "np.inf" if x > 0 else "-np.inf"
        return repr(x)
    return str(int(x))


def nested_literal(items) -> str:
    """A nested list from ndarray.tolist() as source, each item through literal()."""
    if isinstance(items, list):
        return "[" + ", ".join(nested_literal(x) for x in items) + "]"
    return literal(items)
