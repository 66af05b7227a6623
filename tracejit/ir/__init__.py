"""The graph IR shared by every stage: values, nodes, graphs, the builder, printer, verifier, interpreter."""
from .graph import Graph, Node, Value

__all__ = ["Graph", "Node", "Value"]
