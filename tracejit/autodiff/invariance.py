"""Which max/min reductions the differentiated outputs cannot feel: their cotangent is exactly zero.

The stable forms of softmax, log-softmax and logsumexp subtract the row maximum first:

    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))

In exact arithmetic logp does not depend on m at all (shifting m by any c shifts both terms by -c),
so d logp / d m = 0. Differentiated literally, the program still sends a cotangent into m, one that
is rounding noise, and the VJP of max turns it into a tie mask: a comparison of every element with
its row maximum, a count of the ties and another pass over the data. JAX's own logsumexp and
log_softmax avoid that with a stop_gradient written by hand. Here the graph is analysed instead: a
reduction whose every perturbation leaves the seeded outputs unchanged is treated as a constant by
the backward sweep (vjp.py), which drops exactly the terms that sum to zero.

The analysis perturbs one reduction m by an arbitrary delta (any array of m's shape) and follows the
effect forward through the graph. The effect on a value is one of:

    Shift(k):  the value changes by k * delta, delta broadcast along the value's axes;
    Scale(k):  the value is multiplied by exp(k * delta);
    none:      the value does not change;
    unknown:   anything else (the analysis gives up for this reduction).

`layout` records which axis of delta each axis of the value follows (None: constant along it), so
that two effects combine only when they line up element for element. The rules are identities of
real arithmetic: exp(a + c) = exp(a) * e^c, log(a * e^c) = log(a) + c, sum(a * e^c) over axes along
which c is constant = sum(a) * e^c, max(a + c) = max(a) + c, and so on. A reduction is cut only when
every seeded output comes out unchanged; cutting several at once is sound too (each one's analysis
already lets the later ones respond, so by induction from the last every direct partial is zero).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from .. import dtypes
from ..ir.graph import Graph, Node, Value

SHIFT, SCALE = "shift", "scale"
UNKNOWN = "unknown"
CANDIDATES = ("max", "min")


@dataclass(frozen=True)
class Effect:
    """How a value responds to the perturbation: `kind` SHIFT or SCALE with coefficient k != 0."""

    kind: str
    k: Fraction
    layout: tuple  # per axis of the value: the axis of delta it follows, or None


def invariant_reductions(graph: Graph, outputs: Sequence[Value]) -> set[Value]:
    """The float max/min reduction results of `graph` whose perturbation leaves `outputs` unchanged."""
    return {
        node.out for node in graph.nodes
        if node.prim.name in CANDIDATES and dtypes.is_float(node.out.dtype)
        and _outputs_unchanged(graph, node.out, outputs)
    }


def _outputs_unchanged(graph: Graph, m: Value, outputs: Sequence[Value]) -> bool:
    layout = tuple(axis if size != 1 else None for axis, size in enumerate(m.shape))
    effects: dict[Value, Effect | str] = {m: Effect(SHIFT, Fraction(1), layout)}
    for node in graph.nodes:
        if m in node.outputs:
            continue
        moved = [effects.get(v) for v in node.inputs]
        if all(e is None for e in moved):
            continue
        if UNKNOWN in moved or len(node.outputs) != 1:
            result = UNKNOWN
        else:
            result = _propagate(node, moved)
        if result is not None:
            effects.update((v, result) for v in node.outputs)
    return all(effects.get(v) is None for v in outputs)


def _propagate(node: Node, moved: list) -> Effect | str | None:
    """The effect on the node's output, given the effects on its inputs (at least one is moved)."""
    rule = _RULES.get(node.prim.name)
    if rule is None:
        return UNKNOWN
    return _normalize(rule(node, moved))


def _normalize(effect):
    if isinstance(effect, Effect) and effect.k == 0:
        return None  # the changes cancelled exactly
    return effect


# ---- elementwise ---------------------------------------------------------------------------------
def _aligned(node: Node, moved: list) -> tuple | str:
    """The common layout of the moved operands, aligned to the output's axes, or UNKNOWN."""
    ndim = node.out.ndim
    layouts = {(None,) * (ndim - len(e.layout)) + e.layout for e in moved if e is not None}
    return layouts.pop() if len(layouts) == 1 else UNKNOWN


def _combine(kind, signs):
    """add / subtract combine shifts, multiply / divide scales: the coefficients add up with these
    signs (e^a e^b = e^(a + b)); an operand with the other kind of effect is unknown."""
    def rule(node, moved):
        layout = _aligned(node, moved)
        if layout is UNKNOWN or any(e is not None and e.kind != kind for e in moved):
            return UNKNOWN
        return Effect(kind, sum((s * e.k for s, e in zip(signs, moved) if e is not None), Fraction(0)), layout)
    return rule


def _negative(node, moved):
    """-(a + k delta) = -a - k delta; -(a e^(k delta)) = (-a) e^(k delta)."""
    (e,) = moved
    return Effect(e.kind, -e.k if e.kind == SHIFT else e.k, e.layout)


def _switch(src, dst):
    """exp turns a shift into a scale; log turns a scale into a shift."""
    def rule(node, moved):
        (e,) = moved
        return Effect(dst, e.k, e.layout) if e.kind == src else UNKNOWN
    return rule


# ---- reductions and views ------------------------------------------------------------------------
def _reduction(kinds):
    """A reduction keeps an effect of these kinds when delta is constant along the reduced axes."""
    def rule(node, moved):
        (e,) = moved
        axes = node.params["axes"]
        if e.kind not in kinds or any(e.layout[a] is not None for a in axes):
            return UNKNOWN
        return Effect(e.kind, e.k, tuple(d for a, d in enumerate(e.layout) if a not in axes))
    return rule


def _reshape(node, moved):
    """Only reshapes that add or drop axes of length 1 keep track of which axis is which."""
    (e,) = moved
    (x,) = node.inputs
    old = [d for d, size in zip(e.layout, x.shape) if size != 1]
    if [s for s in x.shape if s != 1] != [s for s in node.out.shape if s != 1]:
        return UNKNOWN
    it = iter(old)
    return Effect(e.kind, e.k, tuple(next(it) if size != 1 else None for size in node.out.shape))


def _broadcast_to(node, moved):
    (e,) = moved
    return Effect(e.kind, e.k, (None,) * (node.out.ndim - len(e.layout)) + e.layout)


def _transpose(node, moved):
    (e,) = moved
    return Effect(e.kind, e.k, tuple(e.layout[p] for p in node.params["perm"]))


_RULES = {
    "add": _combine(SHIFT, (1, 1)),
    "subtract": _combine(SHIFT, (1, -1)),
    "negative": _negative,
    "multiply": _combine(SCALE, (1, 1)),
    "divide": _combine(SCALE, (1, -1)),
    "exp": _switch(SHIFT, SCALE),
    "log": _switch(SCALE, SHIFT),
    "sum": _reduction((SCALE,)),
    "max": _reduction((SHIFT, SCALE)),
    "min": _reduction((SHIFT, SCALE)),
    "reshape": _reshape,
    "broadcast_to": _broadcast_to,
    "transpose": _transpose,
}
