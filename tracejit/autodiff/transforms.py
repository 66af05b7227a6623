"""The argument and output bookkeeping of grad / value_and_grad / vjp (the public wrappers are in
api.py): which flat leaves are differentiated, the checks with their error messages, and putting
gradients back into the pytree of each argument.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from .. import dtypes, pytree
from ..trace.tracing import ArgSpec, TracedFunction, trace


def normalize_argnums(argnums, what: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(n, int) for n in nums):
        raise TypeError(f"{what}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    return nums


@dataclass
class DiffArgs:
    """The flattened (args, kwargs) of one call, and where each positional argument's leaves are."""

    fun: object
    args: tuple
    kwargs: dict
    leaves: list
    treedef: pytree.TreeDef
    starts: list[int]  # first flat leaf of positional argument n (kwargs' leaves come last)
    arg_treedefs: list[pytree.TreeDef]

    @staticmethod
    def of(fun, args, kwargs) -> "DiffArgs":
        leaves, treedef = pytree.flatten((tuple(args), dict(kwargs)))
        starts, arg_treedefs, position = [], [], 0
        for arg in args:
            arg_leaves, arg_treedef = pytree.flatten(arg)
            starts.append(position)
            arg_treedefs.append(arg_treedef)
            position += len(arg_leaves)
        return DiffArgs(fun, tuple(args), dict(kwargs), leaves, treedef, starts, arg_treedefs)

    def leaf_indices(self, argnum: int) -> range:
        start = self.starts[argnum]
        return range(start, start + self.arg_treedefs[argnum].num_leaves)

    def wrt(self, argnums) -> list[int]:
        return [i for n in argnums for i in self.leaf_indices(n)]

    def check_argnums(self, argnums, what: str) -> None:
        for n in argnums:
            if not -len(self.args) <= n < len(self.args):
                raise ValueError(
                    f"{what}: argnums={n} but the function was called with {len(self.args)} positional "
                    "argument(s); differentiated arguments must be passed positionally"
                )

    def check_float(self, argnums, what: str) -> None:
        """Integer and bool arguments cannot be differentiated: say which one and what to do."""
        for n in argnums:
            paths = pytree.leaf_paths(self.arg_treedefs[n])
            for path, i in zip(paths, self.leaf_indices(n)):
                dtype = ArgSpec.of(self.leaves[i]).dtype
                if not dtypes.is_float(dtype):
                    raise TypeError(
                        f"{what}: argument {self.arg_name(n)}{path} (argnums={n}) has dtype {dtype}; only float "
                        "arguments can be differentiated. Integer and bool arguments (labels, masks, counts) "
                        "carry no gradient: leave them out of argnums, or cast them to float first."
                    )

    def arg_name(self, n: int) -> str:
        try:
            params = list(inspect.signature(self.fun).parameters)
            if n < len(params):
                return f"{params[n]!r}"
        except (TypeError, ValueError):
            pass
        return f"#{n}"

    def grads_tree(self, grads: list, argnums, single: bool):
        """Gradients (one per differentiated leaf, in order) in the pytrees of their arguments."""
        trees, it = [], iter(grads)
        for n in argnums:
            trees.append(pytree.unflatten(self.arg_treedefs[n], [next(it) for _ in self.leaf_indices(n)]))
        return trees[0] if single else tuple(trees)


def trace_call(fun, diff_args: DiffArgs, name: str, arg_names) -> TracedFunction:
    return trace(lambda a, k: fun(*a, **k), (diff_args.args, diff_args.kwargs), name=name, arg_names=arg_names)


def split_outputs(traced: TracedFunction, has_aux: bool, what: str):
    """(treedef of the differentiated output, treedef of aux or None)."""
    tree = traced.out_treedef
    if not has_aux:
        return tree, None
    if tree.kind not in ("tuple", "list") or len(tree.children) != 2:
        raise TypeError(f"{what} with has_aux=True needs the function to return a pair (output, aux), got {tree!r}")
    return tree.children[0], tree.children[1]


def check_scalar_output(traced: TracedFunction, out_tree: pytree.TreeDef, has_aux: bool, what: str) -> None:
    if out_tree.kind != "leaf":
        hint = "" if has_aux else "; if the extra outputs are auxiliary data, pass has_aux=True"
        raise TypeError(
            f"{what} needs a function with one scalar output, but it returned {out_tree!r}{hint}. "
            "For several or non-scalar outputs use tj.vjp."
        )
    out = traced.graph.outputs[0]
    if out.shape != () or not dtypes.is_float(out.dtype):
        raise TypeError(
            f"{what} needs a scalar float output, but the function returned {out.type_str}. "
            "Reduce it (e.g. .sum() or .mean()) or use tj.vjp for non-scalar outputs."
        )
