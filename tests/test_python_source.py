"""Every op has a numpy spelling for to_python (ir/python.py), kept on its Primitive record."""
import dataclasses

import numpy as np
import pytest

import tracejit as tj
from tracejit.errors import TracejitError
from tracejit.ir import python as py_source
from tracejit.ops.registry import PRIMITIVES, Kind, Primitive


def _without_spelling(prims) -> list[str]:
    """Names of the ops to_python cannot write: no py_expr and not a control-flow region op."""
    return sorted(p.name for p in prims
                  if p.py_expr is None and not (p.kind is Kind.CONTROL and p.name in py_source.CONTROL))


def test_every_registered_primitive_has_a_numpy_spelling():
    assert _without_spelling(PRIMITIVES.values()) == []
    assert set(py_source.CONTROL) == {p.name for p in PRIMITIVES.values() if p.kind is Kind.CONTROL}


def test_a_new_op_without_a_spelling_is_caught():
    bare = Primitive("new_op", Kind.ELEMENTWISE, shape_rule=lambda x: x, reference=np.negative)
    region_less = Primitive("new_loop", Kind.CONTROL, shape_rule=lambda x: x, reference=np.negative)
    assert _without_spelling([bare, region_less, PRIMITIVES["exp"], PRIMITIVES["scan"]]) == ["new_loop", "new_op"]


def test_to_python_names_the_op_it_cannot_spell():
    ir = tj.make_ir(lambda x: np.exp(x) * 2.0)(np.ones(3))
    unspelled = [dataclasses.replace(n, prim=dataclasses.replace(n.prim, py_expr=None)) if n.prim.name == "exp" else n
                 for n in ir.graph.nodes]
    graph = dataclasses.replace(ir.graph, nodes=tuple(unspelled))
    with pytest.raises(TracejitError, match="no numpy spelling for primitive `exp`"):
        py_source.to_python(graph)


def test_large_constants_and_the_scatter_helper_are_module_level():
    def f(x):
        return np.sum(x[np.array([0, 2, 2])] @ np.linspace(0, 1, 20).reshape(4, 5))

    source = tj.make_ir(tj.grad(f), optimize=False)(np.ones((3, 4))).python()
    assert source.startswith("import base64\nimport numpy as np\n\n\ndef scatter_add(")
    assert "\nCONSTANT_0 = np.frombuffer(base64.b64decode(" in source and "CONSTANT_0.copy()" in source
