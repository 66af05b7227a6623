"""PLACEHOLDER until the C backend lands: runs the optimized graph with the reference interpreter."""
from __future__ import annotations

import numpy as np

from ..ir.interpret import evaluate
from ..passes.pipeline import optimize


class Executable:
    def __init__(self, graph, name):
        self.graph = optimize(graph)
        self.name = name
        self.ir_text = str(self.graph)
        self.c_source = "/* C backend not built yet */"

    def __call__(self, *leaves):
        return [np.array(o) for o in evaluate(self.graph, [np.asarray(x) for x in leaves])]


def build_executable(graph, name="main"):
    return Executable(graph, name)
