"""Programs compiled as two translation units at once (codegen/c_program.split_kernels) and linked
into one library: the same results as one unit, nothing leaks from the library, errors name the
unit's file, both cache levels keep working; and the BLAS fallback is left out when numpy's is there."""
from __future__ import annotations

import ctypes
import subprocess
import warnings

import numpy as np
import pytest

import tracejit as tj
from tracejit.codegen import c_program
from tracejit.compile import cache, entries, get_or_build, programs, toolchain
from tracejit.errors import CompileError
from tracejit.runtime import blas

F32 = np.float32


def mlp_loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(logp[np.arange(x.shape[0]), y])


def sgd_step(params, x, y):
    loss, grads = tj.value_and_grad(mlp_loss)(params, x, y)
    return {k: params[k] - 0.1 * grads[k] for k in params}, loss


def mlp_args(seed=0):
    r = np.random.default_rng(seed)
    params = {"W1": r.standard_normal((6, 8)).astype(F32), "b1": r.standard_normal(8).astype(F32),
              "W2": r.standard_normal((8, 5)).astype(F32), "b2": r.standard_normal(5).astype(F32)}
    return params, r.standard_normal((7, 6)).astype(F32), np.arange(7) % 5


def numpy_step(params, x, y):
    """The same step by hand in numpy (the oracle)."""
    n = x.shape[0]
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    d_logits = p.copy()
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    d_h = d_logits @ params["W2"].T * (1 - h * h)
    grads = {"W2": h.T @ d_logits, "b2": d_logits.sum(0), "W1": x.T @ d_h, "b1": d_h.sum(0)}
    return {k: params[k] - F32(0.1) * grads[k] for k in params}, loss


@pytest.fixture
def always_split(monkeypatch):
    monkeypatch.setattr(c_program, "SPLIT_MIN_LINES", 0)


def check_step(result, args):
    new, loss = result
    want_new, want_loss = numpy_step(*args)
    assert np.asarray(loss).dtype == F32 and np.asarray(loss).shape == ()
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for k in want_new:
        assert new[k].dtype == F32 and new[k].shape == want_new[k].shape
        np.testing.assert_allclose(new[k], want_new[k], rtol=1e-4, atol=1e-5)


def test_split_program_gives_the_results_of_one_unit(always_split, monkeypatch, tmp_path):
    args = mlp_args()
    split, exe = build(args)
    assert len(exe.program.units) == 2
    check_step(split(*args), args)
    monkeypatch.setattr(c_program, "SPLIT_MIN_LINES", 10 ** 9)
    monkeypatch.setenv("TRACEJIT_CACHE_DIR", str(tmp_path / "unsplit-cache"))
    whole, whole_exe = build(args)
    assert len(whole_exe.program.units) == 1 and whole_exe.library.key != exe.library.key
    for a, b in zip(_leaves(split(*args)), _leaves(whole(*args))):
        np.testing.assert_array_equal(a, b)  # the same C, compiled in two pieces: the same bits


def build(args):
    """The jitted step and its compiled program."""
    fn = tj.jit(sgd_step)
    return fn, fn.lower(*args).compile()


def _leaves(result):
    new, loss = result
    return [new[k] for k in sorted(new)] + [np.asarray(loss)]


def test_static_constants_reach_the_kernels_of_both_units(always_split):
    weights = np.linspace(-1, 1, 12, dtype=F32).reshape(4, 3)
    scale = np.array([0.5, -2.0, 3.0], F32)

    def f(x):
        return np.tanh(x @ weights) * scale, (x * np.arange(1, 5, dtype=F32)).sum(axis=0)

    x = np.random.default_rng(3).standard_normal((6, 4)).astype(F32)
    fn = tj.jit(f)
    assert len(fn.lower(x).compile().program.units) == 2
    for got, want in zip(fn(x), f(x)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_split_source_shows_both_units_and_the_entry_keeps_both_files(always_split):
    exe = tj.jit(sgd_step).lower(*mlp_args()).compile()
    unit1, unit2 = exe.program.units
    assert exe.c_source == unit1 + c_program.UNIT_BOUNDARY + unit2
    assert "int tj_main(" in unit1 and "int tj_main(" not in unit2
    assert "translation unit 2 of 2" in exe.c_source
    entry = exe.library.path.parent
    assert sorted(p.name for p in entry.iterdir()) == ["lib.so", "meta.json", "source-2.c", "source.c"]
    assert (entry / "source.c").read_text() == unit1 and (entry / "source-2.c").read_text() == unit2
    assert exe.library.key == cache.cache_key(exe.program.units, toolchain.default_flags(),
                                              toolchain.compiler_identity(toolchain.find_compiler()))


def test_split_kernels_are_balanced_and_each_unit_keeps_program_order():
    class Text:
        def __init__(self, lines):
            self.text = "\n".join(["x"] * lines)

    texts = [Text(n) for n in (10, 100, 30, 40, 35, 5)]
    first, second = c_program.split_kernels(texts)
    assert sorted(first + second) == list(range(len(texts)))
    assert first == sorted(first) and second == sorted(second)
    weight = [sum((texts[n].text.count("\n") + 1) ** 1.5 for n in g) for g in (first, second)]
    assert abs(weight[0] - weight[1]) <= 100 ** 1.5  # no more than the costliest kernel apart
    assert first == [1] and second == [0, 2, 3, 4, 5]  # 1000 against 10**1.5 + 30**1.5 + ... = 667
    assert c_program.split_kernels(texts[:1]) == [[0]]  # one kernel: nothing to split
    assert c_program.split_kernels([Text(5), Text(5)]) == [[0, 1]]  # under SPLIT_MIN_LINES


def test_only_the_entry_points_leave_the_library(always_split):
    exe = tj.jit(sgd_step).lower(*mlp_args()).compile()
    lib = ctypes.CDLL(str(exe.library.path))
    assert hasattr(lib, "tj_main") and hasattr(lib, "tj_set_threads")
    for info in exe.program.kernels:  # the kernels shared between the units are hidden
        assert not hasattr(lib, info.name), info.name
    assert not hasattr(lib, "tj_sgemm64")


def test_split_units_compile_with_wall_werror(always_split, tmp_path):
    units = tj.jit(sgd_step).lower(*mlp_args()).compile().program.units
    so = toolchain.compile_shared(units, tmp_path, "tj_test", flags=toolchain.default_flags() + [
        "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"])
    assert so.exists() and (tmp_path / "tj_test-2.c").read_text() == units[1]
    whole = c_program.UNIT_BOUNDARY.join(units)  # what .c_source shows is one valid C file too
    assert toolchain.compile_shared(whole, tmp_path, "tj_whole", flags=toolchain.default_flags() + [
        "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]).exists()


def test_compile_error_in_the_second_unit_names_its_file():
    good = "int tj_half(int n);\nint tj_main(int n) { return tj_half(n) + 1; }\n"
    bad = "__attribute__((visibility(\"hidden\"))) int tj_half(int n) { return n / 2 }\n"  # missing ;
    with pytest.raises(CompileError) as info:
        get_or_build([good, bad], "int tj_main(int n);")
    error = info.value
    assert error.c_file.endswith("-2.c") and open(error.c_file).read() == bad
    assert "failed" in error.c_file  # kept where it outlives the build folder
    assert "-2.c" in error.output and "error" in error.output
    assert "-c" in error.command


def test_two_units_link_into_one_library():
    good = "int tj_half(int n);\nint tj_main(int n) { return tj_half(n) + 1; }\n"
    half = "__attribute__((visibility(\"hidden\"))) int tj_half(int n) { return n / 2; }\n"
    library = get_or_build([good, half], "int tj_main(int n);")
    assert library.lib.tj_main(10) == 6
    assert get_or_build([good, half], "int tj_main(int n);") is library
    assert cache.cache_key([good], ["-O3"], "cc") == cache.cache_key(good, ["-O3"], "cc")
    assert cache.cache_key([good, half], ["-O3"], "cc") != cache.cache_key(good + half, ["-O3"], "cc")


def test_a_split_program_is_found_by_its_traced_graph(always_split):
    args = mlp_args(1)
    cache._loaded.clear()  # a library loaded by an earlier test lives in that test's cache folder
    tj.jit(sgd_step)(*args)
    hits = programs.stats["hits"]
    compiles = entries.stats["compiles"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the regenerated units must give the loaded library's key
        fn, again = build(args)
        check_step(fn(*args), args)
        assert programs.stats["hits"] > hits and entries.stats["compiles"] == compiles
        assert "translation unit 2 of 2" in again.c_source


# ---- the BLAS fallback ----------------------------------------------------------------------------
def _needed(library_path) -> str:
    return subprocess.run(["readelf", "-d", str(library_path)], capture_output=True, text=True).stdout


def matmul_add(a, b, c):
    return np.tanh(a @ b + c)


def matmul_args():
    r = np.random.default_rng(2)
    return tuple(r.standard_normal(shape).astype(F32) for shape in ((5, 4), (4, 3), (3,)))


@pytest.mark.skipif(blas.numpy_blas64() is None, reason="this numpy does not bundle scipy-openblas64")
def test_with_numpy_blas_the_fallback_blas_is_neither_compiled_nor_linked():
    flags = toolchain.default_flags()
    assert "-DTJ_NUMPY_BLAS" in flags and "-lscipy_openblas" not in flags
    exe = tj.jit(matmul_add).lower(*matmul_args()).compile()
    np.testing.assert_allclose(tj.jit(matmul_add)(*matmul_args()), matmul_add(*matmul_args()), rtol=1e-5, atol=1e-6)
    if subprocess.run(["readelf", "--version"], capture_output=True).returncode == 0:
        assert "scipy_openblas" not in _needed(exe.library.path)


def test_without_numpy_blas_the_fallback_blas_is_linked(monkeypatch):
    if toolchain._openblas_dirs() is None:
        pytest.skip("the scipy-openblas32 wheel is not installed")
    monkeypatch.setattr(blas, "_NUMPY_BLAS", [None])  # as with a numpy that bundles no OpenBLAS
    flags = toolchain.default_flags()
    assert "-DTJ_NUMPY_BLAS" not in flags and "-lscipy_openblas" in flags
    np.testing.assert_allclose(tj.jit(matmul_add)(*matmul_args()), matmul_add(*matmul_args()), rtol=1e-5, atol=1e-6)
