"""Startup: a warm process finds its program by the traced graph (compile/programs.py), skipping
the passes, code generation and cffi's C parser; and that second cache level keeps the cache's
guarantees: damaged entries are detected, removed with a warning and rebuilt; unsafe paths are
refused; arrays the IR text abbreviates still decide the key.

Results are compared with numpy running the same step. The cache is filled by a child process
(as a real warm start is), then copied into each test's own cache folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import tracejit as tj
from tracejit.compile import cache, declarations, programs
from tracejit.compile.cache import CacheWarning
from tracejit.errors import CacheError

REPO = Path(__file__).resolve().parent.parent
SOURCES_DIGEST = programs._sources_digest  # the real one (the tests pin it, see PIN_SOURCES)

# One SGD step of value_and_grad with a constant of 1200 elements: large enough to be passed
# to the C code by pointer (a hidden array the program entry stores), not written into the C.
STEP_CODE = textwrap.dedent("""
    import numpy as np
    import tracejit as tj

    K = ((np.arange(40 * 30) % 7 - 3) / 10).astype(np.float32).reshape(40, 30)

    def loss(w, x):
        return (np.tanh(x @ w) * K).sum()

    def step(w, x):
        value, grad = tj.value_and_grad(loss)(w, x)
        return w - 0.1 * grad, value

    def inputs():
        r = np.random.default_rng(1)
        return (r.standard_normal((20, 30)) * 0.3).astype(np.float32), r.standard_normal((40, 20)).astype(np.float32)
""")
STEP: dict = {}
exec(STEP_CODE, STEP)

# The key covers the stat of tracejit's own source files (test_the_key_covers_the_source_files);
# here it is pinned, so that a file edited while the tests run does not turn a hit into a miss.
PIN_SOURCES = "programs._sources_digest = lambda: 'pinned by test_startup'\n"

CHILD = STEP_CODE + textwrap.dedent("""
    import json, sys, warnings
    from tracejit.compile import entries, programs  # entries.stats is cache.stats, without importing cache
""") + PIN_SOURCES + textwrap.dedent("""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new_w, value = tj.jit(step)(*inputs())
    heavy = ("tracejit.codegen.c_program", "tracejit.passes.fusion", "tracejit.compile.cache", "pycparser", "cffi.api",
             "filelock")
    print(json.dumps({"w": new_w.tolist(), "loss": float(value), "stats": entries.stats, "programs": programs.stats,
                      "loaded": [m for m in heavy if m in sys.modules], "warnings": [str(w.message) for w in caught]}))
""")


def numpy_step(w, x):
    t = np.tanh(x @ w)
    grad = x.T @ ((1 - t * t) * STEP["K"])
    return w - 0.1 * grad, (t * STEP["K"]).sum()


def assert_step_result(new_w, value):
    want_w, want_loss = numpy_step(*STEP["inputs"]())
    np.testing.assert_allclose(np.asarray(new_w), want_w, rtol=1e-5, atol=1e-6)
    assert abs(float(value) - want_loss) <= 1e-4 * max(1.0, abs(want_loss))


def run_child(cache_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACEJIT_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert_step_result(result["w"], result["loss"])
    return result


def run_here():
    """The step jitted in this process, as a new Jitted (nothing remembered in memory)."""
    cache._loaded.clear()
    new_w, value = tj.jit(STEP["step"])(*STEP["inputs"]())
    assert_step_result(new_w, value)


def cache_dir() -> Path:
    return Path(os.environ["TRACEJIT_CACHE_DIR"])


def program_entries(root: Path) -> list[Path]:
    return sorted((root / programs.PROGRAMS).glob("??/*"))


@pytest.fixture(autouse=True)
def fresh_cache_state(monkeypatch):
    monkeypatch.setattr(programs, "_sources_digest", lambda: "pinned by test_startup")
    cache._loaded.clear()
    cache._fallback_roots.clear()
    cache.stats.update(dict.fromkeys(cache.stats, 0))
    programs.stats.update(dict.fromkeys(programs.stats, 0))


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("filled") / "cache"
    return root, run_child(root)


@pytest.fixture
def entry(filled) -> Path:
    """This test's cache (a copy of the filled one); returns the step's program entry."""
    shutil.copytree(filled[0], cache_dir(), symlinks=True)
    (found,) = program_entries(cache_dir())
    return found


# ---- the warm path
def test_a_cold_process_publishes_and_a_warm_one_skips_the_pipeline(filled, tmp_path):
    root = tmp_path / "cache"
    cold = run_child(root)
    assert cold["stats"]["compiles"] == 1 and cold["programs"]["published"] == 1
    warm = run_child(root)
    assert warm["stats"]["compiles"] == 0 and warm["programs"]["hits"] == 1
    assert warm["loaded"] == [], "a warm start imported the pipeline, the build side, cffi's parser or filelock"
    assert not cold["warnings"] and not warm["warnings"]
    (program,) = program_entries(root)
    meta = json.loads((program / "program.json").read_text())
    assert [h["shape"] for h in meta["hidden"]] == [[40, 30]]  # K, stored beside the record


def test_what_a_warm_start_skipped_is_computed_on_demand_and_matches(entry):
    args = STEP["inputs"]()
    exe = tj.jit(STEP["step"]).lower(*args).compile()
    assert programs.stats["hits"] == 1
    library_entry = Path(exe.library.path).parent
    assert exe.c_source == (library_entry / "source.c").read_text()
    assert "kernels:" in exe.ir_text and exe.program.kernels and exe.kernel_graph.kernels
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # the regenerated C hashes to the loaded library
        cache._loaded.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRACEJIT_DEBUG", "2")  # debug 2 runs the whole pipeline: the reference
            fresh = tj.jit(STEP["step"]).lower(*args).compile()
    assert fresh.c_source == exe.c_source and fresh.ir_text == exe.ir_text
    assert [k.name for k in fresh.program.kernels] == [k.name for k in exe.program.kernels]


def test_an_intact_program_entry_is_a_hit_without_warnings(entry):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_here()
    assert programs.stats["hits"] == 1 and cache.stats["compiles"] == 0 and cache.stats["disk_hits"] == 1


# ---- damaged program entries
def _rewrite_meta(**changes):
    def damage(entry):
        meta = json.loads((entry / "program.json").read_text())
        meta.update(changes)
        (entry / "program.json").write_text(json.dumps(meta))
    return damage


def _rewrite_meta_with_checksum(**changes):
    def damage(entry):
        meta = json.loads((entry / "program.json").read_text())
        meta.update(changes)
        meta["checksum"] = programs._checksum(meta)
        (entry / "program.json").write_text(json.dumps(meta))
    return damage


def _flip_hidden(entry):
    path = entry / "hidden-0.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGES = {
    "json-garbage": lambda entry: (entry / "program.json").write_text("{not json"),
    "json-empty": lambda entry: (entry / "program.json").write_text(""),
    "json-a-list": lambda entry: (entry / "program.json").write_text("[1, 2]"),
    "json-missing": lambda entry: (entry / "program.json").unlink(),
    "json-field-changed": _rewrite_meta(peak_temp_bytes=0),
    "json-other-library": _rewrite_meta(library="0" * 64),
    "json-other-version": _rewrite_meta_with_checksum(version="0.0.1-stale"),
    "hidden-missing": lambda entry: (entry / "hidden-0.bin").unlink(),
    "hidden-truncated": lambda entry: (entry / "hidden-0.bin").write_bytes((entry / "hidden-0.bin").read_bytes()[:99]),
    "hidden-flipped": _flip_hidden,
    "entry-emptied": lambda entry: [p.unlink() for p in entry.iterdir()],
    "entry-is-a-file": lambda entry: (shutil.rmtree(entry), entry.write_bytes(b"junk")),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_program_entry_is_detected_removed_and_rebuilt_with_a_warning(entry, damage):
    DAMAGES[damage](entry)
    with pytest.warns(CacheWarning, match=re.escape(str(entry))):
        run_here()
    assert programs.stats["hits"] == 0 and programs.stats["published"] == 1
    assert cache.stats["compiles"] == 0  # the library itself was sound: a plain disk hit
    assert programs._try_load(cache_dir(), entry)[1] is None  # repaired
    programs.stats.update(dict.fromkeys(programs.stats, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_here()
    assert programs.stats["hits"] == 1


def test_a_program_whose_library_was_evicted_is_a_quiet_miss(entry):
    meta = json.loads((entry / "program.json").read_text())
    shutil.rmtree(cache._entry_dir(cache_dir(), meta["library"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run_here()
        assert cache.stats["compiles"] == 1
        programs.stats.update(dict.fromkeys(programs.stats, 0))
        run_here()
    assert programs.stats["hits"] == 1


def test_eviction_removes_the_programs_of_evicted_libraries(entry, monkeypatch):
    library = cache._entry_dir(cache_dir(), json.loads((entry / "program.json").read_text())["library"])
    os.utime(library, (1, 1))  # least recently used
    monkeypatch.setenv("TRACEJIT_CACHE_MAX_BYTES", "1")
    f = tj.jit(lambda x: np.sin(x) * 3)
    x = np.linspace(-1, 1, 7).astype(np.float32)
    np.testing.assert_allclose(f(x), np.sin(x) * 3, rtol=1e-6)
    assert not library.exists() and not entry.exists()


@pytest.mark.parametrize("target, mode", [("bucket", 0o777), ("entry", 0o720), ("json", 0o620), ("json", 0o606)])
def test_a_program_path_others_can_write_is_refused_naming_it(entry, target, mode):
    path = {"bucket": entry.parent, "entry": entry, "json": entry / "program.json"}[target]
    path.chmod(mode)
    with pytest.raises(CacheError, match=re.escape(str(path))):
        run_here()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("target", ["entry", "json"])
def test_a_program_path_owned_by_another_user_is_refused(entry, target):
    path = {"entry": entry, "json": entry / "program.json"}[target]
    os.chown(path, 65534, 65534)  # nobody: mode 0o700 does not stop its owner
    with pytest.raises(CacheError, match=re.escape(str(path))):
        run_here()


def test_program_entries_are_private(tmp_path):
    run_here()
    (entry,) = program_entries(cache_dir())
    for path in [entry.parent, entry, *entry.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


# ---- the key
def _constant_adder(constant):
    return tj.jit(lambda x: x + constant)


@pytest.mark.parametrize("make", [
    # printed alike (8 significant digits), different values
    lambda n: np.array([0.1234567891, 2.0, 3.0]) + n * 1e-10,
    # a large constant: the text shows only <f64[2000]>
    lambda n: np.arange(2000.0) + (np.arange(2000) == 1234) * n,
], ids=["small-printed-alike", "large-abbreviated"])
def test_constants_the_ir_text_abbreviates_still_decide_the_program(make):
    for n in range(2):
        constant = make(n)
        x = np.zeros(constant.shape)
        np.testing.assert_array_equal(_constant_adder(constant)(x), x + constant)
    assert programs.stats["hits"] == 0 and programs.stats["published"] == 2


def test_the_key_covers_the_name_the_flags_and_the_graph(monkeypatch):
    graph = tj.jit(STEP["step"]).lower(*STEP["inputs"]()).traced.graph
    other = tj.jit(lambda x: x * 2).lower(np.ones(3)).traced.graph
    base = programs.program_key(graph, "step")
    assert programs.program_key(graph, "step") == base
    assert programs.program_key(graph, "other_name") != base
    assert programs.program_key(other, "step") != base
    monkeypatch.setenv("TRACEJIT_CFLAGS", "-DTJ_SOMETHING=1")
    assert programs.program_key(graph, "step") != base


def test_ffi_tables_rebuild_the_declarations_without_cffi():
    cdef = "int tj_main(void *, void *, int64_t *);\nvoid tj_set_threads(int n);\n"
    ffi = declarations.ffi_from_tables(json.loads(json.dumps(declarations.ffi_tables(cdef))))
    assert ffi.sizeof("int64_t") == 8 and int(ffi.cast("uintptr_t", ffi.cast("void *", 64))) == 64


def test_runtime_alignment_agrees_with_codegen():
    from tracejit.codegen import c_program
    from tracejit.runtime import executable

    assert executable.ALIGNMENT == c_program.ALIGNMENT


def test_an_error_raised_by_a_cached_program_reads_its_messages_from_the_record(monkeypatch):
    from tracejit.runtime import executable

    def take(x, i):
        return x[i] * 2

    x, bad = np.arange(5.0), np.array([1, 7])
    with pytest.raises(IndexError) as built:
        tj.jit(take)(x, bad)
    cache._loaded.clear()
    monkeypatch.setattr(executable._Pipeline, "_run", lambda self: pytest.fail("the pipeline ran"))
    jitted = tj.jit(take)
    with pytest.raises(IndexError) as loaded:
        jitted(x, bad)
    assert programs.stats["hits"] == 1 and str(loaded.value) == str(built.value) and "7" in str(loaded.value)
    np.testing.assert_array_equal(jitted(x, np.array([4, 0])), x[[4, 0]] * 2)


def test_the_key_covers_the_source_files(tmp_path):
    """An edited pass must not find the program an older one built: the stat of each .py counts."""
    (tmp_path / "passes").mkdir()
    (tmp_path / "passes" / "simplify.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    before = sorted(programs._source_stats(str(tmp_path), ""))
    assert [path for path, _ in before] == ["passes/simplify.py"]
    os.utime(tmp_path / "passes" / "simplify.py", ns=(1, 1))
    after = sorted(programs._source_stats(str(tmp_path), ""))
    assert before[0][1].st_mtime_ns != after[0][1].st_mtime_ns
    assert len(SOURCES_DIGEST()) == 64 and SOURCES_DIGEST() != "pinned by test_startup"
