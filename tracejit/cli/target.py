"""`FILE.py:FUNC` -> the function and its example arguments, with user errors as UsageError."""
from __future__ import annotations

import difflib
import importlib.util
import inspect
import sys
from pathlib import Path

from . import specs


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


def split_target(target: str) -> tuple[Path, str | None]:
    """'train.py:loss' -> (Path('train.py'), 'loss'); 'train.py' -> (Path('train.py'), None)."""
    path, sep, func = target.rpartition(":")
    if sep and path.endswith(".py") and func:
        return Path(path), func
    return Path(target), None


def check_script(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if not path.is_file():
        raise UsageError(f"not a file: {path}")
    return path.resolve()


def load_module(path: Path):
    """Import a user's file as a module (its `if __name__ == "__main__":` block does not run)."""
    path = check_script(path)
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else "_tracejit_user_module"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours, as `python FILE` allows
    spec.loader.exec_module(module)
    return module


def find_function(module, dotted: str, path: Path):
    """module.<dotted>, or UsageError listing the functions that exist (closest first)."""
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is not None and callable(obj):
        return obj
    names = user_functions(module)
    close = difflib.get_close_matches(dotted, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = f" (functions in it: {', '.join(names)})" if names else " (it defines no functions)"
    raise UsageError(f"{path} has no function {dotted!r}{hint}{listing}")


def user_functions(module) -> list[str]:
    """Functions (and jitted functions) defined in the module itself, not imported ones."""
    from ..api import Jitted

    names = []
    for name, obj in vars(module).items():
        target = obj.fun if isinstance(obj, Jitted) else obj
        if inspect.isfunction(target) and target.__module__ == module.__name__ and not name.startswith("_"):
            names.append(name)
    return names


# ---- example arguments ------------------------------------------------------------------------
def example_args(fun, spec_texts: list[str], args_from, module, path: Path) -> tuple[tuple, dict]:
    """Positional and keyword example arguments from --args-from and the shape specs."""
    args, kwargs = _from_function(args_from, module, path) if args_from else ((), {})
    positional = list(args)
    for text in spec_texts:
        try:
            name, value = specs.parse_arg(text)
        except specs.SpecError as e:
            raise UsageError(str(e)) from None
        if name is None:
            positional.append(value)
        else:
            kwargs[name] = value
    return bind(fun, tuple(positional), kwargs)


def _from_function(name: str, module, path: Path) -> tuple[tuple, dict]:
    maker = find_function(module, name, path)
    made = maker()
    if isinstance(made, dict):
        return (), dict(made)
    if isinstance(made, (tuple, list)):
        return tuple(made), {}
    return (made,), {}


def bind(fun, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Put named arguments in their positions, so that --grad can name them and jit sees them."""
    try:
        sig = inspect.signature(getattr(fun, "fun", fun))
    except (TypeError, ValueError):
        return args, kwargs
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        params = ", ".join(sig.parameters)
        raise UsageError(f"the example arguments do not fit {_name(fun)}({params}): {e}; "
                         f"give each parameter as NAME=SPEC, e.g. {specs.EXAMPLE}") from None
    bound.apply_defaults()
    return tuple(bound.args), dict(bound.kwargs)


def grad_argnums(fun, wanted: str, nargs: int) -> tuple[int, ...]:
    """'--grad x,params' (names or positions) -> argnums; '' means the first argument."""
    if not wanted:
        return (0,)
    try:
        params = list(inspect.signature(getattr(fun, "fun", fun)).parameters)[:nargs]
    except (TypeError, ValueError):
        params = []
    argnums = []
    for item in filter(None, (w.strip() for w in wanted.split(","))):
        if item.isdigit() and int(item) < nargs:
            argnums.append(int(item))
        elif item in params:
            argnums.append(params.index(item))
        else:
            close = difflib.get_close_matches(item, params, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--grad: {_name(fun)} has no positional argument {item!r}{hint} "
                             f"(arguments: {', '.join(params) or 'none'})")
    return tuple(argnums)


def _name(fun) -> str:
    return getattr(fun, "__name__", repr(fun))
