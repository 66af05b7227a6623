"""Flatten and unflatten pytrees: nested dict / list / tuple / namedtuple / None with array or scalar leaves."""
from __future__ import annotations

from typing import Any

import numpy as np


class TreeDef:
    """Hashable structure of a pytree. kind is 'leaf', 'none', 'tuple', 'list', 'dict' or
    'namedtuple'; `keys` are a dict's keys, sorted, as in JAX, or a namedtuple's fields, and
    `node_type` is the namedtuple's class (rebuilt as that class, as JAX does). Immutable by
    convention; the hash is computed once, because every jitted call looks its signature (which
    holds a TreeDef) up in a dict."""

    __slots__ = ("kind", "children", "keys", "node_type", "_hash")

    def __init__(self, kind: str, children: tuple = (), keys: tuple = (), node_type: type | None = None):
        self.kind = kind
        self.children = children
        self.keys = keys
        self.node_type = node_type
        self._hash = hash((kind, children, keys, node_type))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        return (isinstance(other, TreeDef) and self._hash == other._hash and self.kind == other.kind
                and self.node_type is other.node_type and self.keys == other.keys and self.children == other.children)

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(child.num_leaves for child in self.children)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.keys, self.children)) + "}"
        if self.kind == "namedtuple":
            return f"{self.node_type.__name__}(" + ", ".join(f"{k}={c!r}" for k, c in zip(self.keys, self.children)) + ")"
        inner = ", ".join(map(repr, self.children))
        return f"[{inner}]" if self.kind == "list" else f"({inner}{',' if len(self.children) == 1 else ''})"


LEAF = TreeDef("leaf")
NONE = TreeDef("none")


def flatten(tree: Any) -> tuple[list, TreeDef]:
    leaves: list = []
    treedef = _flatten_into(tree, leaves)
    return leaves, treedef


def _flatten_into(tree, leaves: list) -> TreeDef:
    if type(tree) is np.ndarray:  # the common leaf first
        leaves.append(tree)
        return LEAF
    if tree is None:
        return NONE
    if isinstance(tree, dict):
        keys = tuple(sorted(tree))
        return TreeDef("dict", tuple(_flatten_into(tree[k], leaves) for k in keys), keys)
    if isinstance(tree, (tuple, list)):
        children = tuple(_flatten_into(x, leaves) for x in tree)
        if _is_namedtuple(tree):
            return TreeDef("namedtuple", children, tuple(tree._fields), type(tree))
        return TreeDef("tuple" if isinstance(tree, tuple) else "list", children)
    leaves.append(tree)
    return LEAF


def flatten_as(tree: Any, treedef: TreeDef) -> list | None:
    """The leaves of `tree` if it has exactly the structure `treedef`, else None. Cheaper than
    flatten (no TreeDef is built): a jitted call first tries the structure of its previous call."""
    leaves: list = []
    return leaves if _match_into(tree, treedef, leaves) else None


def _match_into(tree, treedef: TreeDef, leaves: list) -> bool:
    kind = treedef.kind
    if kind == "leaf":
        if type(tree) is np.ndarray:
            leaves.append(tree)
            return True
        if tree is None or isinstance(tree, (dict, list, tuple)):
            return False
        leaves.append(tree)
        return True
    if kind == "none":
        return tree is None
    if kind == "dict":
        if not isinstance(tree, dict) or len(tree) != len(treedef.keys):
            return False
        for key, child in zip(treedef.keys, treedef.children):
            if key not in tree or not _match_into(tree[key], child, leaves):
                return False
        return True
    if kind == "namedtuple":
        if type(tree) is not treedef.node_type:
            return False
    elif not isinstance(tree, tuple if kind == "tuple" else list) or _is_namedtuple(tree):
        return False
    if len(tree) != len(treedef.children):
        return False
    for item, child in zip(tree, treedef.children):
        if not _match_into(item, child, leaves):
            return False
    return True


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def unflatten(treedef: TreeDef, leaves) -> Any:
    it = iter(leaves)
    tree = _build(treedef, it)
    rest = list(it)
    if rest:
        raise ValueError(f"unflatten: {len(rest)} leaves left over for structure {treedef!r}")
    return tree


def _build(treedef: TreeDef, it):
    if treedef.kind == "leaf":
        return next(it)
    if treedef.kind == "none":
        return None
    children = [_build(child, it) for child in treedef.children]
    if treedef.kind == "dict":
        return dict(zip(treedef.keys, children))
    if treedef.kind == "namedtuple":
        return treedef.node_type(*children)
    return tuple(children) if treedef.kind == "tuple" else children


def leaf_paths(treedef: TreeDef, prefix: str = "") -> list[str]:
    """Human-readable path of each leaf, e.g. "params['W1']" or "state.velocity[0]" — used in error
    messages."""
    if treedef.kind == "leaf":
        return [prefix]
    if treedef.kind == "none":
        return []
    paths: list[str] = []
    if treedef.kind == "dict":
        steps = [f"[{k!r}]" for k in treedef.keys]
    elif treedef.kind == "namedtuple":
        steps = [f".{field}" for field in treedef.keys]
    else:
        steps = [f"[{i}]" for i in range(len(treedef.children))]
    for step, child in zip(steps, treedef.children):
        paths.extend(leaf_paths(child, prefix + step))
    return paths


def leaf_keys(treedef: TreeDef) -> list[tuple[str, ...]]:
    """The keys on the way to each leaf, as text: ("0", "W1") for the path "[0]['W1']"; IR names
    of inputs are made of them."""
    if treedef.kind == "leaf":
        return [()]
    if treedef.kind == "none":
        return []
    keys = treedef.keys if treedef.kind in ("dict", "namedtuple") else range(len(treedef.children))
    return [(str(key),) + rest for key, child in zip(keys, treedef.children) for rest in leaf_keys(child)]


def tree_map(fn, tree, *rest):
    leaves, treedef = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(treedef, [fn(*xs) for xs in zip(leaves, *others)])
