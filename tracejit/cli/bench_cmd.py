"""`tracejit bench [ARGS...]`: the benchmark runner benchmarks/run.py of a source checkout."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .target import UsageError


def candidates() -> list[Path]:
    """Where the runner may be: next to the package (an editable install), then the current folder."""
    package = Path(__file__).resolve().parent.parent
    found = [package.parent / "benchmarks" / "run.py", Path.cwd() / "benchmarks" / "run.py"]
    return list(dict.fromkeys(p.resolve() for p in found))


def run(opts, color: bool) -> int:
    runner = next((p for p in candidates() if p.is_file()), None)
    if runner is None:
        looked = ", ".join(map(str, candidates()))
        raise UsageError(f"bench: the benchmark runner was not found (looked at {looked}); it ships with "
                         "the source tree: run from a checkout installed with `pip install -e .`")
    module = _load(runner)
    if not hasattr(module, "main"):
        raise UsageError(f"bench: {runner} has no main(argv) function")
    result = module.main(list(opts.bench_args))
    return result if isinstance(result, int) else 0


def _load(runner: Path):
    sys.path.insert(0, str(runner.parent))  # the runner imports its neighbours (workloads, peers)
    spec = importlib.util.spec_from_file_location("tracejit_benchmarks_run", runner)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
