"""Control-flow kernels -> C: a real `if`/`else`, `for` and `while`.

A control node is one C function `tj_k{n}_{cond|while|scan}` taking its operands' storage and
writing its outputs' storage. Each region (branch, loop body, loop condition) is fused and
emitted with the same pipeline as a whole program (passes/fusion.py, then the kernel emitters):
its kernels become C functions of their own, and the control function calls them in order,
binding the region's inputs and outputs to pointers:

  cond   if (*pred) { true_branch kernels } else { false_branch kernels }; the branches write the
         node's outputs directly.
  scan   for (t = 0; t < length; t++): body(t, carry, x + t * slice) -> next carry, ys + t * slice
  while  for (;;) { cond(carry) -> pred; if (!pred) break; body(carry) -> next carry }

Loop-carried values live in two buffers, the node's output and one spare, and the pointers are
swapped after each step (never copied): the step reads `cur` and writes `next`. The first step
reads the initial value in place. A scan of static length starts on the buffer that makes the
last step land in the output; a while loop copies once at the end if it landed in the spare.
Region temporaries are allocated once before the loop, not per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes
from ..ir.graph import Graph, Value
from ..passes.fusion import Kernel, KernelGraph, fuse, is_scalar_constant, kernel_ops
from .c_exprs import c_literal
from .c_kernel import KernelContext, KernelText, Writer, emit_kernel
from .c_names import kernel_name

ALIGNMENT = 64


# ---- regions --------------------------------------------------------------------------------------
@dataclass
class Region:
    """One region compiled: its kernel functions, and what the control function must provide."""

    graph: Graph
    kg: KernelGraph
    texts: list  # KernelText per kernel, in execution order
    statics: dict  # constant Value -> name of its static array
    temps: dict  # root Value -> name of the buffer the control function allocates
    prefix: str = ""  # of its kernels' names
    functions: str = ""

    @property
    def can_fail(self) -> bool:
        return any(t.can_fail for t in self.texts)


def compile_region(ctx: KernelContext, graph: Graph, prefix: str) -> Region:
    """Fuse `graph` and emit its kernels as functions named `prefix_k{n}_{ops}`. Its constants and
    temporaries get names of their own (a Value may appear in two regions: a branch and its pullback)."""
    kg = fuse(graph)
    producer = graph.producers()
    rctx = KernelContext(ctx.names, kg.views, producer, ctx.errors)
    texts = []
    for n, kernel in enumerate(kg.kernels):
        ops = kernel_ops(kernel)
        texts.append(emit_kernel(rctx, kernel, prefix + kernel_name(n, ops)[len("tj"):], ops))
    roots = list(dict.fromkeys(r for t in texts for r in t.params))
    constants = [r for r in roots if r in producer and producer[r].prim.name == "constant"]
    bound = set(graph.inputs) | set(kg.outputs) | set(constants)
    fresh = ctx.names.fresh
    statics = {c: fresh(f"{c.name}_const") for c in constants}
    temps = {r: fresh(f"{r.name}_tmp") for r in roots if r not in bound}
    region = Region(graph, kg, texts, statics, temps, prefix)
    region.functions = "\n".join([_static_array(name, c, producer[c].params["value"]) for c, name in statics.items()]
                                 + [t.text + "\n" for t in texts])
    return region


def _static_array(name: str, value: Value, array) -> str:
    flat = array.reshape(-1)
    items = ", ".join(c_literal(x, value.dtype) for x in flat) or "0"
    return f"static const {dtypes.c_type(value.dtype)} tj_{name}[{max(flat.size, 1)}] = {{{items}}};"


def call_region(w: Writer, region: Region, inputs: list[str], outputs: list[str]) -> None:
    """The calls running `region` with its inputs and outputs at the given C pointer expressions."""
    where = {v: e for v, e in zip(region.graph.inputs, inputs)}
    where.update(zip(region.kg.outputs, outputs))
    where.update((c, f"tj_{name}") for c, name in region.statics.items())
    where.update(region.temps)
    w(f"/* {region.graph.name} */")
    for text in region.texts:
        args = ", ".join([where[r] for r in text.params] + (["tj_bad_index"] if text.can_fail else []))
        if text.can_fail:
            w(f"tj_status = {text.name}({args});", "if (tj_status) goto tj_done;")
        else:
            w(f"{text.name}({args});")


# ---- the control function -----------------------------------------------------------------------
@dataclass
class ControlFunction:
    """Builds the text of one control kernel's C function."""

    ctx: KernelContext
    kernel: Kernel
    name: str
    w: Writer = field(default_factory=Writer)
    params: list = field(default_factory=list)  # root Values, in parameter order
    regions: list = field(default_factory=list)
    spares: list = field(default_factory=list)  # (C name, Value): a carry's second buffer

    @property
    def node(self):
        return self.kernel.nodes[0]

    def operand(self, n: int) -> str:
        """A C pointer expression for the node's input n (a literal gets a local)."""
        value = self.kernel.operands[n]
        if is_scalar_constant(self.ctx.producer.get(value)):
            local = self.ctx.names.fresh(f"{value.name}_lit")
            self.w(f"const {dtypes.c_type(value.dtype)} {local} = {self.ctx.literal_of(value)};")
            return f"&{local}"
        view = self.ctx.views[value]
        return _plus(self.root(view.root), view.offset)

    def output(self, n: int) -> str:
        return self.root(self.node.outputs[n])

    def root(self, value: Value) -> str:
        if value not in self.params:
            self.params.append(value)
        return self.ctx.names.buffer(value)

    def region(self, graph: Graph) -> Region:
        prefix, n = f"{self.name}_{graph.name}", 1
        while any(r.prefix == prefix for r in self.regions):  # two regions of one name (cond(p, f, f))
            prefix, n = f"{self.name}_{graph.name}{n}", n + 1
        region = compile_region(self.ctx, graph, prefix)
        self.regions.append(region)
        return region

    def spare(self, value: Value) -> str:
        name = self.ctx.names.fresh(f"{value.name}_spare")
        self.spares.append((name, value))
        return name

    def finish(self, comment: str) -> KernelText:
        written = set(self.node.outputs)
        sig = [f"{'' if r in written else 'const '}{dtypes.c_type(r.dtype)} *{self.ctx.names.buffer(r)}"
               for r in self.params] + ["int64_t *tj_bad_index"]
        allocations = [(name, v) for name, v in self.spares] + \
                      [(name, r) for region in self.regions for r, name in region.temps.items()]
        head = [f"/* {comment}{f'  ({self.node.loc})' if self.node.loc else ''} */",
                f"static int {self.name}({', '.join(sig)})", "{", "    int tj_status = 0;"]
        for name, v in allocations:
            head.append(f"    {dtypes.c_type(v.dtype)} *{name} = aligned_alloc({ALIGNMENT}, {_bytes(v)});")
        if allocations:
            checks = " || ".join(f"!{name}" for name, _ in allocations)
            head.append(f"    if ({checks}) {{ tj_status = -1; goto tj_done; }}")
        jumps = allocations or any(region.can_fail for region in self.regions)
        tail = (["tj_done:"] if jumps else []) + [f"    free({name});" for name, _ in allocations] + \
               ["    return tj_status;", "}"]
        functions = [r.functions for r in self.regions]
        text = "\n".join(functions + ["\n".join(head + self.w.lines + tail)])
        return KernelText(self.name, text, list(self.params), can_fail=True)


def _plus(pointer: str, offset: int) -> str:
    return f"{pointer} + {offset}" if offset else pointer


def _bytes(value: Value) -> int:
    size = max(value.size * value.dtype.itemsize, 1)
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# ---- cond, scan, while --------------------------------------------------------------------------
def emit_cond(f: ControlFunction) -> str:
    node = f.node
    pred = f.operand(0)
    operands = [f.operand(n) for n in range(1, len(node.inputs))]
    outputs = [f.output(n) for n in range(len(node.outputs))]
    true_region, false_region = f.region(node.params["true_branch"]), f.region(node.params["false_branch"])
    f.w.open(f"if (*{pred})")
    call_region(f.w, true_region, operands, outputs)
    f.w.depth -= 1
    f.w.open("} else")
    call_region(f.w, false_region, operands, outputs)
    f.w.close()
    return "cond"


class Carries:
    """The double-buffered carries of a loop: `cur[j]` is read by a step, `next[j]` written."""

    def __init__(self, f: ControlFunction, inits: list[str], first_in_output: bool):
        self.f, self.outs = f, [f.node.outputs[j] for j in range(len(inits))]
        names = f.ctx.names
        self.cur = [names.fresh(f"{v.name}_cur") for v in self.outs]
        self.next = [names.fresh(f"{v.name}_next") for v in self.outs]
        self.out = [f.output(j) for j in range(len(inits))]
        self.spare = [f.spare(v) for v in self.outs]
        for v, cur, nxt, init, out, spare in zip(self.outs, self.cur, self.next, inits, self.out, self.spare):
            t = dtypes.c_type(v.dtype)
            f.w(f"const {t} *{cur} = {init};", f"{t} *{nxt} = {out if first_in_output else spare};")

    def swap(self) -> None:
        """The step's result becomes the next step's input; the other buffer takes the next result."""
        for cur, nxt, out, spare in zip(self.cur, self.next, self.out, self.spare):
            self.f.w(f"{cur} = {nxt}; {nxt} = {nxt} == {out} ? {spare} : {out};")

    def land_in_output(self) -> None:
        for v, cur, out in zip(self.outs, self.cur, self.out):
            self.f.w(f"if ({cur} != {out}) memcpy({out}, {cur}, {v.size * v.dtype.itemsize});")


def emit_scan(f: ControlFunction) -> str:
    node, p = f.node, f.node.params
    nc, nx, length = p["num_carry"], p["num_xs"], p["length"]
    inputs = [f.operand(n) for n in range(len(node.inputs))]
    inits, xs, consts = inputs[:nc], inputs[nc:nc + nx], inputs[nc + nx:]
    body = f.region(p["body"])
    carries = Carries(f, inits, first_in_output=length % 2 == 1)
    ys = [f.output(n) for n in range(nc, len(node.outputs))]
    t = f.ctx.names.fresh("t")
    header = (f"for (int64_t {t} = {length - 1}; {t} >= 0; {t}--)" if p["reverse"]
              else f"for (int64_t {t} = 0; {t} < {length}; {t}++)")
    f.w.open(header)
    x_slices = [_plus(x, f"{t} * {_slice_size(v)}") for x, v in zip(xs, node.inputs[nc:nc + nx])]
    y_slots = [_plus(y, f"{t} * {_slice_size(v)}") for y, v in zip(ys, node.outputs[nc:])]
    call_region(f.w, body, [f"&{t}"] + carries.cur + x_slices + consts, carries.next + y_slots)
    carries.swap()
    f.w.close()
    carries.land_in_output()
    return f"scan over {length} steps{', reversed' if p['reverse'] else ''}"


def emit_while(f: ControlFunction) -> str:
    node = f.node
    nc = len(node.outputs)
    inputs = [f.operand(n) for n in range(len(node.inputs))]
    inits, consts = inputs[:nc], inputs[nc:]
    cond, body = f.region(node.params["cond"]), f.region(node.params["body"])
    carries = Carries(f, inits, first_in_output=True)
    pred = f.ctx.names.fresh("pred")
    f.w(f"bool {pred} = false;")
    f.w.open("for (;;)")
    call_region(f.w, cond, carries.cur + consts, [f"&{pred}"])
    f.w(f"if (!{pred}) break;")
    call_region(f.w, body, carries.cur + consts, carries.next)
    carries.swap()
    f.w.close()
    carries.land_in_output()
    return "while"


def _slice_size(stacked: Value) -> int:
    return stacked.size // stacked.shape[0] if stacked.shape[0] else 0


LOWERINGS = {"cond": emit_cond, "scan": emit_scan, "while": emit_while}


def emit_control(ctx: KernelContext, kernel: Kernel, name: str, ops: list[str]) -> KernelText:
    f = ControlFunction(ctx, kernel, name)
    comment = LOWERINGS[f.node.prim.name](f)
    return f.finish(comment)
