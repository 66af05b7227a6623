"""Loop kernel -> loop nest description: loops, strided accesses, levels and phases.

A loop kernel iterates over its domain. Kept axes make the outer loops, reduced axes the inner
ones. Each value is at one of two levels:
  outer  does not vary along the reduced axes: computed once per outer iteration (a row max,
         a row sum, anything computed from them). In a kernel without reductions every value
         is outer, and the outer loops are the whole nest.
  full   varies along the reduced axes: computed inside an inner loop (a "phase").
Phase p is one pass over the reduced axes; a full value that reads an outer value which needs
phase p's reductions runs in phase p + 1 (softmax: max in phase 0, exp+sum in phase 1, divide
in phase 2, all inside one loop over rows). A full value is recomputed in each phase that
needs it, never stored in between.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Node, Value
from ..ops.registry import Kind
from ..passes.fusion import Kernel, is_unit_reshape
from ..passes.views import View


@dataclass
class Loop:
    axes: tuple[int, ...]  # domain axes iterated by this loop (collapsed when strides allow)
    extent: int
    var: str = ""


@dataclass
class Access:
    """A strided read or write of a root's storage in domain coordinates."""

    root: Value
    offset: int
    strides: tuple[int, ...]  # per domain axis (0 where the access does not move)


@dataclass
class LoopNest:
    kernel: Kernel
    outer: list[Loop]
    inner: list[Loop]
    level: dict = field(default_factory=dict)  # member Value -> "outer" | "full"
    phase: dict = field(default_factory=dict)  # full member Value -> phase index
    after: dict = field(default_factory=dict)  # outer member Value -> last phase it waits for (-1: none)
    num_phases: int = 0

    @property
    def size(self) -> int:
        n = 1
        for d in self.kernel.domain:
            n *= d
        return n


def operand_map(kernel: Kernel, value: Value, consumer: Node | None) -> tuple:
    """Domain axis of each axis of `value` as read by `consumer` (numpy broadcasting alignment)."""
    if consumer is None or consumer.prim.kind is not Kind.ELEMENTWISE:
        return kernel.axis_map[value]
    out = consumer.out
    out_map = kernel.axis_map[out]
    shift = out.ndim - value.ndim
    return tuple(out_map[j + shift] if value.shape[j] == out.shape[j + shift] else None for j in range(value.ndim))


def access(view: View, amap: tuple, ndim: int) -> Access:
    strides = [0] * ndim
    for s, d in zip(view.strides, amap):
        if d is not None:
            strides[d] += s
    return Access(view.root, view.offset, tuple(strides))


def plan_loops(kernel: Kernel, accesses: list[Access]) -> tuple[list[Loop], list[Loop]]:
    """Outer loops over kept axes, inner loops over reduced axes; size-1 axes dropped, adjacent
    axes collapsed into one loop where every access steps through them as one."""
    domain = kernel.domain
    kept = [d for d in range(len(domain)) if d not in kernel.reduce_axes and domain[d] != 1]
    reduced = [d for d in sorted(kernel.reduce_axes) if domain[d] != 1]
    return _collapse(kept, domain, accesses), _collapse(reduced, domain, accesses)


def _collapse(axes: list[int], domain, accesses) -> list[Loop]:
    loops: list[Loop] = []
    for d in axes:
        if loops and _can_collapse(loops[-1].axes[-1], d, domain, accesses):
            last = loops[-1]
            loops[-1] = Loop(last.axes + (d,), last.extent * domain[d])
        else:
            loops.append(Loop((d,), domain[d]))
    return loops


def _can_collapse(outer: int, inner: int, domain, accesses) -> bool:
    if inner != outer + 1:
        return False
    return all(a.strides[outer] == a.strides[inner] * domain[inner] for a in accesses)


def assign_levels(nest: LoopNest) -> None:
    """Level of every member value, the phase of full values, and what outer values wait for."""
    kernel = nest.kernel
    reduced = {d for d in kernel.reduce_axes if kernel.domain[d] != 1}
    members = kernel.member_values
    for node in kernel.nodes:
        for v in node.outputs:
            amap = kernel.axis_map[v]
            nest.level[v] = "full" if any(d in reduced for d in amap if d is not None) else "outer"
    for node in kernel.nodes:
        v = node.outputs[0]
        ins = [u for u in node.inputs if u in members]
        if nest.level[v] == "full":
            phases = [nest.phase[u] if nest.level[u] == "full" else nest.after[u] + 1 for u in ins]
            nest.phase[v] = max(phases, default=0)
        elif node.prim.kind is Kind.REDUCE and node.inputs[0] in members and nest.level[node.inputs[0]] == "full":
            nest.after[v] = nest.phase[node.inputs[0]]
        elif node.prim.kind is Kind.REDUCE:  # reduction of a load: the first pass
            nest.after[v] = 0
        else:
            nest.after[v] = max((nest.after[u] for u in ins), default=-1)
    nest.num_phases = 1 + max([*nest.phase.values(), *nest.after.values(), -1])
    if not reduced:
        nest.num_phases = 0


def reduction_phase(nest: LoopNest, node: Node) -> int:
    """Which inner pass accumulates this reduction."""
    x = node.inputs[0]
    return nest.phase[x] if x in nest.phase else 0


def build_nest(kernel: Kernel, accesses: list[Access]) -> LoopNest:
    outer, inner = plan_loops(kernel, accesses)
    nest = LoopNest(kernel, outer, inner)
    assign_levels(nest)
    return nest


def is_alias(node: Node) -> bool:
    """Nodes that only relabel axes inside a kernel (no C statement of their own)."""
    return is_unit_reshape(node)
