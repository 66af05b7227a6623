"""What the benchmark runner shows: the environment header, the table, the JSON file, the chart."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import peers

REPO = Path(__file__).resolve().parent.parent
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

# The targets of issue 4, for the full-size rows: ("speedup", at least) or ("time", at most, seconds).
TARGETS = {
    "W1 n=10M": ("speedup", 7.0), "W1 n=100k": ("speedup", 3.0), "W2a": ("speedup", 3.5),
    "W2b": ("speedup", 6.0), "W3": ("speedup", 5.0), "W4": ("speedup", 1.25),
    "W5": ("time", 1.0e-6), "W6 cold": ("time", 0.3), "W6 warm": ("time", 0.03),
}


# ---- environment ------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _threadpools() -> list[dict]:
    try:
        import threadpoolctl
    except ImportError:
        return []
    keep = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: info.get(k) for k in keep} for info in threadpoolctl.threadpool_info()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _tracejit_version() -> str:
    try:
        import tracejit

        return tracejit.__version__
    except Exception as err:  # the header must print even when tracejit does not import
        return f"not importable ({type(err).__name__})"


def metadata(opts, peer_names, workloads_path, argv=None) -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": opts.quick, "workloads": str(workloads_path),
        "python": platform.python_version(), "numpy": np.__version__,
        "tracejit": _tracejit_version(), "git_commit": _git_commit(),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "threads": opts.threads,
        "TRACEJIT_NUM_THREADS": os.environ.get("TRACEJIT_NUM_THREADS"),
        "env": {name: os.environ.get(name) for name in BLAS_ENV},
        "threadpools": _threadpools(), "peers": peer_names, "peer_versions": peers.versions(),
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def load_warning(when: str) -> str | None:
    """A warning when other processes keep the cores busy: the numbers of this run are then suspect."""
    load = _load_average()
    if load and load[0] > 0.5:
        return (f"warning: load average {load[0]:.2f} (1 min) on {os.cpu_count()} cores {when}: other processes "
                "compete for the cores, so these timings are noisy; rerun on a quiet machine")
    return None


NOISY_CORES = 0.1  # other processes' average use of the cores above which a row is marked noisy


def noise_note(rows: list[dict], whole_run: float | None) -> str:
    """Which rows ran while other processes used the cores (see measure.CpuWatch)."""
    if whole_run is None:
        return "other processes' CPU use: unknown (no /proc/stat)"
    measured = [(r["id"], r.get("others_cores")) for r in rows]
    measured += [(f"{r['id']} {name}", e.get("others_cores")) for r in rows for name, e in r["peers"].items()]
    measured = [(what, cores) for what, cores in measured if cores is not None]
    noisy = [f"{what} {cores:.2f}" for what, cores in measured if cores > NOISY_CORES]
    text = f"other processes used {whole_run:.2f} cores on average during this run"
    if noisy and len(noisy) > len(measured) / 2:
        text += (f"; {len(noisy)} of {len(measured)} measurements ran beside other processes "
                 f"(> {NOISY_CORES} core): the whole table is noisy, rerun on a quiet machine")
    elif noisy:
        text += f"; noisy (cores used by others): {', '.join(noisy)}: rerun them on a quiet machine"
    return text
