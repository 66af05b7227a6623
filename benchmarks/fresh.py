"""Work the runner does in fresh processes: W6 (first call) and each peer beside numpy.

Peers run each in a process of their own, with numpy measured again in that process:
several thread runtimes in one process fight over the 2 cores (torch's bundled OpenMP next
to the system libgomp that numba, torch.compile's kernels and tracejit's C use; XLA's pool;
two OpenBLAS builds), and a measured case was torch eager running W1 80x slower once
numba's OpenMP layer had started. So the tracejit process holds numpy and tracejit only,
and every ratio in the table still compares two contenders of one process.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cases
import peers
from measure import CpuWatch, first_lines

RUNNER = Path(__file__).resolve().parent / "run.py"
TIMEOUT_S = 1800  # torch.compile of three workloads takes a minute or two; a hang must not last forever


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_lines(str(err), 3)}" if str(err) else type(err).__name__


def run_runner(args: list[str], env: dict | None = None) -> str:
    """Run benchmarks/run.py in a fresh Python process; its stdout, or RuntimeError with its last words."""
    proc = subprocess.run([sys.executable, str(RUNNER), *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"fresh process exited with {proc.returncode}: {' | '.join(last)}")
    return proc.stdout


def common_args(opts, workloads_path) -> list[str]:
    args = ["--workloads", str(workloads_path), "--threads", str(opts.threads)]
    return args + (["--quick"] if opts.quick else []) + (["--reps", str(opts.reps)] if opts.reps else [])


# ---- peers, one process each ------------------------------------------------------------------
def add_peer(rows: list[dict], name: str, keys: list[str], opts, workloads_path) -> None:
    """Measure peer `name` beside numpy in its own process and put its entries into `rows`."""
    wanted = [k for k in keys if peers.builders(k, [name])]
    if not wanted:
        return
    failure = {"error": "the peer's process returned no result for this row"}
    with tempfile.TemporaryDirectory(prefix="tracejit-peer-") as tmp:
        out = Path(tmp) / "rows.json"
        try:
            run_runner(["--peer-child", name, "--only", ",".join(wanted), "--json", str(out),
                        *common_args(opts, workloads_path)])
            child_rows = {r["id"]: r for r in json.loads(out.read_text())["results"]}
        except Exception as err:
            child_rows, failure = {}, {"error": error_text(err)}
    for row in rows:
        if row["workload"] in wanted:
            child = child_rows.get(row["id"])
            row["peers"][name] = _peer_entry(child, name) if child else dict(failure)


def _peer_entry(child_row: dict, name: str) -> dict:
    entry = child_row["peers"][name]
    if "median_s" in entry:
        entry["numpy_median_s"] = child_row["numpy"]["median_s"]  # the speedup's own numpy time
    entry["others_cores"] = child_row.get("others_cores")
    return entry


# ---- W6: the first call of W4's step in a fresh process -----------------------------------------
def w6_rows(workloads_path, peer_names, opts) -> list[dict]:
    """W6 cold (empty cache dir) and warm (cache filled by an earlier process) for tracejit and jax."""
    runs = 1 if opts.quick else 3
    _compile_bytecode()
    rows = [{"id": f"W6 {kind}", "workload": "W6", "what": f"first call of W4's step, fresh process, {what}",
             "numpy": None, "peers": {}} for kind, what in (("cold", "empty cache"), ("warm", "cache filled"))]
    for name in ["tracejit"] + (["jax.jit"] if "jax.jit" in peer_names else []):
        watch = CpuWatch()
        for row, entry in zip(rows, _first_call_pairs(name, workloads_path, opts, runs)):
            if name == "tracejit":
                row["tracejit"] = entry
            else:
                row["peers"][name] = entry
        for row in rows:  # cold and warm alternate, so both share one noise figure
            (row if name == "tracejit" else row["peers"][name])["others_cores"] = watch.others_cores()
    return rows


def _compile_bytecode() -> None:
    """Write tracejit's .pyc files first, as `pip install` and any first import do. Without them
    (an editable install under PYTHONDONTWRITEBYTECODE=1, as on some CI machines) every fresh
    process compiles tracejit's sources again: ~45 ms of import and 10-20 ms of the first call
    that no installed copy pays."""
    import compileall

    import tracejit

    compileall.compile_dir(str(Path(tracejit.__file__).parent), quiet=1)


def _first_call_pairs(who, workloads_path, opts, runs):
    colds, warms = [], []
    try:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="tracejit-w6-") as cache:
                colds.append(_first_call(who, workloads_path, opts, cache))
                files = sum(len(f) for _, _, f in os.walk(cache))
                warms.append(dict(_first_call(who, workloads_path, opts, cache), cache_files_after_cold=files))
    except Exception as err:
        return {"error": error_text(err)}, {"error": error_text(err)}
    return _first_call_summary(colds), _first_call_summary(warms)


def _first_call(who, workloads_path, opts, cache) -> dict:
    env = dict(os.environ, TRACEJIT_CACHE_DIR=cache)
    start = time.perf_counter()
    out = run_runner(["--w6-child", who, "--w6-cache", cache, *common_args(opts, workloads_path)], env=env)
    result = json.loads(out.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def _first_call_summary(results) -> dict:
    firsts = sorted(r["first_call_s"] for r in results)
    out = {"median_s": statistics.median(firsts), "min_s": firsts[0], "reps": len(firsts),
           "import_s": statistics.median(r["import_s"] for r in results),
           "process_s": statistics.median(r["process_s"] for r in results)}
    if "cache_files_after_cold" in results[0]:
        out["cache_files_after_cold"] = min(r["cache_files_after_cold"] for r in results)
    return out


def w6_child(who, workloads_path, quick, cache) -> None:
    """In the fresh process: import, build W4's step, time its first call, print JSON."""
    t0 = time.perf_counter()
    if who == "tracejit":
        import tracejit as tj
    else:
        jax = peers.jax_module()
        jax.config.update("jax_compilation_cache_dir", cache)
        for option in ("jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes"):
            jax.config.update(option, 0)  # cache every compiled program, however small or quick
    t1 = time.perf_counter()
    wl = cases.load_workloads(workloads_path)
    args = wl.w4_inputs(8, (16, 12, 12, 4)) if quick else wl.w4_inputs()
    t2 = time.perf_counter()
    if who == "tracejit":
        out = cases.make_w4_step(tj, wl)(*args)
    else:
        out = jax.block_until_ready(peers.jax_w4_step(jax, peers.jax_workloads(wl))(*args))
    t3 = time.perf_counter()
    if not np.isfinite(float(np.asarray(out[1]))):
        raise SystemExit("W6: the first call gave a non-finite loss")
    print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2}))
