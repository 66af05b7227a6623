"""The graph passes: simplify, CSE, DCE. Each result passes ir.verify and gives the interpreter's
results of the graph before the pass (bit for bit)."""
from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
from tracejit.ir.builder import GraphBuilder
from tracejit.ir.interpret import evaluate
from tracejit.ir.verify import verify
from tracejit.ops.registry import Aval, Kind, Primitive
from tracejit.passes.cse import eliminate_common_subexpressions
from tracejit.passes.dce import eliminate_dead_code
from tracejit.passes.pipeline import PASSES, optimize
from tracejit.passes.simplify import simplify
from tracejit.trace import trace


def w3_xent(logits, labels):
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def w3_args():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 5, 6)


def prims(graph) -> list[str]:
    return [node.prim.name for node in graph.nodes]


def check_same_results(before, after, args):
    verify(after)
    for want, got in zip(evaluate(before, args), evaluate(after, args)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        if want.dtype.kind == "f":  # bit for bit: the signs of zeros too
            number = ~np.isnan(want)
            np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


def test_pipeline_order():
    assert [p.__name__ for p in PASSES] == ["simplify", "rewrite_indexing", "simplify",
                                            "eliminate_common_subexpressions", "eliminate_dead_code"]


# ---- CSE --------------------------------------------------------------------------------------
def test_cse_merges_the_repeated_logits_minus_m():
    args = w3_args()
    graph = trace(w3_xent, args).graph
    def subtract_of_logits(g):
        return [n for n in g.nodes if n.prim.name == "subtract" and n.inputs[0] is g.inputs[0]]

    assert len(subtract_of_logits(graph)) == 2
    after = eliminate_common_subexpressions(graph)
    assert len(subtract_of_logits(after)) == 1
    check_same_results(graph, after, list(args))


def test_backward_reuses_forward_values():
    """After the passes, exp and the keepdims reshape of the max exist once in the joint graph."""
    args = w3_args()
    joint = tj.make_ir(tj.value_and_grad(w3_xent))(*args).graph
    names = prims(joint)
    assert names.count("exp") == 1 and names.count("max") == 1 and names.count("log") == 1
    max_out = next(n.out for n in joint.nodes if n.prim.name == "max")
    assert sum(1 for n in joint.nodes if n.prim.name == "reshape" and n.inputs[0] is max_out) == 1
    unoptimized = tj.make_ir(tj.value_and_grad(w3_xent), optimize=False)(*args).graph
    check_same_results(unoptimized, joint, list(args))


def test_cse_commutative_operands_and_constants():
    b = GraphBuilder()
    x, y = b.new_input((3,), np.float32, "x"), b.new_input((3,), np.float32, "y")
    s1, s2 = b.emit("add", x, y), b.emit("add", y, x)
    d1, d2 = b.emit("subtract", x, y), b.emit("subtract", y, x)  # not commutative: both stay
    c1, c2 = b.constant(np.float32(2.0)), b.constant(np.float32(2.0))
    z1, z2 = b.constant(np.float32(0.0)), b.constant(np.float32(-0.0))  # different bits: both stay
    c64 = b.constant(np.float64(2.0))
    outs = [s1, s2, d1, d2, b.emit("multiply", x, c1), b.emit("multiply", x, c2), b.emit("add", x, z1),
            b.emit("add", x, z2), b.emit("astype", c64, dtype=np.dtype(np.float32))]
    graph = b.build(outs)
    after = eliminate_common_subexpressions(graph)
    assert after.outputs[0] is after.outputs[1] and after.outputs[4] is after.outputs[5]
    assert after.outputs[2] is not after.outputs[3] and after.outputs[6] is not after.outputs[7]
    assert prims(after).count("constant") == 4  # 2.0 f32, 0.0, -0.0, 2.0 f64
    check_same_results(graph, after, [np.array([1, -2, 3], np.float32), np.array([0.5, 4, -1], np.float32)])


def test_cse_keys_large_constants_by_content():
    b = GraphBuilder()
    x = b.new_input((1000,), np.float64, "x")
    w = np.linspace(0, 1, 1000)
    a = b.emit("multiply", x, b.constant(w))
    c = b.emit("multiply", x, b.constant(w.copy()))
    w2 = w.copy()
    w2[999] += 1e-12
    d = b.emit("multiply", x, b.constant(w2))
    after = eliminate_common_subexpressions(b.build([a, c, d]))
    assert after.outputs[0] is after.outputs[1] and after.outputs[2] is not after.outputs[0]


# ---- DCE --------------------------------------------------------------------------------------
def test_dce_removes_dead_nodes_and_unneeded_forward_values():
    b = GraphBuilder()
    x = b.new_input((4,), np.float64, "x")
    b.emit("exp", x)  # dead
    live = b.emit("tanh", x)
    graph = b.build([live])
    after = eliminate_dead_code(graph)
    assert prims(after) == ["tanh"]
    check_same_results(graph, after, [np.linspace(-1, 1, 4)])
    # grad of sum(2x): the forward sum is not needed by the gradient
    joint = tj.make_ir(tj.grad(lambda x: np.sum(x * 2.0)))(np.ones(3)).graph
    assert "sum" not in prims(joint)


# ---- simplify ---------------------------------------------------------------------------------
def _unary_graph(build, shape=(4,), dtype=np.float32):
    b = GraphBuilder()
    x = b.new_input(shape, dtype, "x")
    return b.build([build(b, x)])


def c(b, value, dtype=np.float32):
    return b.constant(np.asarray(value, dtype))


IDENTITIES = {
    "x*1": (lambda b, x: b.emit("multiply", x, c(b, 1.0)), []),
    "1*x": (lambda b, x: b.emit("multiply", c(b, 1.0), x), []),
    "x+(-0)": (lambda b, x: b.emit("add", x, c(b, -0.0)), []),
    "x-0": (lambda b, x: b.emit("subtract", x, c(b, 0.0)), []),
    "int x+0": (lambda b, x: b.emit("add", b.emit("astype", x, dtype=np.dtype(np.int32)), c(b, 0, np.int32)),
                ["astype"]),
    "max over an axis of 1": (lambda b, x: b.emit("max", b.emit("reshape", x, shape=(1, 4)), axes=(0,)), []),
    "float sum over an axis of 1": (lambda b, x: b.emit("sum", b.emit("reshape", x, shape=(4, 1)), axes=(1,)),
                                    ["reshape", "reshape", "constant", "add"]),
    "x/1": (lambda b, x: b.emit("divide", x, c(b, 1.0)), []),
    "x**1": (lambda b, x: b.emit("power", x, c(b, 1.0)), []),
    "x**2": (lambda b, x: b.emit("power", x, c(b, 2.0)), ["square"]),
    "x**0.5": (lambda b, x: b.emit("power", x, c(b, 0.5)), ["sqrt"]),
    "x**-1": (lambda b, x: b.emit("power", x, c(b, -1.0)), ["reciprocal"]),
    "--x": (lambda b, x: b.emit("negative", b.emit("negative", x)), []),
    "reshape chain": (lambda b, x: b.emit("reshape", b.emit("reshape", x, shape=(2, 2)), shape=(1, 4)), ["reshape"]),
    "reshape same": (lambda b, x: b.emit("reshape", x, shape=(4,)), []),
    "astype same": (lambda b, x: b.emit("astype", x, dtype=np.dtype(np.float32)), []),
    "broadcast same": (lambda b, x: b.emit("broadcast_to", x, shape=(4,)), []),
    "where True": (lambda b, x: b.emit("where", c(b, True, bool), x, c(b, 7.0)), []),
    "fold": (lambda b, x: b.emit("add", x, b.emit("multiply", c(b, 2.0), c(b, 3.0))), ["constant", "add"]),
    "fold to 1": (lambda b, x: b.emit("multiply", x, b.emit("subtract", c(b, 2.0), c(b, 1.0))), []),
    "read unbroadcast": (lambda b, x: b.emit("multiply", b.emit("broadcast_to", c(b, 3.0), shape=(4,)), x),
                         ["constant", "multiply"]),
    "arange -> iota": (lambda b, x: b.emit("gather", x, b.constant(np.arange(4))), ["iota", "gather"]),
}


@pytest.mark.parametrize("label", sorted(IDENTITIES))
def test_simplify_identities(label):
    build, expected = IDENTITIES[label]
    graph = _unary_graph(build)
    after = eliminate_dead_code(simplify(graph))
    assert prims(after) == expected, str(after)
    x = np.array([1.5, -0.0, 3.0, np.nan], np.float32) if "fold" not in label else np.array([1, 2, 3, 4], np.float32)
    check_same_results(graph, after, [x])


@pytest.mark.parametrize("seed, op", [(-2.0, "log"), (0.0, "reciprocal"), (3.0, "exp"), (-0.0, "negative")])
def test_elementwise_of_a_broadcast_seed_is_folded_once(seed, op):
    """op(broadcast(c)) on a big shape: one folded scalar broadcast, bit for bit numpy's (nan, inf, -0)."""
    def build(b, x):
        splat = b.emit("reshape", b.emit("broadcast_to", c(b, seed), shape=(300,)), shape=(300, 1))
        return b.emit("add", x, b.emit(op, splat))

    graph = _unary_graph(build, shape=(300, 1))
    after = eliminate_dead_code(simplify(graph))
    assert op not in prims(after) and "reshape" not in prims(after), str(after)
    check_same_results(graph, after, [np.linspace(-1, 1, 300, dtype=np.float32).reshape(300, 1)])


def test_transpose_chains_compose():
    def build(b, x):
        return b.emit("transpose", b.emit("transpose", x, perm=(1, 2, 0)), perm=(2, 0, 1))

    graph = _unary_graph(build, shape=(2, 3, 4))
    after = eliminate_dead_code(simplify(graph))
    assert prims(after) == []
    graph = _unary_graph(lambda b, x: b.emit("transpose", b.emit("transpose", x, perm=(1, 0, 2)), perm=(0, 2, 1)),
                         shape=(2, 3, 4))
    after = eliminate_dead_code(simplify(graph))
    assert prims(after) == ["transpose"]
    check_same_results(graph, after, [np.arange(24, dtype=np.float32).reshape(2, 3, 4)])


@pytest.mark.parametrize("label, build", [
    ("x*0 keeps NaN semantics", lambda b, x: b.emit("multiply", x, c(b, 0.0))),
    ("x+0.0 turns -0.0 into 0.0", lambda b, x: b.emit("add", x, c(b, 0.0))),
    ("x-(-0.0) turns -0.0 into 0.0", lambda b, x: b.emit("subtract", x, c(b, -0.0))),
    ("x+0 that broadcasts", lambda b, x: b.emit("add", x, b.constant(np.zeros((2, 4), np.float32)))),
    ("x**3", lambda b, x: b.emit("power", x, c(b, 3.0))),
    ("big constant is not folded",
     lambda b, x: b.emit("add", x, b.emit("exp", b.constant(np.ones((100, 4), np.float32))))),
])
def test_simplify_leaves_non_identities_alone(label, build):
    graph = _unary_graph(build)
    after = eliminate_dead_code(simplify(graph))
    assert prims(after) == prims(graph)


def test_power_two_becomes_square_in_a_traced_gradient():
    joint = tj.make_ir(tj.grad(lambda x: np.sum(x ** 2)))(np.ones(3, np.float32)).graph
    assert "power" not in prims(joint) and "where" not in prims(joint)
    np.testing.assert_array_equal(tj.grad(lambda x: np.sum(x ** 2))(np.arange(3, dtype=np.float32)), [0, 2, 4])


# ---- regions (the nodes of control flow hold sub-graphs) ---------------------------------------
def _call_rule(*avals, body):
    return [Aval(v.shape, v.dtype) for v in body.outputs]


CALL = Primitive("call_region", Kind.CONTROL, _call_rule,
                 lambda *xs, body, _env: evaluate(body, xs, _env), multiple_results=True)


def test_passes_work_inside_regions():
    rb = GraphBuilder("body")
    a = rb.new_input((3,), np.float32, "a")
    e1, e2 = rb.emit("exp", a), rb.emit("exp", a)  # duplicate
    rb.emit("tanh", a)  # dead
    one = rb.constant(np.float32(1.0))
    body = rb.build([rb.emit("add", rb.emit("multiply", e1, one), e2)])

    b = GraphBuilder()
    x = b.new_input((3,), np.float32, "x")
    (out,) = b.emit(CALL, x, body=body)
    graph = b.build([out])
    verify(graph)
    after = optimize(graph)
    (node,) = after.nodes
    assert prims(node.params["body"]) == ["exp", "add"]
    check_same_results(graph, after, [np.array([0.5, -1.0, 2.0], np.float32)])
