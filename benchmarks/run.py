"""tracejit against numpy (and optional peers) on every workload of shared/bench/workloads.py.

    python benchmarks/run.py [--only W1,W3] [--quick] [--reps N] [--json PATH] [--png PATH]
    tracejit bench [same options]

Fair by construction: the same input arrays for every contender, each result checked against
numpy's before anything is timed, warm-up before timing, contenders measured in interleaved
rounds (drift on a noisy machine hits all alike), the median of many repetitions reported,
and every ratio taken between two contenders of one process. numpy runs at its best (see
measure.raise_mmap_threshold); where a workload needs gradients, numpy runs a hand-written
backward (handwritten.py). Peers run each in a process of their own beside numpy (fresh.py
says why). A contender that fails or returns a wrong result is reported in its row.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # neighbours: cases, measure, peers, ... (also when loaded by `tracejit bench`)

import cases  # noqa: E402
import fresh  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from cases import KEYS, WorkloadsNotFound  # noqa: E402
from measure import (Contender, CpuWatch, WrongResult, check_fresh_results, compare, measure,  # noqa: E402
                     raise_mmap_threshold, summary)  # noqa: E402


# ---- one row ----------------------------------------------------------------------------------
def run_case(case: cases.Case, tj, wl, peer_names, opts) -> dict:
    """Verify, then time numpy, tracejit (unless tj is None) and the given peers on one case."""
    watch = CpuWatch()
    args = case.inputs()
    expected = case.numpy_fn(*args)
    row = {"id": case.id, "workload": case.key, "what": case.what, "peers": {}}
    contenders = [Contender("numpy", case.numpy_fn, args)]
    if case.bound_fn is not None:  # timed in the same rounds: the bound moves with the machine
        usable = tj if tj is not None and not isinstance(tj, BaseException) else None
        contenders.append(Contender("bound", case.bound_fn(usable), args))
        if usable is not None:  # the same products through numpy's matmul (OpenBLAS), for comparison
            contenders.append(Contender("numpy gemms", case.bound_fn(None), args))
    if tj is not None:
        row["tracejit"], contender = _prepare_tracejit(case, tj, args, expected)
        contenders += [contender] if contender else []
    for name, build in peers.builders(case.key, peer_names).items():
        row["peers"][name], contender = _prepare_peer(name, build, case, wl, args, expected)
        contenders += [contender] if contender else []
    measure(contenders, opts.target_s, opts.min_reps, opts.reps, settle_s=opts.settle_s)
    _record_timings(row, contenders)
    row["others_cores"] = watch.others_cores()  # cores other processes used meanwhile: the noise
    return row


def _prepare_tracejit(case, tj, args, expected):
    """({"max_rel_err": ...} or {"error": ...}, Contender or None): built, called once, verified."""
    if isinstance(tj, BaseException):
        return {"error": f"import tracejit failed: {fresh.error_text(tj)}"}, None
    try:
        fn = case.tracejit_fn(tj)
        max_rel_err = compare(fn(*args), expected, case, args, strict_dtype=True)
        check_fresh_results(fn, args)
    except WrongResult as err:
        return {"error": f"wrong result: {err}"}, None
    except Exception as err:  # any failure of the contender belongs in its row
        return {"error": fresh.error_text(err)}, None
    return {"max_rel_err": max_rel_err}, Contender("tracejit", fn, args)


def _prepare_peer(name, build, case, wl, args, expected):
    """Like _prepare_tracejit; a peer's dtype may differ from numpy's (only its values must match)."""
    try:
        impl = build(wl, args)
        max_rel_err = compare(impl.to_numpy(impl.fn(*impl.args)), expected, case, args, strict_dtype=False)
    except WrongResult as err:
        return {"error": f"wrong result: {err}"}, None
    except Exception as err:
        return {"error": fresh.error_text(err)}, None
    return {"max_rel_err": max_rel_err}, Contender(name, impl.fn, impl.args)


def _record_timings(row, contenders) -> None:
    timings = {c.name: summary(c) for c in contenders}
    row["numpy"] = timings.pop("numpy")
    if "bound" in timings:
        bound = timings.pop("bound")
        row["bound"] = dict(bound, speedup=row["numpy"]["median_s"] / bound["median_s"])
        if "numpy gemms" in timings:
            row["bound"]["numpy_gemms_s"] = timings.pop("numpy gemms")["median_s"]
    for name, timing in timings.items():
        entry = row["tracejit"] if name == "tracejit" else row["peers"][name]
        entry.update(timing, speedup=row["numpy"]["median_s"] / timing["median_s"])


def run_cases(wl, keys, tj, peer_names, opts) -> list[dict]:
    rows = []
    for case in (c for c in cases.build_cases(wl, opts.quick) if c.key in keys):
        if tj is None and not peers.builders(case.key, peer_names):
            continue
        print(f"  running {case.id} ...", file=sys.stderr, flush=True)
        rows.append(run_case(case, tj, wl, peer_names, opts))
    return rows


# ---- options ----------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="tracejit bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated workloads, e.g. W1,W3 (of %s; W2 = W2a,W2b)" % ",".join(KEYS))
    p.add_argument("--quick", action="store_true", help="small sizes and short timings (smoke test)")
    p.add_argument("--reps", type=int, help="timed samples per contender (default: adaptive, >= 10, ~0.6 s)")
    p.add_argument("--json", default="bench_results/latest.json", help="results file (default: %(default)s)")
    p.add_argument("--png", default="bench_results/latest.png", help="chart, if matplotlib is installed "
                   "(default: %(default)s)")
    p.add_argument("--workloads", help=f"path of workloads.py (default: {cases.DEFAULT_WORKLOADS})")
    p.add_argument("--threads", type=int, default=2, help="threads for tracejit, the BLAS and peers (default 2)")
    p.add_argument("--peers", help="comma-separated peers (default: all installed of %s; 'none' for none)"
                   % ",".join(peers.PEER_MODULES))
    for hidden in ("--peer-child", "--w6-child", "--w6-cache"):  # modes of the fresh processes
        p.add_argument(hidden, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.reps is not None and opts.reps < 1:
        p.error("--reps must be at least 1")
    opts.target_s, opts.min_reps, opts.settle_s = (0.05, 3, 0.005) if opts.quick else (0.6, 10, 0.1)
    return opts


def selected_keys(only: str | None) -> list[str]:
    """Workload keys named by --only (case-insensitive; W2 means W2a and W2b), in table order."""
    if not only:
        return list(KEYS)
    wanted = set()
    for part in (s.strip() for s in only.split(",") if s.strip()):
        matches = [k for k in KEYS if k.lower() == part.lower() or (part.lower() == "w2" and k.startswith("W2"))]
        if not matches:
            raise SystemExit(f"benchmarks: unknown workload {part!r} in --only; choose from {', '.join(KEYS)}")
        wanted.update(matches)
    return [k for k in KEYS if k in wanted]


def selected_peers(spec: str | None, quick: bool) -> list[str]:
    if spec is None:
        return peers.installed(include_slow=not quick)
    names = [s.strip() for s in spec.split(",") if s.strip() and s.strip() != "none"]
    unknown = [n for n in names if n not in peers.PEER_MODULES]
    if unknown:
        raise SystemExit(f"benchmarks: unknown peer {unknown[0]!r}; choose from {', '.join(peers.PEER_MODULES)}")
    return [n for n in names if n in peers.installed()]


def set_threads(threads: int) -> None:
    """One thread count for everyone; a TRACEJIT_NUM_THREADS set by the user wins."""
    os.environ.setdefault("TRACEJIT_NUM_THREADS", str(threads))
    peers.configure(threads)
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass


def _import_tracejit():
    try:
        import tracejit
        import tracejit.runtime.executable  # noqa: F401  (sets the OpenMP waiting defaults, for the header)

        return tracejit
    except Exception as err:  # reported in every tracejit cell
        return err


# ---- entry points -------------------------------------------------------------------------------
def peer_child(opts, wl, keys) -> int:
    """In a fresh process: numpy and one peer, rows written to --json for the parent."""
    name = opts.peer_child
    peers.preload([name])
    raise_mmap_threshold()
    report.write_json(opts.json, run_cases(wl, keys, None, [name], opts), {"peer_child": name})
    return 0


def main(argv=None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    workloads_path = Path(opts.workloads) if opts.workloads else cases.DEFAULT_WORKLOADS
    try:
        wl = cases.load_workloads(workloads_path)
    except WorkloadsNotFound as err:
        print(err, file=sys.stderr)
        return 2
    if opts.w6_child:
        fresh.w6_child(opts.w6_child, workloads_path, opts.quick, opts.w6_cache)
        return 0
    set_threads(opts.threads)
    keys, peer_names = selected_keys(opts.only), selected_peers(opts.peers, opts.quick)
    if opts.peer_child:
        return peer_child(opts, wl, keys)
    watch = CpuWatch()
    tj = _import_tracejit()
    print(report.header(opts, peer_names, workloads_path), flush=True)
    raise_mmap_threshold()
    rows = run_cases(wl, keys, tj, [], opts)
    for name in peer_names:
        print(f"  running peer {name} (own process) ...", file=sys.stderr, flush=True)
        fresh.add_peer(rows, name, keys, opts, workloads_path)
    if "W6" in keys:
        print("  running W6 (fresh processes) ...", file=sys.stderr, flush=True)
        rows += fresh.w6_rows(workloads_path, peer_names, opts)
    report.add_targets(rows, opts.quick)
    print(report.table(rows, peer_names))
    print(report.noise_note(rows, watch.others_cores()))
    meta = dict(report.metadata(opts, peer_names, workloads_path, argv), others_cores=watch.others_cores())
    report.write_json(opts.json, rows, meta)
    print(report.write_png(opts.png, rows, peer_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
