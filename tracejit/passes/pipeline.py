"""optimize(graph): the ordered graph-to-graph passes run before fusion and code generation.

With TRACEJIT_DEBUG >= 2 (or verify=True, as the tests do) the IR is verified after every pass.
"""
from __future__ import annotations

import sys

from .. import config
from ..ir.graph import Graph
from ..ir.printer import format_graph
from ..ir.verify import verify
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .index_rewrites import rewrite_indexing
from .simplify import simplify

# simplify runs again after rewrite_indexing, whose rules emit reshape chains and identity
# gathers that it folds away (and it turns user-written np.arange into the iota they look for)
PASSES = [simplify, rewrite_indexing, simplify, eliminate_common_subexpressions, eliminate_dead_code]


def optimize(graph: Graph, verify_each: bool | None = None) -> Graph:
    debug = config.debug_level()
    check = verify_each if verify_each is not None else debug >= 2
    for pass_fn in PASSES:
        graph = pass_fn(graph)
        if check:
            verify(graph)
        if debug >= 2:
            print(f"--- IR after {pass_fn.__name__} ---\n{format_graph(graph)}", file=sys.stderr)
    return graph
