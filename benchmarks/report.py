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
THREAD_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
              "GOMP_SPINCOUNT")  # what decides how the thread pools behave; GOMP_* as tracejit sets it

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
        "env": {name: os.environ.get(name) for name in THREAD_ENV},
        "threadpools": _threadpools(), "peers": peer_names, "peer_versions": peers.versions(),
        "load_average": _load_average(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
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


def header(opts, peer_names, workloads_path) -> str:
    meta = metadata(opts, peer_names, workloads_path)
    env = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in meta["env"].items())
    lines = [
        f"tracejit {meta['tracejit']} (git {meta['git_commit']}) | numpy {meta['numpy']} | "
        f"python {meta['python']} | {meta['cpu']}, {meta['cores']} cores",
        f"threads: {opts.threads} (TRACEJIT_NUM_THREADS={meta['TRACEJIT_NUM_THREADS']}, BLAS limited to "
        f"{opts.threads}, peers set to {opts.threads}) | {env}",
    ]
    for pool in meta["threadpools"]:
        lines.append(f"threadpool: {pool['internal_api']} {pool['version']} kernel={pool['architecture']} "
                     f"threads={pool['num_threads']} ({Path(pool['filepath'] or '?').name})")
    if meta["env"]["OPENBLAS_CORETYPE"] or meta["env"]["OPENBLAS_L2_SIZE"]:
        lines.append("warning: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set and may slow numpy's BLAS; "
                     "see benchmarks/README.md for running with them unset")
    lines.append(f"peers: {', '.join(peer_names) or 'none installed'} | workloads: {workloads_path}"
                 + (" | QUICK (sizes are not the reference ones)" if opts.quick else ""))
    return "\n".join(lines)


# ---- targets ----------------------------------------------------------------------------------
def add_targets(rows: list[dict], quick: bool) -> None:
    """Attach issue 4's target to each full-size row and whether tracejit met it."""
    for row in rows:
        target = None if quick else TARGETS.get(row["id"])
        row["target"] = target and {"kind": target[0], "value": target[1]}
        row["meets_target"] = _meets(row, target) if target else None


def _meets(row, target) -> bool | None:
    timing = row.get("tracejit") or {}
    if "median_s" not in timing:
        return None
    kind, value = target
    met = timing["median_s"] <= value if kind == "time" else timing["speedup"] >= value
    jax = row["peers"].get("jax.jit", {})
    if row["id"] == "W4" and "speedup" in jax:  # the issue also asks to beat jax.jit in the same run
        met = met and timing["speedup"] > jax["speedup"]  # ratios: jax ran beside numpy in its own process
    return met


def _target_text(target) -> str:
    if not target:
        return ""
    if target["kind"] == "time":
        return f"<= {fmt_time(target['value'])}"
    return f">= {target['value']:g}x"


# ---- table ------------------------------------------------------------------------------------
def fmt_time(seconds: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            break
    value = seconds / scale
    return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"


def _cell(entry, notes: list, row_id: str, who: str, with_speedup: bool) -> str:
    if not entry:
        return "-"
    if "error" in entry:
        notes.append(f"{row_id} {who}: {entry['error']}")
        return f"error [{len(notes)}]"
    if "median_s" not in entry:
        return "-"
    if entry.get("cache_files_after_cold") == 0:
        notes.append(f"{row_id} {who}: the cold process wrote nothing to the disk cache, so this is no cache hit")
        return f"{fmt_time(entry['median_s'])} [{len(notes)}]"
    text = fmt_time(entry["median_s"])
    return f"{text} ({entry['speedup']:.2f}x)" if with_speedup and "speedup" in entry else text


def table(rows: list[dict], peer_names: list[str]) -> str:
    """A Markdown table: speedup = numpy time / contender time (higher is better)."""
    notes: list[str] = []
    head = ["workload", "numpy", "tracejit", "speedup", "target", "met", *peer_names]
    body = []
    for row in rows:
        tj = row.get("tracejit") or {}
        met = {True: "yes", False: "NO", None: ""}[row.get("meets_target")]
        body.append([
            row["id"], _cell(row.get("numpy"), notes, row["id"], "numpy", False),
            _cell(tj, notes, row["id"], "tracejit", False),
            f"{tj['speedup']:.2f}x" if "speedup" in tj else "-", _target_text(row.get("target")), met,
            *(_cell(row["peers"].get(p), notes, row["id"], p, True) for p in peer_names),
        ])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = [_md_row(head, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_md_row(r, widths) for r in body]
    lines += [""] * bool(notes) + [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
    lines += [bound_note(row) for row in rows if "median_s" in row.get("bound", {})]
    return "\n".join(lines)


def bound_note(row) -> str:
    bound = row["bound"]
    numpy_gemms = (f" (numpy's matmuls of the same products: {fmt_time(bound['numpy_gemms_s'])})"
                   if "numpy_gemms_s" in bound else "")
    return (f"{row['id']} bound: its gemms alone, compiled by tracejit, take {fmt_time(bound['median_s'])}"
            f"{numpy_gemms}, so a step making the same gemm calls is at most {bound['speedup']:.2f}x numpy "
            f"(measured in the same rounds)")


def _md_row(cells, widths) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"


# ---- files ------------------------------------------------------------------------------------
def write_json(path, rows: list[dict], meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=float) + "\n")
    print(f"results written to {path}")


def write_png(path, rows: list[dict], peer_names: list[str]) -> str:
    """A bar chart of speedups over numpy (log scale); a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib not installed: no chart (pip install matplotlib)"
    rows = [r for r in rows if r.get("numpy")]
    who = ["tracejit", *peer_names]
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(rows)) + 1.5, 4.5))
    width = 0.8 / len(who)
    for i, name in enumerate(who):
        values = [_speedup(r, name) or 0 for r in rows]
        xs = [j + (i - (len(who) - 1) / 2) * width for j in range(len(rows))]
        bars = ax.bar(xs, values, width, label=name)
        if name == "tracejit":
            ax.bar_label(bars, labels=[f"{v:.2g}x" if v else "" for v in values], fontsize=7)
    for j, row in enumerate(rows):
        target = row.get("target")
        if target and target["kind"] == "speedup":
            ax.hlines(target["value"], j - 0.4, j + 0.4, colors="black", linestyles="dashed", linewidth=1)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(len(rows)), [r["id"] for r in rows])
    ax.set_ylabel("speedup over numpy (higher is better)")
    ax.set_title("speedup over numpy, same process and inputs (dashed: issue 4 target)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


def _speedup(row, name):
    entry = row.get("tracejit") if name == "tracejit" else row["peers"].get(name)
    return (entry or {}).get("speedup")
