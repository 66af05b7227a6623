"""Smoke tests of benchmarks/: the runner runs, writes well-formed JSON, and what it times is right.

Correctness of what is timed, never speed: tracejit's results and the hand-written numpy
backwards are checked against numpy and against finite differences, independently of the
runner's own verification.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "benchmarks" / "run.py"


def _load_runner():
    sys.path.insert(0, str(RUNNER.parent))
    spec = importlib.util.spec_from_file_location("tracejit_benchmarks_run_test", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as `tracejit bench` does; dataclasses need it
    spec.loader.exec_module(module)
    return module


run = _load_runner()
import cases  # noqa: E402  (benchmarks/ is on sys.path now)
import handwritten  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402

if not cases.DEFAULT_WORKLOADS.is_file():
    pytest.skip(f"shared workloads not found at {cases.DEFAULT_WORKLOADS}", allow_module_level=True)

wl = cases.load_workloads()
QUICK_CASES = {case.id: case for case in cases.build_cases(wl, quick=True)}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--quick", "--reps", "2", "--peers", "none", "--json", str(out / "r.json"), "--png", str(out / "r.png")]
    with pytest.MonkeyPatch.context() as mp:  # main() sets the thread count process-wide; undo it after
        mp.setenv("TRACEJIT_NUM_THREADS", "2")
        assert run.main(argv) == 0
    return json.loads((out / "r.json").read_text())


# ---- the runner's output ----------------------------------------------------------------------
def test_json_has_every_workload_and_the_environment(quick_results):
    meta, rows = quick_results["meta"], quick_results["results"]
    assert {"threads", "env", "numpy", "tracejit", "command", "threadpools"} <= set(meta)
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(meta["env"])
    assert [r["id"] for r in rows] == list(QUICK_CASES) + ["W6 cold", "W6 warm"]
    assert {r["workload"] for r in rows} == set(run.KEYS)


def test_every_timed_row_has_numpy_and_tracejit_medians(quick_results):
    for row in quick_results["results"]:
        tracejit = row["tracejit"]
        assert "error" not in tracejit, f"{row['id']}: {tracejit['error']}"
        assert tracejit["median_s"] > 0
        if row["workload"] != "W6":
            assert row["numpy"]["reps"] == tracejit["reps"] == 2
            assert row["numpy"]["min_s"] <= row["numpy"]["median_s"]
            assert tracejit["speedup"] == pytest.approx(row["numpy"]["median_s"] / tracejit["median_s"])


def test_w4_reports_its_matmul_bound_from_the_same_rounds(quick_results):
    (w4,) = [row for row in quick_results["results"] if row["workload"] == "W4"]
    bound = w4["bound"]
    assert bound["reps"] == w4["numpy"]["reps"] and bound["median_s"] > 0
    assert bound["speedup"] == pytest.approx(w4["numpy"]["median_s"] / bound["median_s"])
    assert bound["numpy_gemms_s"] > 0  # the same products through numpy's matmul, in the same rounds
    assert "W4 bound: its gemms alone, compiled by tracejit, take" in report.table(quick_results["results"], [])


def test_the_bound_makes_the_matmuls_of_the_step():
    """The products the handwritten step computes, one by one: the same shapes and transposes, in
    numpy and compiled (the bound the runner times) alike."""
    import tracejit as tj

    params, x, y = cases.load_workloads().w4_inputs(8, (16, 12, 12, 4))[:3]
    for matmuls in (handwritten.mlp_matmuls, tj.jit(handwritten.mlp_matmuls)):
        products = handwritten.matmul_bound(matmuls)(params, x, y, 0.1)
        assert [p.shape for p in products] == [(8, 12), (8, 12), (8, 4), (8, 12), (12, 4), (8, 12), (12, 12), (16, 12)]


def test_first_call_rows_ran_in_processes_that_wrote_the_cache(quick_results):
    import tracejit as tj

    cold, warm = quick_results["results"][-2:]
    assert cold["tracejit"]["process_s"] > cold["tracejit"]["median_s"]
    if "tj_main" not in tj.jit(wl.w5_tiny).lower(*wl.w5_inputs()).c_source:
        pytest.skip("the C backend is not in place yet: nothing is written to the disk cache")
    assert warm["tracejit"]["cache_files_after_cold"] > 0, "the cold process left nothing in TRACEJIT_CACHE_DIR"


# ---- what is timed is right ---------------------------------------------------------------------
def _assert_same(actual, expected, rtol):
    got, want = measure.leaves_with_paths(actual), measure.leaves_with_paths(expected)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (path, a), (_, e) in zip(got, want):
        a, e = np.asarray(a), np.asarray(e)
        assert (a.shape, a.dtype) == (e.shape, e.dtype), path
        np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-6 * float(np.max(np.abs(e))), err_msg=path)


@pytest.mark.parametrize("case_id", list(QUICK_CASES))
def test_tracejit_result_equals_numpy(case_id):
    import tracejit as tj

    case = QUICK_CASES[case_id]
    args = case.inputs()
    _assert_same(case.tracejit_fn(tj)(*args), case.numpy_fn(*args), rtol=1e-4)


def test_numpy_side_of_w3_and_w4_computes_the_workload_loss():
    logits, labels = wl.w3_inputs(16, 10)
    loss, _ = handwritten.xent_value_and_grad(logits.copy(), labels)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss, wl.w3_xent(logits, labels), rtol=1e-6)
    params, x, y, lr = wl.w4_inputs(8, (16, 12, 12, 4))
    new, loss = handwritten.sgd_step(params, x, y, lr)
    np.testing.assert_allclose(loss, wl.w4_loss(params, x, y), rtol=1e-5)
    assert all(new[k].dtype == np.float32 and new[k].shape == params[k].shape for k in params)


def _directional_fd(f, tree, direction, eps=1e-6):
    plus = {k: tree[k] + eps * direction[k] for k in tree}
    minus = {k: tree[k] - eps * direction[k] for k in tree}
    return (f(plus) - f(minus)) / (2 * eps)


def test_handwritten_xent_gradient_matches_finite_differences(rng):
    logits = rng.standard_normal((5, 7))
    labels = rng.integers(0, 7, 5)
    _, grad = handwritten.xent_value_and_grad(logits.copy(), labels)
    for _ in range(3):
        v = rng.standard_normal(logits.shape)
        fd = _directional_fd(lambda t: wl.w3_xent(t["z"], labels), {"z": logits}, {"z": v})
        np.testing.assert_allclose(np.sum(grad * v), fd, rtol=1e-6, atol=1e-9)


def test_handwritten_mlp_gradient_and_update_match_finite_differences(rng):
    sizes, batch = (6, 5, 4, 3), 4
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"], params[f"b{i}"] = rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(n)
    x, y = rng.standard_normal((batch, sizes[0])), rng.integers(0, sizes[-1], batch)
    _, grads = handwritten.mlp_value_and_grad(params, x, y)
    for name in params:  # one parameter at a time, so a wrong gradient is pinned to its name
        v = {k: (rng.standard_normal(p.shape) if k == name else np.zeros_like(p)) for k, p in params.items()}
        fd = _directional_fd(lambda p: wl.w4_loss(p, x, y), params, v)
        np.testing.assert_allclose(np.sum(grads[name] * v[name]), fd, rtol=1e-6, atol=1e-9, err_msg=name)
    new, _ = handwritten.sgd_step(params, x, y, 0.1)
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - 0.1 * grads[k], rtol=1e-12)


# ---- failures land in their row -----------------------------------------------------------------
class _Opts:
    target_s, min_reps, reps, settle_s = 0.01, 2, 2, 0.0


def _case_with(tracejit_fn):
    good = QUICK_CASES["W5"]
    return cases.Case("W5", "W5", "test", good.inputs, good.numpy_fn, tracejit_fn, good.rtol, good.atol_scale)


def _reuses_its_output():
    out = np.empty(8, np.float32)
    return lambda x: np.add(x * 2, 1, out=out)


def _updates_in_place(x):
    out = x * 2 + 1  # the right result, but the input is modified afterwards
    x[0] += 1
    return out


@pytest.mark.parametrize("make, expected", [
    (lambda tj: (lambda x: x * 2 + 1.5), "wrong result: result differs"),
    (lambda tj: (lambda x: (x * 2 + 1).astype(np.float64)), "wrong result: result: float64[8]"),
    (lambda tj: (lambda x: {"y": x * 2 + 1}), "wrong result: result structure"),
    (lambda tj: tj.no_such_transformation, "AttributeError"),
    (lambda tj: _reuses_its_output(), "wrong result: result: two calls returned the same buffer"),
    (lambda tj: _updates_in_place, "wrong result: the call changed its input [0]"),
])
def test_a_wrong_or_failing_contender_is_reported_not_timed(make, expected):
    import tracejit as tj

    row = run.run_case(_case_with(make), tj, wl, [], _Opts())
    assert row["tracejit"]["error"].startswith(expected), row["tracejit"]["error"]
    assert "median_s" not in row["tracejit"]
    assert row["numpy"]["reps"] == 2


def test_missing_workloads_file_names_the_option(tmp_path, capsys):
    assert run.main(["--workloads", str(tmp_path / "nowhere.py"), "--json", str(tmp_path / "r.json")]) == 2
    assert "--workloads PATH" in capsys.readouterr().err


def test_only_selects_workloads():
    assert run.selected_keys("w2,W5") == ["W2a", "W2b", "W5"]
    with pytest.raises(SystemExit, match="W7"):
        run.selected_keys("W7")


def test_script_entry_point_prints_the_table(tmp_path):
    cmd = [sys.executable, str(RUNNER), "--quick", "--reps", "2", "--only", "W5", "--peers", "none",
           "--json", str(tmp_path / "r.json"), "--png", str(tmp_path / "r.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| W5 " in proc.stdout and "threads: 2" in proc.stdout


def test_installed_peers_match_numpy(tmp_path, monkeypatch):
    import peers

    names = peers.installed(include_slow=False)
    if not names:
        pytest.skip("no peer (numexpr, numba, jax, torch) installed")
    argv = ["--quick", "--reps", "2", "--only", "W1,W2,W3,W4,W5", "--json", str(tmp_path / "r.json"),
            "--png", str(tmp_path / "r.png")]
    monkeypatch.setenv("TRACEJIT_NUM_THREADS", "2")
    assert run.main(argv) == 0
    for row in json.loads((tmp_path / "r.json").read_text())["results"]:
        for name, entry in row["peers"].items():
            assert "error" not in entry, f"{row['id']} {name}: {entry['error']}"
