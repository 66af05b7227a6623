"""Content-addressed disk cache of compiled shared libraries, and loading them with cffi.

Layout: ``<cache_dir>/<key[:2]>/<key>/`` holds ``lib.so``, ``source.c`` and
``meta.json`` (sha256 of lib.so, tracejit version, compiler, flags, creation time);
``<cache_dir>/usage.json`` a running total of the cache's bytes (see note_growth).
The key hashes everything that affects the binary: the C source, the flags, the
compiler's identity, tracejit's version, the CPU (we build with -march=native) and the
hand-written headers in csrc/.

Concurrency: an entry is built in ``<cache_dir>/tmp/`` and renamed into place whole, so
a reader never sees half of one; builders of the same key serialize on
``<cache_dir>/locks/<key>.lock`` and re-check after taking it, so N processes on an
empty cache compile once. A reader takes no lock. Anything wrong with an entry
(checksum, missing file, bad json) is repaired under the lock with a warning.

Safety: a library in the cache is code loaded into the process, so a cache folder, entry
or library writable by group or others, or owned by another user (root excepted), is
refused with CacheError.

A cache folder that cannot be written (read-only) or cannot hold a build (full disk, quota)
is replaced, for the rest of the process, by a private temporary folder, with a warning.

This is the first level, keyed by C source. programs.py adds a second, keyed by the traced
graph, that lets a warm process skip the passes, code generation and cffi's C parser. The
read side (folders, safety checks, an entry's soundness, loading) is in entries.py, which is
all such a warm start imports; this module builds, locks, lists and evicts.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

from .. import config
from .._version import __version__
from ..errors import CacheError, CompileError
from . import declarations
from .entries import (  # noqa: F401 - the read side, re-exported: cache.<name> keeps working
    CacheWarning,
    LoadedLibrary,
    _check_private,
    _cpu_identity,
    _entry_dir,
    _fallback_root,
    _fallback_roots,
    _headers_digest,
    _make_private_dir,
    _open_with,
    _problem,
    _sha256_file,
    cache_root,
    stats,
)
from .toolchain import compile_shared, compiler_identity, default_flags, find_compiler

if TYPE_CHECKING:
    import filelock

# cffi's parser (pycparser) and filelock are imported where a build or a lock needs them:
# together ~25 ms that a warm process loading through programs.py never pays.

LOCK_TIMEOUT_S = 600
Sources = str | Sequence[str]  # one C text, or the translation units of one library
_loaded: dict[tuple[str, str], "LoadedLibrary"] = {}


class CacheEntry(NamedTuple):
    key: str
    path: Path
    size: int
    last_used: float


# ---------------------------------------------------------------------------- the key

def cache_key(c_source: Sources, flags: list[str], compiler_identity: str) -> str:
    """sha256 over everything that decides the binary (a program of one unit: the same key as its text)."""
    h = hashlib.sha256()
    for part in (_joined(c_source), "\0".join(flags), compiler_identity, __version__, _cpu_identity(),
                 _headers_digest()):
        h.update(part.encode() + b"\0\1")
    return h.hexdigest()


def _joined(c_source: Sources) -> str:
    return c_source if isinstance(c_source, str) else "\0unit\0".join(c_source)


def _units(c_source: Sources) -> list[str]:
    return [c_source] if isinstance(c_source, str) else list(c_source)


def _source_names(count: int) -> list[str]:
    """The C files of an entry: source.c, then source-2.c, ... for further translation units."""
    return ["source.c"] + [f"source-{n}.c" for n in range(2, count + 1)]


# ------------------------------------------------------------------- folders and safety

def _remove_tree(root: Path, path: Path) -> None:
    """Take a folder out of view atomically (rename into tmp/), then delete it."""
    _make_private_dir(root / "tmp")
    grave = Path(tempfile.mkdtemp(dir=root / "tmp", prefix="dead-"))
    try:
        os.rename(path, grave / "entry")
    except OSError:  # already gone, or cannot be moved: delete in place
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(grave, ignore_errors=True)


# --------------------------------------------------------------------- entries on disk

def _open(entry: Path, key: str, cdef: str) -> LoadedLibrary:
    """dlopen an entry (ABI mode) and mark it used for the LRU eviction."""
    return _open_with(declarations.parsed_ffi(cdef), entry, key)


def _build(root: Path, key: str, c_source: Sources, cdef: str, cc: str, flags: list[str]) -> None:
    """Compile into a private temp folder, then rename it into place as one finished entry (the C
    of each translation unit beside the library). While the compiler runs, parse the cdef (for
    loading it next; programs.py's tables too)."""
    tmp_root = root / "tmp"
    _make_private_dir(tmp_root)
    work = Path(tempfile.mkdtemp(dir=tmp_root, prefix="build-"))
    try:
        so = compile_shared(c_source, work, key, cc=cc, flags=flags, failed_dir=root / "failed",
                            while_compiling=lambda: declarations.ffi_tables(cdef))
        stats["compiles"] += 1
        os.replace(so, work / "lib.so")
        sources = _source_names(len(_units(c_source)))
        for n, source in enumerate(sources):
            os.replace(work / (f"{key}.c" if n == 0 else f"{key}-{n + 1}.c"), work / source)
        for leftover in work.glob(f"{key}*.o"):
            leftover.unlink()
        meta = {"key": key, "checksum": _sha256_file(work / "lib.so"), "version": __version__,
                "created": time.time(), "compiler": compiler_identity(cc), "flags": flags}
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        for name in ("lib.so", "meta.json", *sources):
            os.chmod(work / name, 0o600)
        _make_private_dir(_entry_dir(root, key).parent)
        os.rename(work, _entry_dir(root, key))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _lock(root: Path, key: str, timeout: float = LOCK_TIMEOUT_S) -> "filelock.FileLock":
    import filelock

    _make_private_dir(root / "locks")
    return filelock.FileLock(str(root / "locks" / f"{key}.lock"), timeout=timeout, mode=0o600)


def _try_open(entry: Path, key: str, cdef: str) -> tuple[LoadedLibrary | None, str | None]:
    """The entry loaded, or (None, why it is unusable); (None, None) if it does not exist."""
    if not entry.exists():
        return None, None
    problem = _problem(entry)
    if problem is None:
        try:
            return _open(entry, key, cdef), None
        except OSError as e:
            problem = f"lib.so cannot be loaded ({e})"
    return None, problem


def _load_fresh(entry: Path, key: str, cdef: str) -> LoadedLibrary:
    try:
        return _open(entry, key, cdef)
    except OSError as e:
        raise CompileError(f"The freshly built library {entry / 'lib.so'} could not be loaded: {e}",
                           c_file=str(entry / "source.c")) from e


def _load_or_build_locked(root: Path, key: str, c_source: Sources, cdef: str, cc: str,
                          flags: list[str]) -> LoadedLibrary:
    """Under the key's lock: reuse what another process built meanwhile, else repair and build."""
    import filelock

    entry = _entry_dir(root, key)
    lock = _lock(root, key)
    try:
        lock.acquire()
    except filelock.Timeout as e:
        raise CacheError(f"Timed out after {LOCK_TIMEOUT_S} s waiting for the cache lock {lock.lock_file}.") from e
    try:
        library, problem = _try_open(entry, key, cdef)
        if library is not None:
            stats["disk_hits"] += 1
            return library
        if problem is not None:
            warnings.warn(f"tracejit cache entry {entry} is broken ({problem}); rebuilding it.", CacheWarning, stacklevel=4)
            _remove_tree(root, entry)
        _build(root, key, c_source, cdef, cc, flags)
        library = _load_fresh(entry, key, cdef)
        size = _entry_size(entry)  # under the lock: no other process removes the entry meanwhile
    finally:
        lock.release()
    if note_growth(root, size):
        _evict(root, keep=entry)
    return library


def get_or_build(c_source: Sources, cdef: str) -> LoadedLibrary:
    """The library compiled from `c_source` (one C text, or a list of translation units linked
    into one library: codegen/c_program.split_kernels), loaded with the declarations `cdef`.

    Lookup order: this process's memory, the disk cache (checksum verified, no lock
    taken), then a build under the key's lock.
    """
    cc = find_compiler()
    flags = default_flags(cc)
    key = cache_key(c_source, flags, compiler_identity(cc))
    library = _loaded.get((key, cdef))
    if library is not None:
        stats["memory_hits"] += 1
        return library
    root = cache_root()
    library, _ = _try_open(_entry_dir(root, key), key, cdef)
    if library is not None:
        stats["disk_hits"] += 1
    else:
        library = _build_here_or_in_a_fallback(root, key, c_source, cdef, cc, flags)
    _loaded[(key, cdef)] = library
    return library


def _build_here_or_in_a_fallback(root: Path, key: str, c_source: Sources, cdef: str, cc: str, flags: list[str]):
    """Build in the cache folder; if it cannot hold the library (full disk, quota, a mount that
    is read-only or noexec), build in a temporary folder used for the rest of this process."""
    try:
        return _load_or_build_locked(root, key, c_source, cdef, cc, flags)
    except (OSError, CompileError) as error:
        wanted = config.cache_dir()
        previous = _fallback_roots.get(wanted)
        fallback = _fallback_root(wanted)
        try:
            library = _load_or_build_locked(fallback, key, c_source, cdef, cc, flags)
        except (OSError, CompileError):  # the code itself does not build: report the first failure
            _fallback_roots.pop(wanted)
            if previous is not None:
                _fallback_roots[wanted] = previous
            shutil.rmtree(fallback, ignore_errors=True)
            raise error from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        warnings.warn(f"tracejit could not build into its cache folder {root} ({reason}); using {fallback} for "
                      "this process. Free some space there, or set TRACEJIT_CACHE_DIR to a writable folder.",
                      CacheWarning, stacklevel=4)
        return library


# ------------------------------------------------------------------ listing and eviction

def _entry_size(entry: Path) -> int:
    """Bytes of the files in an entry folder (scandir knows each file's type without a stat)."""
    with os.scandir(entry) as files:
        return sum(f.stat().st_size for f in files if f.is_file())


def list_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every library entry in the cache, least recently used first. Its size includes the
    program entries linked to it (programs.py), which are removed with it."""
    from .programs import bytes_by_library

    root = root or cache_root()
    linked = bytes_by_library(root)
    entries = []
    for entry in root.glob("??/*"):
        if entry.is_dir() and len(entry.name) == 64:
            try:
                size = _entry_size(entry) + linked.get(entry.name, 0)
                entries.append(CacheEntry(entry.name, entry, size, entry.stat().st_mtime))
            except OSError:
                continue
    return sorted(entries, key=lambda e: e.last_used)


def info() -> dict:
    """Summary for `tracejit cache info`: path, entry count, bytes, oldest/newest last use (epoch s)."""
    root = cache_root()
    entries = list_entries(root)
    return {"path": str(root), "entries": len(entries), "bytes": sum(e.size for e in entries),
            "oldest": entries[0].last_used if entries else None,
            "newest": entries[-1].last_used if entries else None}


def clear() -> int:
    """Delete every entry and scratch file; return how many entries were removed."""
    root = cache_root()
    count = len(list_entries(root))
    for child in root.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    _loaded.clear()
    return count


# The cache's size, kept as a running total so that a build need not list the whole cache (90 ms
# for 900 entries with their metadata in memory, seconds without): each build and each published
# program adds its bytes; only when the total passes the cap, cannot be read, or has been added
# to RECOUNT_EVERY times (entries removed by hand, a process killed between its build and its
# update) is the cache listed, evicted from and the total written anew.
USAGE_FILE = "usage.json"
RECOUNT_EVERY = 64


def note_growth(root: Path, nbytes: int) -> bool:
    """Add `nbytes` (a new entry) to the running total; True when the cache must be listed and
    evicted from now (see above). Never raises: any trouble with the total means listing."""
    import filelock

    try:
        with _lock(root, "usage", timeout=5):
            usage = _read_usage(root)
            if usage is None or usage["updates"] + 1 >= RECOUNT_EVERY:
                return True
            total = usage["bytes"] + int(nbytes)
            if total > config.cache_max_bytes():
                return True
            _write_usage(root, total, usage["updates"] + 1)
            return False
    except (OSError, filelock.Timeout):
        return True


def _read_usage(root: Path) -> dict | None:
    try:
        usage = json.loads((root / USAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(usage, dict) and all(type(usage.get(k)) is int and usage[k] >= 0 for k in ("bytes", "updates"))
    return usage if ok else None


def _write_usage(root: Path, total: int, updates: int) -> None:
    """Replace the total atomically (a reader sees the old file or the new one, never half)."""
    _make_private_dir(root / "tmp")
    fd, tmp = tempfile.mkstemp(dir=root / "tmp", prefix="usage-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"bytes": total, "updates": updates}, f)
        os.replace(tmp, root / USAGE_FILE)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def _evict(root: Path, keep: Path) -> None:
    """Remove least recently used entries until the cache fits TRACEJIT_CACHE_MAX_BYTES, and the
    program links (programs.py) to removed libraries; then record the cache's size anew."""
    import filelock

    entries = list_entries(root)
    total = sum(e.size for e in entries)
    excess = total - config.cache_max_bytes()
    removed = False
    for entry in entries:
        if excess <= 0:
            break
        if entry.path == keep:
            continue
        try:
            with _lock(root, entry.key, timeout=0):
                _remove_tree(root, entry.path)
        except filelock.Timeout:
            continue
        excess -= entry.size
        total -= entry.size
        removed = True
    if removed:
        from .programs import prune

        prune(root)
    try:
        with _lock(root, "usage", timeout=5):
            _write_usage(root, total, 0)
    except (OSError, filelock.Timeout):
        pass  # the next build lists the cache again
