"""The `tracejit` command (also `python -m tracejit`): dump, cache, bench, --version.

Exit codes: 0 success; 1 the user's code (or a compile) failed; 2 a bad command line, reported
on one line.
"""
from __future__ import annotations

import argparse
import os
import sys

from .target import UsageError

DUMP_EPILOG = """\
examples:
  tracejit dump model.py:loss x=f32[128,784] y=i64[128] 'params={W1:f32[784,512],b1:f32[512]}'
  tracejit dump model.py:loss --args-from example_args --grad params --format py
  tracejit dump train.py --out dumps/ -- --epochs 1

shape specs: DTYPE[DIMS] with DTYPE one of f32 f64 i32 i64 bool (f32[] is a scalar);
{key:spec,...} for a dict, (spec,...) for a tuple, [spec,...] for a list; a Python number
(lr=0.1) for a scalar or static argument. TRACEJIT_DUMP=DIR writes the --out layout from any run.
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (UsageError -> exit 2), not usage plus message."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the output: auto (when stdout is a terminal and NO_COLOR is unset)")
    parser = _Parser(prog="tracejit", description="See what tracejit makes of your numpy code; manage its cache.")
    parser.add_argument("--version", action="version", version=_version_text(__version__))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_dump(commands, common)
    _add_cache(commands, common)
    bench = commands.add_parser("bench", parents=[common], help="run the benchmark suite (benchmarks/run.py)",
                                description="Run benchmarks/run.py of the source checkout; every argument "
                                "is passed on to it (`tracejit bench -- --help` shows the runner's own options).")
    bench.add_argument("bench_args", nargs="*", metavar="ARGS", help="arguments for the runner")
    return parser


def _add_dump(commands, common) -> None:
    dump = commands.add_parser(
        "dump", parents=[common], help="show the IR and C of a function, or of every function a script compiles",
        description="FILE.py:FUNC traces one function with example inputs; SCRIPT.py runs a script "
        "unchanged and shows every function compiled during the run.",
        epilog=DUMP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    dump.add_argument("target", metavar="FILE.py[:FUNC]", help="a script, or a function in a file")
    dump.add_argument("specs", nargs="*", default=[], metavar="NAME=SPEC", help="example inputs, e.g. x=f32[128,784]")
    dump.add_argument("--arg", action="append", default=[], metavar="NAME=SPEC",
                      help="an example input (repeatable); same as a positional NAME=SPEC")
    dump.add_argument("--args-from", metavar="FUNC2",
                      help="a function in the same file returning example arguments (a tuple, or a dict of kwargs)")
    dump.add_argument("--grad", nargs="?", const="", metavar="ARGS",
                      help="differentiate first (value_and_grad) w.r.t. the named arguments (default: the first)")
    dump.add_argument("--format", choices=("all", "ir", "c", "py"), default="all",
                      help="all (default): traced IR, optimized IR with kernels, C; or one of them; "
                      "py: readable numpy source")
    dump.add_argument("--out", metavar="DIR", help="write one folder per function and signature, plus an index")


def _add_cache(commands, common) -> None:
    cache = commands.add_parser("cache", parents=[common], help="the on-disk cache of compiled code",
                                description="path: print the cache folder; info: entries, size, oldest/newest; "
                                "clear: delete every entry. TRACEJIT_CACHE_DIR moves the cache.")
    cache.add_argument("action", choices=("path", "info", "clear"))
    cache.add_argument("-v", "--verbose", action="store_true", help="info: list every entry")


def _version_text(version: str) -> str:
    import platform

    import numpy

    return f"tracejit {version} (python {platform.python_version()}, numpy {numpy.__version__})"


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse, keeping `tracejit dump SCRIPT.py -- ARGS` intact (ARGS may look like options)."""
    script_args: list[str] = []
    if argv[:1] == ["dump"] and "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    if argv[:1] == ["bench"] and argv[1:] not in (["-h"], ["--help"]):
        argv, script_args = ["bench"], argv[1:]  # everything is the runner's, even `--quick`
    parser = build_parser()
    opts, extra = parser.parse_known_args(argv)
    if extra and opts.command == "dump" and not any(x.startswith("-") for x in extra):
        opts.specs += extra  # specs after options: argparse stops filling a positional at the first option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(x for x in extra if x.startswith('-')) or extra[0]}")
    opts.script_args = script_args
    if opts.command == "bench":
        opts.bench_args = script_args[1:] if script_args[:1] == ["--"] else script_args
    if opts.command == "dump" and opts.grad:
        _unswallow_grad(opts)
    return opts


def _unswallow_grad(opts) -> None:
    """`--grad` takes an optional value, so `--grad x=f32[3]` or `--grad f.py:loss` gave it one
    that belongs to the positionals: put it back."""
    if ".py" in opts.grad:
        opts.specs.insert(0, opts.target)
        opts.target, opts.grad = opts.grad, ""
    elif "=" in opts.grad or "[" in opts.grad:
        opts.specs.insert(0, opts.grad)
        opts.grad = ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = parse(argv)
        if opts.command is None:
            build_parser().print_help()
            return 2
        return _dispatch(opts)
    except UsageError as e:
        print(f"tracejit: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tracejit dump ... | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        return _failed(e)


def _dispatch(opts) -> int:
    from . import bench_cmd, cache_cmd, dump_cmd
    from .output import want_color

    color = want_color(opts.color)
    run = {"dump": dump_cmd.run, "cache": cache_cmd.run, "bench": bench_cmd.run}[opts.command]
    return run(opts, color)


def _failed(exc: Exception) -> int:
    """tracejit's own errors are written for users: the message alone. Anything else: a traceback
    of the user's frames (TRACEJIT_DEBUG=1 shows tracejit's frames too)."""
    from .. import config
    from ..errors import TracejitError
    from .output import print_traceback

    if isinstance(exc, TracejitError):
        print(f"tracejit: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print_traceback(exc, only_user_frames=config.debug_level() < 1)
    return 1
