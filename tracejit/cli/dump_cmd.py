"""`tracejit dump FILE.py:FUNC SPECS...` (one function, example inputs) and `tracejit dump SCRIPT.py`
(run a script unchanged, show every function it compiled)."""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from .. import config, dump
from . import target
from .output import header, highlight, print_traceback, progress
from .target import UsageError

LANGUAGE = {"traced_ir": "ir", "optimized_ir": "ir", "c_source": "c", "python": "py"}
TITLES = {"traced_ir": "traced IR", "optimized_ir": "optimized IR and kernels", "c_source": "C",
          "python": "numpy source"}
SECTIONS = {"all": ("traced_ir", "optimized_ir", "c_source"), "ir": ("traced_ir", "optimized_ir"),
            "c": ("c_source",), "py": ("python",)}


def run(opts, color: bool) -> int:
    path, func = target.split_target(opts.target)
    if func is None:
        if opts.specs or opts.arg or opts.args_from or opts.grad is not None:
            raise UsageError(f"example inputs and --grad need a function: {path}:FUNC (e.g. "
                             f"tracejit dump {path}:loss x=f32[128,784])")
        return run_script(path, opts, color)
    if opts.script_args:
        raise UsageError(f"arguments after -- are for a script; {opts.target} names a function")
    return run_function(path, func, opts, color)


# ---- one function with example inputs ------------------------------------------------------------
def run_function(path: Path, func: str, opts, color: bool) -> int:
    path = target.check_script(path)
    try:
        module = target.load_module(path)
    except Exception:
        return _user_code_failed(f"importing {path}")
    fun = target.find_function(module, func, path)
    args, kwargs = target.example_args(fun, opts.specs + opts.arg, opts.args_from, module, path)
    label, to_trace = _maybe_grad(fun, func, opts.grad, len(args))
    if opts.format == "py":
        return _print_python(to_trace, args, kwargs, color)
    with progress(f"tracing and compiling {label}"):
        rec = _record(fun, to_trace, label, args, kwargs)
    if opts.out:
        return _report_written([rec], dump.write(opts.out, rec).parent)
    if config.dump_dir() is not None:  # TRACEJIT_DUMP=DIR writes what --out would, in every mode
        dump.write(config.dump_dir(), rec)
    print(render(rec, opts.format, color, with_title=False))
    return 0


def _maybe_grad(fun, name: str, grad: str | None, nargs: int):
    """(label, function to trace): `fun` itself, or value_and_grad(fun, argnums) for --grad."""
    if grad is None:
        return name, fun
    from ..api import value_and_grad

    argnums = target.grad_argnums(fun, grad, nargs)
    shown = argnums[0] if len(argnums) == 1 else argnums
    return f"value_and_grad({name}, argnums={shown})", value_and_grad(fun, argnums=shown)


def _record(fun, to_trace, label: str, args, kwargs) -> dump.Record:
    from ..api import Jitted, _split_static, jit

    jitted = to_trace if isinstance(to_trace, Jitted) else jit(to_trace)
    lowered = jitted.lower(*args, **kwargs)  # errors in the user's code reach main(), which shows them
    static = _split_static(args, kwargs, jitted.static_argnums, jitted.static_argnames)[2]
    return dump.describe(lowered, name=label, fun=fun, static=static)


def _print_python(to_trace, args, kwargs, color: bool) -> int:
    """The readable numpy source of the (optimized) graph, as tj.make_ir(f)(*args).python() gives it."""
    from ..api import make_ir

    print(highlight(make_ir(to_trace)(*args, **kwargs).python().rstrip("\n"), "py", color))
    return 0


# ---- a whole script ---------------------------------------------------------------------------
def run_script(path: Path, opts, color: bool) -> int:
    path = target.check_script(path)
    if opts.out:  # through the environment, so processes the script starts dump too
        os.environ["TRACEJIT_DUMP"] = str(Path(opts.out).resolve())
    with dump.collecting() as records:
        code = execute(path, opts.script_args)
    sys.stdout.flush()
    if not records:
        print(f"tracejit dump: no function was compiled while {path.name} ran (only functions "
              "called through tj.jit are compiled)", file=sys.stderr)
    elif opts.out:
        _report_written(records, Path(opts.out))
    else:
        print("\n\n".join(render(rec, opts.format, color, with_title=True) for rec in records))
    return code


def execute(path: Path, script_args: list[str]) -> int:
    """Run a script as `python SCRIPT ARGS...` would; its exit status (1 if it raised)."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *script_args]
    sys.path.insert(0, str(path.parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _print_exit(e.code))
    except Exception:
        return _user_code_failed(f"running {path.name}")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _print_exit(message) -> int:
    print(message, file=sys.stderr)
    return 1


def _user_code_failed(what: str) -> int:
    print_traceback(sys.exc_info()[1], only_user_frames=False)
    print(f"tracejit dump: {what} raised the error above", file=sys.stderr)
    return 1


# ---- rendering --------------------------------------------------------------------------------
def render(rec: dump.Record, fmt: str, color: bool, with_title: bool) -> str:
    """The sections of one record that `fmt` selects, with headers where there is more than one."""
    sections = SECTIONS[fmt]
    parts = []
    if with_title:
        parts.append(header(f"{rec.title}  [{rec.source}]", color))
    for attr in sections:
        text = getattr(rec, attr)
        if text is None:
            text = "# (no numpy renderer in this tracejit build yet)"
        if len(sections) > 1:
            parts.append(header(f"{TITLES[attr]}: {rec.name}", color))
        parts.append(highlight(text.rstrip("\n"), LANGUAGE[attr], color))
    return "\n".join(parts)


def _report_written(records, out_dir: Path) -> int:
    for rec in records:
        print(f"{out_dir / rec.folder}/  {rec.title}")
    print(f"index: {out_dir / 'index.md'}")
    return 0
