"""The IR itself: the printed form, the verifier's checks, and the interpreter."""
import numpy as np
import pytest

from tracejit.ir.builder import GraphBuilder
from tracejit.ir.graph import Graph, Node, Value
from tracejit.ir.interpret import evaluate
from tracejit.ir.verify import IRVerificationError, verify
from tracejit.ops.registry import PRIMITIVES
from tracejit.trace import trace


def small_graph():
    b = GraphBuilder("f")
    x = b.new_input((2, 3), np.float32, name="x")
    b.loc = "model.py:7"
    h = b.emit("tanh", x, name="h")
    s = b.emit("sum", h, axes=(1,), name="s")
    return b.build([s])


def test_printed_form_is_stable():
    assert str(small_graph()) == (
        "def f(%x:f32[2,3]):\n"
        "  %h:f32[2,3] = tanh %x                                   # model.py:7\n"
        "  %s:f32[2] = sum[axes=(1,)] %h                           # model.py:7\n"
        "  return %s"
    )


def test_verify_accepts_traced_graphs():
    verify(trace(lambda x: np.exp(x).sum(axis=0) @ np.ones((3, 2)), (np.ones((4, 3)),)).graph)


def test_verify_rejects_use_before_definition():
    good = small_graph()
    bad = Graph(good.inputs, tuple(reversed(good.nodes)), good.outputs)
    with pytest.raises(IRVerificationError, match="before it is defined"):
        verify(bad)


def test_verify_rejects_wrong_types():
    good = small_graph()
    h_node = good.nodes[0]
    wrong = Value("h", (2, 3), np.dtype(np.float64))
    bad_node = Node(h_node.prim, h_node.inputs, h_node.params, (wrong,), h_node.loc)
    bad = Graph(good.inputs, (bad_node,), (wrong,))
    with pytest.raises(IRVerificationError, match="rule gives"):
        verify(bad)


def test_verify_rejects_duplicate_names():
    x = Value("x", (2,), np.dtype(np.float32))
    y = Value("x", (2,), np.dtype(np.float32))
    node = Node(PRIMITIVES["exp"], (x,), {}, (y,))
    with pytest.raises(IRVerificationError, match="two values"):
        verify(Graph((x,), (node,), (y,)))


def test_interpreter_runs_references():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    (out,) = evaluate(small_graph(), [x])
    np.testing.assert_array_equal(out, np.tanh(x).sum(axis=1, dtype=np.float32))
    assert out.dtype == np.float32


def test_interpreter_checks_reference_types():
    x = Value("x", (2,), np.dtype(np.float32))
    y = Value("y", (2,), np.dtype(np.float32))
    node = Node(PRIMITIVES["astype"], (x,), {"dtype": np.dtype(np.float64)}, (y,))  # lies about its type
    with pytest.raises(TypeError, match="reference produced"):
        evaluate(Graph((x,), (node,), (y,)), [np.ones(2, np.float32)])
