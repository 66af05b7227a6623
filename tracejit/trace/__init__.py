"""Front end: tracer objects inside numpy's protocols record primitives into an ir.Graph."""
from .tracer import Tracer
from .tracing import TracedFunction, trace

__all__ = ["Tracer", "TracedFunction", "trace"]
