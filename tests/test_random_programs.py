"""Hypothesis builds random graphs (elementwise chains with broadcasting, reductions, reshapes,
transposes, slices, matmuls, gathers, concatenations) with GraphBuilder; the C backend must
agree with the reference interpreter on each of them."""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracejit.ir.builder import GraphBuilder
from tracejit.ir.interpret import evaluate
from tracejit.ir.verify import verify
from tracejit.runtime.executable import build_executable

EXAMPLES = int(os.environ.get("TRACEJIT_FUZZ_EXAMPLES", "50"))  # a longer campaign: TRACEJIT_FUZZ_EXAMPLES=1000

UNARY = ["tanh", "sin", "negative", "abs", "exp", "square"]
BINARY = ["add", "subtract", "multiply", "maximum", "minimum"]
REDUCE = ["sum", "max", "min"]


class ProgramBuilder:
    """Draws one random program, step by step, keeping a pool of float values to build on."""

    def __init__(self, draw, dtype):
        self.draw, self.dtype = draw, np.dtype(dtype)
        self.b = GraphBuilder("random")
        self.pool: list = []
        self.inputs: list = []  # (Value, maker(rng) -> array)

    def new_input(self, shape, kind="float", bound=None):
        value = self.b.new_input(shape, np.int64 if kind == "index" else self.dtype, f"x{len(self.inputs)}")
        if kind == "index":
            self.inputs.append((value, lambda r, s=shape, n=bound: r.integers(-n, n, s)))
        else:
            self.inputs.append((value, lambda r, s=shape, d=self.dtype: r.uniform(-1.5, 1.5, s).astype(d)))
            self.pool.append(value)
        return value

    def shape(self, min_rank=0, max_rank=3):
        rank = self.draw(st.integers(min_rank, max_rank))
        return tuple(self.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))

    def pick(self, values=None):
        values = values if values is not None else self.pool
        return values[self.draw(st.integers(0, len(values) - 1))]

    def emit(self, prim, *args, **params):
        out = self.b.emit(prim, *args, **params)
        self.pool.append(out)
        return out

    # steps
    def unary(self):
        x = self.pick()
        op = self.draw(st.sampled_from(UNARY))
        if op in ("exp", "square"):  # keep magnitudes sane through long chains
            x = self.emit("tanh", x)
        self.emit(op, x)

    def binary(self):
        x = self.pick()
        y = self.broadcast_partner(x)
        if self.draw(st.booleans()):
            x, y = y, x
        self.emit(self.draw(st.sampled_from(BINARY)), x, y)

    def broadcast_partner(self, x):
        partners = [v for v in self.pool if _broadcastable(v.shape, x.shape)]
        if partners and self.draw(st.booleans()):
            return self.pick(partners)
        keep = self.draw(st.lists(st.booleans(), min_size=x.ndim, max_size=x.ndim))
        shape = tuple(d if k else 1 for d, k in zip(x.shape, keep))
        return self.new_input(shape[self.draw(st.integers(0, x.ndim)):])

    def reduce(self):
        x = self.pick([v for v in self.pool if v.ndim >= 1] or self.pool)
        if x.ndim == 0:
            return self.unary()
        axes = tuple(sorted(set(self.draw(st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim)))))
        out = self.emit(self.draw(st.sampled_from(REDUCE)), x, axes=axes)
        if self.draw(st.booleans()):  # keepdims, then use it against the original
            kept = self.emit("reshape", out, shape=tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
            self.emit("subtract", x, kept)

    def argmax(self):
        x = self.pick([v for v, _ in self.inputs if v.ndim >= 1 and v.dtype == self.dtype] or [None])
        if x is None:
            return self.unary()
        out = self.b.emit(self.draw(st.sampled_from(["argmax", "argmin"])), x,
                          axes=(self.draw(st.integers(0, x.ndim - 1)),))
        self.emit("astype", out, dtype=self.dtype)

    def reshape(self):
        x = self.pick()
        dims = _factor(x.size, self.draw(st.integers(0, 3)), self.draw)
        self.emit("reshape", x, shape=tuple(dims))

    def transpose(self):
        x = self.pick()
        self.emit("transpose", x, perm=tuple(self.draw(st.permutations(range(x.ndim)))))

    def slice(self):
        x = self.pick([v for v in self.pool if v.ndim >= 1] or self.pool)
        starts, stops, steps = [], [], []
        for d in x.shape:
            step = self.draw(st.sampled_from([1, 1, 2, -1]))
            start = self.draw(st.integers(0, d - 1))
            if step > 0:
                starts.append(start), stops.append(self.draw(st.integers(start + 1, d))), steps.append(step)
            else:
                starts.append(start), stops.append(-1), steps.append(step)
        self.emit("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))

    def broadcast(self):
        x = self.pick()
        lead = tuple(self.draw(st.lists(st.integers(1, 3), max_size=2)))
        shape = lead + tuple(self.draw(st.integers(2, 3)) if d == 1 else d for d in x.shape)
        self.emit("broadcast_to", x, shape=shape)

    def matmul(self):
        x = self.pick([v for v in self.pool if v.ndim >= 2] or [None])
        if x is None:
            x = self.new_input(self.shape(2, 3))
        n = self.draw(st.integers(1, 4))
        w = self.new_input(x.shape[-1:] + (n,) if self.draw(st.booleans()) else (n, x.shape[-1]))
        if w.shape[0] != x.shape[-1] or w.shape == (x.shape[-1], x.shape[-1]) and self.draw(st.booleans()):
            w = self.emit("transpose", w, perm=(1, 0))
        self.emit("matmul", x, w)

    def gather(self):
        x = self.pick([v for v in self.pool if v.ndim >= 1] or [None])
        if x is None:
            return self.unary()
        idx = self.new_input(self.shape(0, 2), kind="index", bound=x.shape[0])
        self.emit("gather", x, idx)

    def where(self):
        x = self.pick()
        y = self.broadcast_partner(x)
        cond = self.b.emit(self.draw(st.sampled_from(["greater", "less_equal", "equal"])), x, y)
        self.emit("where", cond, x, y)

    def scatter_add(self):
        x = self.pick([v for v in self.pool if v.ndim >= 1] or [None])
        if x is None:
            return self.unary()
        rows = self.draw(st.integers(1, 4))
        idx = self.new_input(x.shape[:1], kind="index", bound=rows)
        self.emit("scatter_add", x, idx, shape=(rows,) + x.shape[1:])

    def concatenate(self):
        x = self.pick([v for v in self.pool if v.ndim >= 1] or [None])
        if x is None:
            return self.unary()
        axis = self.draw(st.integers(0, x.ndim - 1))
        other = [v for v in self.pool if v.ndim == x.ndim and all(a == b for i, (a, b) in enumerate(zip(v.shape, x.shape)) if i != axis)]
        self.emit("concatenate", x, self.pick(other), axis=axis)

    STEPS = ["unary", "binary", "binary", "reduce", "reshape", "transpose", "slice", "broadcast", "matmul",
             "gather", "concatenate", "argmax", "where", "scatter_add"]

    def build(self):
        self.new_input(self.shape(0, 3))
        for _ in range(self.draw(st.integers(1, 7))):
            getattr(self, self.draw(st.sampled_from(self.STEPS)))()
        outs = self.draw(st.lists(st.integers(0, len(self.pool) - 1), min_size=1, max_size=3))
        outs = [self.pool[-1]] + [self.pool[i] for i in outs]  # inputs and repeats included
        return self.b.build(outs)


def _broadcastable(a, b) -> bool:
    """Shape a broadcasts onto b without growing b."""
    return len(a) <= len(b) and all(x in (1, y) for x, y in zip(a[::-1], b[::-1]))


def _factor(size, rank, draw):
    dims = []
    for _ in range(rank):
        divisors = [d for d in range(1, size + 1) if size % d == 0]
        d = draw(st.sampled_from(divisors))
        dims.append(d)
        size //= d
    return dims + [size]


@st.composite
def programs(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    builder = ProgramBuilder(draw, dtype)
    graph = builder.build()
    return graph, [maker for _, maker in builder.inputs], dtype


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(), st.integers(0, 2**16))
def test_c_backend_matches_interpreter(program, seed):
    graph, makers, dtype = program
    verify(graph)
    r = np.random.default_rng(seed)
    args = [make(r) for make in makers]
    want = evaluate(graph, args)
    got = build_executable(graph, "random")(*args)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, (n, g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g, w, equal_nan=True, err_msg=f"output {n}\n{graph}", **tol)
