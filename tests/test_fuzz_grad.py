"""Hypothesis writes random differentiable numpy programs; their gradients from tracejit must
match central finite differences, and the compiled gradient (`tj.jit(tj.grad(f))`) must match
the eager one (`tj.grad(f)`, the reference interpreter).

A program is Python source text, one numpy statement per step, built from small composable
pieces (smooth elementwise ops on safe domains, broadcasting, reductions with axes and keepdims,
matmuls with plain and transposed operands, gathers with integer labels, reshapes, transposes,
slices, concatenations, masks), so the same function runs in numpy, under tj.grad and under
finite differences in float64, and a failure shrinks to a short program printed in full.
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracejit as tj

# Each template maps any finite input to a finite output with bounded derivatives nearby.
UNARY = [
    "np.tanh({x})", "np.sin({x})", "np.cos({x})", "np.exp(np.tanh({x}))", "np.log1p({x} * {x})",
    "np.sqrt(1.0 + {x} * {x})", "{x} * {x}", "np.square({x})", "1.0 / (1.0 + np.exp(-np.tanh({x})))",
    "{x} / (1.0 + {x} * {x})", "np.log(2.0 + np.sin({x}))", "np.tanh({x}) ** 3", "np.arctan({x})",
    "-{x}", "0.5 * {x} - 1.25", "np.expm1(np.tanh({x}))", "np.sinh(np.tanh({x}))",
]
BINARY = ["{x} + {y}", "{x} - {y}", "{x} * {y}", "{x} / (1.5 + np.cos({y}))", "np.maximum({x}, {y})",
          "np.minimum({x}, {y})", "{x} * np.tanh({y}) + {y}"]
REDUCE = ["{x}.sum({axes})", "{x}.mean({axes})", "{x}.max({axes})", "np.min({x}, {axes})", "np.sum({x}, {axes})"]
EXAMPLES = int(os.environ.get("TRACEJIT_FUZZ_EXAMPLES", "40"))  # a longer campaign: TRACEJIT_FUZZ_EXAMPLES=1000
SHIFTED = [
    "{x} - {m} - {lse}", "np.exp({x} - {m}) / np.exp({x} - {m}).sum(axis={axis}, keepdims=True)", "{m} + {lse}",
    "np.tanh({x} - {m})", "{lse}", "{x} - {m} - 0.5 * {lse}",  # near misses: these feel m
]
MAX_ABS = 30.0  # values beyond this pass through tanh first, so exp and powers stay tame


class Program:
    """Source lines over inputs `p` (dict of float arrays, differentiated) and `k` (labels, masks
    and coefficients: not differentiated), with the values that drew them. Not a dataclass, so
    that hypothesis prints a failing example with our __repr__: the program's source."""

    def __init__(self):
        self.lines: list[str] = []
        self.params: dict[str, np.ndarray] = {}
        self.consts: dict[str, np.ndarray] = {}

    @property
    def source(self) -> str:
        return "def f(p, k):\n" + "".join(f"    {line}\n" for line in self.lines)

    def function(self):
        namespace = {"np": np}
        exec(self.source, namespace)  # noqa: S102 - our own generated test program
        return namespace["f"]

    def __repr__(self) -> str:
        """The source, then the inputs as Python literals: a failure can be pasted and rerun."""
        def literal(values):
            return "{" + ", ".join(f"'{n}': np.array({a.tolist()!r}, np.{a.dtype})" for n, a in values.items()) + "}"
        return f"\n{self.source}p = {literal(self.params)}\nk = {literal(self.consts)}\n"


class ProgramDrawer:
    """Draws one program step by step, running each new line in numpy to know its shape and size."""

    def __init__(self, draw, rng):
        self.draw, self.rng = draw, rng
        self.program = Program()
        self.env = {"np": np, "p": self.program.params, "k": self.program.consts}
        self.pool: list[str] = []  # names of float values that depend on p

    # ---- inputs and bookkeeping
    def param(self, shape) -> str:
        name = f"w{len(self.program.params)}"
        self.program.params[name] = self.rng.uniform(-1.5, 1.5, shape)
        return f"p['{name}']"

    def const(self, value) -> str:
        name = f"c{len(self.program.consts)}"
        self.program.consts[name] = value
        return f"k['{name}']"

    def shape(self, min_rank=1, max_rank=3) -> tuple:
        rank = self.draw(st.integers(min_rank, max_rank))
        return tuple(self.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))

    def value(self, name) -> np.ndarray:
        return self.env[name]

    def emit(self, expression: str) -> str:
        """Add `vN = expression` (through tanh if it grew too large) and return vN."""
        name = f"v{len(self.pool)}"
        result = eval(expression, self.env)  # noqa: S307 - our own generated expression
        if not np.all(np.abs(result) < MAX_ABS):
            expression = f"np.tanh({expression})"
            result = np.tanh(result)
        self.program.lines.append(f"{name} = {expression}")
        self.env[name] = np.asarray(result)
        self.pool.append(name)
        return name

    def pick(self, accept=lambda v: True) -> str | None:
        names = [n for n in self.pool if accept(self.value(n))]
        return self.draw(st.sampled_from(names)) if names else None

    # ---- steps
    def unary(self):
        x = self.pick()
        self.emit(self.draw(st.sampled_from(UNARY)).format(x=x))

    def binary(self):
        x = self.pick()
        y = self.partner(self.value(x).shape)
        if self.draw(st.booleans()):
            x, y = y, x
        self.emit(self.draw(st.sampled_from(BINARY)).format(x=x, y=y))

    def partner(self, shape) -> str:
        """A value that broadcasts against `shape`: from the pool, or a new parameter whose shape
        drops leading axes and/or has 1 in some places."""
        fits = self.pick(lambda v: _broadcastable(v.shape, shape))
        if fits is not None and self.draw(st.booleans()):
            return fits
        keep = self.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
        sub = tuple(d if k else 1 for d, k in zip(shape, keep))
        return self.param(sub[self.draw(st.integers(0, len(sub))):])

    def reduce(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return self.unary()
        ndim = self.value(x).ndim
        axes = self.draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        if self.draw(st.booleans()):
            axes = [a - ndim for a in axes]  # negative axes, as users write them
        axis_text = f"axis={axes[0]}" if len(axes) == 1 else f"axis={tuple(axes)}"
        if len(axes) == ndim and self.draw(st.booleans()):
            axis_text = ""  # over everything
        elif self.draw(st.booleans()):
            axis_text += ", keepdims=True"
        self.emit(self.draw(st.sampled_from(REDUCE)).format(x=x, axes=axis_text))

    def shift_by_extreme(self):
        """The stable softmax family, whose max or min the backward treats as a constant
        (autodiff/invariance.py), and near misses that do depend on it."""
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return self.unary()
        axis = self.draw(st.integers(-1, self.value(x).ndim - 1))
        m = self.draw(st.sampled_from([f"{x}.max(axis={axis}, keepdims=True)",
                                       f"np.min({x}, axis={axis}, keepdims=True)",
                                       f"np.expand_dims({x}.max(axis={axis}), {axis})"]))
        lse = f"np.log(np.exp({x} - {m}).sum(axis={axis}, keepdims=True))"
        self.emit(self.draw(st.sampled_from(SHIFTED)).format(x=x, m=m, lse=lse, axis=axis))

    def matmul(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return self.unary()
        xv = self.value(x)
        inner, n = xv.shape[-1], self.draw(st.integers(1, 4))
        w = self.pick(lambda v: v.ndim == 2 and v.shape[0] == inner) if self.draw(st.booleans()) else None
        if w is None:  # a new weight, stored as given or transposed
            w = self.param((inner, n)) if self.draw(st.booleans()) else f"{self.param((n, inner))}.T"
        forms = ["{x} @ {w}", "np.matmul({x}, {w})"] + (["({w}.T @ {x}.T).T"] if xv.ndim == 2 else [])
        self.emit(self.draw(st.sampled_from(forms)).format(x=x, w=w))

    def gather(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return self.unary()
        shape = self.value(x).shape
        if len(shape) >= 2 and self.draw(st.booleans()):  # one label per row: x[arange, labels]
            labels = self.const(self.rng.integers(-shape[1], shape[1], shape[0]))
            self.emit(f"{x}[np.arange({shape[0]}), {labels}]")
        else:  # rows picked with repeats (their gradients add up)
            labels = self.const(self.rng.integers(-shape[0], shape[0], self.draw(st.integers(1, 5))))
            self.emit(f"{x}[{labels}]")

    def reshape(self):
        x = self.pick()
        size = self.value(x).size
        dims = _factor(size, self.draw(st.integers(0, 2)), self.draw)
        self.emit(f"{x}.reshape({tuple(dims)})")

    def transpose(self):
        x = self.pick(lambda v: v.ndim >= 2)
        if x is None:
            return self.unary()
        perm = tuple(self.draw(st.permutations(range(self.value(x).ndim))))
        self.emit(f"{x}.T" if perm == tuple(reversed(range(len(perm)))) else f"np.transpose({x}, {perm})")

    def slice(self):
        x = self.pick(lambda v: v.ndim >= 1 and v.shape[0] >= 2)
        if x is None:
            return self.unary()
        self.emit(self.draw(st.sampled_from(["{x}[1:]", "{x}[::-1]", "{x}[::2]", "{x}[:-1] * {x}[1:]"])).format(x=x))

    def broadcast(self):
        x = self.pick()
        shape = self.value(x).shape
        lead = tuple(self.draw(st.lists(st.integers(1, 3), max_size=1)))
        target = lead + tuple(self.draw(st.integers(2, 3)) if d == 1 else d for d in shape)
        self.emit(f"np.broadcast_to({x}, {target})")

    def concatenate(self):
        x = self.pick(lambda v: v.ndim >= 1)
        if x is None:
            return self.unary()
        shape = self.value(x).shape
        axis = self.draw(st.integers(0, len(shape) - 1))
        other = self.pick(lambda v: v.ndim == len(shape) and all(a == b for i, (a, b) in enumerate(zip(v.shape, shape)) if i != axis))
        self.emit(f"np.concatenate([{x}, np.sin({other})], axis={axis})")

    def mask(self):
        x = self.pick()
        y = self.partner(self.value(x).shape)
        mask = self.const(self.rng.random(np.broadcast_shapes(self.value(x).shape, np.shape(self.env_value(y)))) < 0.5)
        self.emit(f"np.where({mask}, {x}, {y})")

    def env_value(self, name):
        return eval(name, self.env)  # noqa: S307 - a name or p['w0'] we generated

    STEPS = ["unary", "unary", "binary", "binary", "reduce", "shift_by_extreme", "matmul", "gather", "reshape",
             "transpose", "slice", "broadcast", "concatenate", "mask"]

    def build(self) -> Program:
        self.emit(self.param(self.shape()))
        for _ in range(self.draw(st.integers(1, 6))):
            getattr(self, self.draw(st.sampled_from(self.STEPS)))()
        outs = [self.pool[-1]] + self.draw(st.lists(st.sampled_from(self.pool), max_size=2))
        terms = [f"({v} * {self.const(self.rng.uniform(-1, 1, self.value(v).shape))}).sum()" for v in outs]
        self.program.lines.append("return " + " + ".join(terms))
        return self.program


def _broadcastable(shape, onto) -> bool:
    """`shape` broadcasts onto `onto` without growing it."""
    return len(shape) <= len(onto) and all(a in (1, b) for a, b in zip(shape[::-1], onto[::-1]))


def _factor(size, rank, draw) -> list:
    dims = []
    for _ in range(rank):
        d = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
        dims.append(d)
        size //= d
    return dims + [size]


@st.composite
def programs(draw) -> Program:
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return ProgramDrawer(draw, rng).build()


def finite_differences(f, params, consts, h=1e-6) -> dict:
    """Central differences of f with respect to every element of every parameter (float64)."""
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            shifted = {**params, name: value.copy()}
            shifted[name][i] = value[i] + h
            up = f(shifted, consts)
            shifted[name][i] = value[i] - h
            g[i] = (up - f(shifted, consts)) / (2 * h)
        grads[name] = g
    return grads


def assert_grads_close(got, want, rtol, atol, what, program):
    assert set(got) == set(want), (what, program)
    scale = max([1.0] + [float(np.max(np.abs(w), initial=0.0)) for w in want.values()])
    for name in want:
        g = np.asarray(got[name])
        assert g.shape == want[name].shape, (what, name, program)
        np.testing.assert_allclose(g, want[name], rtol=rtol, atol=atol * scale,
                                   err_msg=f"{what}, gradient of p['{name}'] in{program!r}")


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_gradients_of_random_programs(program):
    f = program.function()
    params, consts = program.params, program.consts
    want_value = f(params, consts)
    np.testing.assert_allclose(tj.jit(f)(params, consts), want_value, rtol=1e-10, atol=1e-12,
                               err_msg=f"value in{program!r}")
    eager = tj.grad(f)(params, consts)
    compiled = tj.jit(tj.grad(f))(params, consts)
    for name, g in compiled.items():
        assert g.dtype == np.float64, (name, g.dtype, program)
    assert_grads_close(compiled, eager, 1e-9, 1e-12, "jit(grad) vs eager grad", program)
    assert_grads_close(eager, finite_differences(f, params, consts), 1e-5, 1e-7, "grad vs finite differences", program)
    assert_float32_gradient(f, program, compiled)


def assert_float32_gradient(f, program, grads64):
    """float32 in, float32 gradient out, close to the float64 one (loosely: rounding grows)."""
    p32 = {k: v.astype(np.float32) for k, v in program.params.items()}
    c32 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in program.consts.items()}
    grads32 = tj.jit(tj.grad(f))(p32, c32)
    for name, g in grads32.items():
        assert g.dtype == np.float32, (name, g.dtype, program)
    assert_grads_close(grads32, grads64, 2e-3, 2e-4, "float32 jit(grad) vs float64", program)
