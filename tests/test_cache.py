"""The disk cache and the toolchain: hits, other processes, repairs, races, safety, errors.

Small hand-written C functions stand in for generated code. Anything that must not
happen in the test process itself (a second process, a library the parent must not have
dlopened before it is corrupted) runs in a subprocess.
"""
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracejit.compile import cache, get_or_build, toolchain
from tracejit.compile.cache import CacheWarning
from tracejit.errors import CacheError, CompileError, CompilerNotFoundError
from probes import builds_logged

SRC = '#include "tracejit.h"\ndouble tj_add(double a, double b) { return a + b; }\n'
CDEF = "double tj_add(double a, double b);"
REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(f"""
    import json
    from tracejit.compile import cache, get_or_build
    lib = get_or_build({SRC!r}, {CDEF!r})
    print(json.dumps({{"result": lib.lib.tj_add(2.0, 3.5), "stats": cache.stats, "path": str(lib.path)}}))
""")


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Forget libraries loaded and counts made by earlier tests (the cache dir is per test)."""
    cache._loaded.clear()
    cache.stats.update(dict.fromkeys(cache.stats, 0))


def _run_child(**extra_env) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entry(lib) -> Path:
    return Path(lib.path).parent


def test_miss_memory_hit_disk_hit():
    lib = get_or_build(SRC, CDEF)
    assert lib.lib.tj_add(1.0, 2.0) == 3.0
    assert cache.stats == {"compiles": 1, "disk_hits": 0, "memory_hits": 0}
    assert get_or_build(SRC, CDEF) is lib
    assert cache.stats["memory_hits"] == 1
    cache._loaded.clear()
    again = get_or_build(SRC, CDEF)
    assert again.lib.tj_add(1.0, 2.0) == 3.0
    assert cache.stats == {"compiles": 1, "disk_hits": 1, "memory_hits": 1}


def test_entry_layout_and_permissions():
    lib = get_or_build(SRC, CDEF)
    entry = _entry(lib)
    assert entry.name == lib.key and entry.parent.name == lib.key[:2]
    assert sorted(p.name for p in entry.iterdir()) == ["lib.so", "meta.json", "source.c"]
    assert lib.source_path.read_text() == SRC
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["checksum"] == cache._sha256_file(entry / "lib.so")
    for path in (cache.cache_root(), entry.parent, entry):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_key_covers_source_flags_and_compiler(monkeypatch):
    base = cache.cache_key(SRC, ["-O3"], "gcc 12")
    assert len({base, cache.cache_key(SRC + " ", ["-O3"], "gcc 12"), cache.cache_key(SRC, ["-O2"], "gcc 12"),
                cache.cache_key(SRC, ["-O3"], "gcc 13")}) == 4
    get_or_build(SRC, CDEF)
    monkeypatch.setenv("TRACEJIT_CFLAGS", "-DTJ_SOMETHING=1")
    get_or_build(SRC, CDEF)
    assert cache.stats["compiles"] == 2


def test_second_process_never_starts_the_compiler(logging_cc):
    """A warm process finds the library, and the compiler facts, on disk: no compiler runs."""
    first = _run_child()
    assert first["stats"]["compiles"] == 1 and first["result"] == 5.5
    log_before = logging_cc.read_text()
    second = _run_child()
    assert second["stats"] == {"compiles": 0, "disk_hits": 1, "memory_hits": 0}
    assert second["result"] == 5.5 and second["path"] == first["path"]
    assert logging_cc.read_text() == log_before


def test_concurrent_processes_compile_once(logging_cc):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(5)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["result"] == 5.5
    assert builds_logged(logging_cc) == 1


def _truncate(entry):
    so = entry / "lib.so"
    so.write_bytes(so.read_bytes()[:100])


def _flip_bytes(entry):
    data = bytearray((entry / "lib.so").read_bytes())
    for i in range(64, len(data), 97):
        data[i] ^= 0xFF
    (entry / "lib.so").write_bytes(bytes(data))


def _garbage_meta(entry):
    (entry / "meta.json").write_text("{not json")


def _other_version_meta(entry):
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "version": "0.0.0-other"}))


@pytest.mark.parametrize("corrupt", [
    _truncate, _flip_bytes, _garbage_meta, _other_version_meta,
    lambda entry: (entry / "lib.so").unlink(),
    lambda entry: (entry / "meta.json").unlink(),
    lambda entry: (entry / "source.c").unlink(),
], ids=["truncated", "flipped", "garbage-meta", "other-version", "no-lib", "no-meta", "no-source"])
def test_broken_entry_warns_and_is_rebuilt(corrupt):
    """Built in another process (this one must not have it mapped), broken, then repaired here."""
    entry = Path(_run_child()["path"]).parent
    corrupt(entry)
    with pytest.warns(CacheWarning, match=str(entry)):
        lib = get_or_build(SRC, CDEF)
    assert lib.lib.tj_add(2.0, 3.5) == 5.5
    assert cache.stats["compiles"] == 1
    assert cache._problem(entry) is None


def test_group_writable_cache_dir_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "shared-cache"
    root.mkdir()
    root.chmod(0o770)
    monkeypatch.setenv("TRACEJIT_CACHE_DIR", str(root))
    with pytest.raises(CacheError, match=str(root)):
        get_or_build(SRC, CDEF)


def test_world_writable_library_is_refused():
    entry = _entry(get_or_build(SRC, CDEF))
    (entry / "lib.so").chmod(0o666)
    cache._loaded.clear()
    with pytest.raises(CacheError, match="lib.so"):
        get_or_build(SRC, CDEF)


def test_unwritable_cache_dir_falls_back_to_a_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    wanted = blocker / "cache"
    monkeypatch.setenv("TRACEJIT_CACHE_DIR", str(wanted))
    with pytest.warns(CacheWarning, match="cannot write"):
        lib = get_or_build(SRC, CDEF)
    assert lib.lib.tj_add(1.0, 1.0) == 2.0
    assert not str(lib.path).startswith(str(wanted))


def test_compile_error_shows_compiler_message_and_keeps_source():
    bad = "double tj_bad(double a) { return a +; }\n"
    with pytest.raises(CompileError) as info:
        get_or_build(bad, "double tj_bad(double a);")
    err = info.value
    assert "expected expression" in str(err)
    assert err.c_file and err.c_file in str(err)
    assert Path(err.c_file).read_text() == bad
    assert Path(err.c_file).parent == cache.cache_root() / "failed"


def test_explicit_missing_compiler(monkeypatch):
    monkeypatch.setenv("TRACEJIT_CC", "/nonexistent/cc")
    with pytest.raises(CompilerNotFoundError, match="TRACEJIT_CC"):
        get_or_build(SRC, CDEF)


def test_no_compiler_on_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACEJIT_CC", raising=False)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerNotFoundError, match="apt-get install gcc"):
        toolchain.find_compiler()


def test_debug_level_3_prints_command_and_source(monkeypatch, capsys):
    monkeypatch.setenv("TRACEJIT_DEBUG", "3")
    get_or_build(SRC, CDEF)
    err = capsys.readouterr().err
    assert "-fno-math-errno" in err and "tj_add" in err
    assert "-ffast-math" not in err


def _make_entries(n: int):
    return [_entry(get_or_build(SRC + f"/* {i} */\n", CDEF)) for i in range(n)]


def test_lru_eviction_keeps_recently_used(monkeypatch):
    a, b = _make_entries(2)
    os.utime(a, (1_000_000, 2_000_000))  # a used more recently than b
    os.utime(b, (1_000_000, 1_000_000))
    size = cache._entry_size(a)
    monkeypatch.setenv("TRACEJIT_CACHE_MAX_BYTES", str(int(size * 2.5)))
    c = _entry(get_or_build(SRC + "/* c */\n", CDEF))
    assert a.exists() and c.exists() and not b.exists()


def _usage() -> dict:
    return json.loads((cache.cache_root() / cache.USAGE_FILE).read_text())


def _count_listings(monkeypatch) -> list:
    calls = []
    real = cache.list_entries
    monkeypatch.setattr(cache, "list_entries", lambda root=None: calls.append(1) or real(root))
    return calls


def test_builds_keep_a_running_total_instead_of_listing_the_cache(monkeypatch):
    first = _make_entries(1)  # no total yet: the first build lists the cache and records it
    assert _usage() == {"bytes": cache._entry_size(first[0]), "updates": 0}
    listings = _count_listings(monkeypatch)
    more = _make_entries(4)[1:]  # the first of these is `first` again (a memory hit)
    assert listings == []  # three builds, no listing
    assert _usage() == {"bytes": sum(e.size for e in cache.list_entries()), "updates": 3}
    assert len(more) == 3


@pytest.mark.parametrize("damage", ["missing", "not json", "negative", "wrong type"])
def test_a_damaged_running_total_means_listing_and_rewriting_it(monkeypatch, damage):
    _make_entries(2)
    path = cache.cache_root() / cache.USAGE_FILE
    {"missing": lambda: path.unlink(), "not json": lambda: path.write_text("{"),
     "negative": lambda: path.write_text('{"bytes": -5, "updates": 0}'),
     "wrong type": lambda: path.write_text('{"bytes": "12", "updates": 0}')}[damage]()
    listings = _count_listings(monkeypatch)
    get_or_build(SRC + "/* after the damage */\n", CDEF)
    assert listings == [1]
    assert _usage() == {"bytes": sum(e.size for e in cache.list_entries()), "updates": 0}


def test_the_cache_is_listed_again_every_recount_builds(monkeypatch):
    monkeypatch.setattr(cache, "RECOUNT_EVERY", 3)
    _make_entries(1)
    listings = _count_listings(monkeypatch)
    for i in range(6):
        get_or_build(SRC + f"/* recount {i} */\n", CDEF)
    assert listings == [1, 1]  # the 3rd and the 6th build after a count list the cache


def test_a_total_over_the_cap_lists_and_evicts(monkeypatch):
    """Entries removed behind the cache's back (by hand) leave the total too high: then the
    next build lists the cache, which finds the real size, and nothing needed is evicted."""
    entries = _make_entries(3)
    size = cache._entry_size(entries[0])
    (cache.cache_root() / cache.USAGE_FILE).write_text(json.dumps({"bytes": 100 * size, "updates": 1}))
    monkeypatch.setenv("TRACEJIT_CACHE_MAX_BYTES", str(10 * size))
    listings = _count_listings(monkeypatch)
    get_or_build(SRC + "/* over */\n", CDEF)
    assert listings == [1] and all(e.exists() for e in entries)
    assert _usage()["bytes"] == sum(e.size for e in cache.list_entries()) < 10 * size


def test_info_list_and_clear():
    entries = _make_entries(3)
    summary = cache.info()
    assert summary["entries"] == 3 and summary["bytes"] == sum(cache._entry_size(e) for e in entries)
    assert {e.path for e in cache.list_entries()} == set(entries)
    assert cache.clear() == 3
    assert cache.info()["entries"] == 0
    assert get_or_build(SRC, CDEF).lib.tj_add(1.0, 2.0) == 3.0


def test_sanitized_build_catches_overflow_in_a_subprocess():
    """TRACEJIT_SANITIZE=1 works as toolchain.py documents: run python with libasan preloaded."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("libasan is not installed")
    code = textwrap.dedent("""
        from tracejit.compile import get_or_build
        src = '#include <stdlib.h>\\nint tj_oob(int n) { int *p = malloc(n * sizeof(int)); int v = p[n]; free(p); return v; }\\n'
        get_or_build(src, "int tj_oob(int n);").lib.tj_oob(4)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRACEJIT_SANITIZE": "1", "LD_PRELOAD": libasan,
           "ASAN_OPTIONS": "detect_leaks=0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "heap-buffer-overflow" in out.stderr, out.stderr[-2000:]
