"""The cache's second level: a *traced* graph -> its compiled library and what the runtime needs.

A warm process should not optimize, fuse, generate C and hash it only to find a library it
already has: that work cost ~70 ms of the 0.1 s a cache hit took for an MLP step. So after a
build, the traced graph's key is linked to the library, with the little an Executable needs
to run it: the cffi type tables of the cdef (loading them needs no C parser), the error
messages, the workspace bytes and the large constants passed by pointer. The IR after the
passes, the kernel list and the C source are recomputed only if someone asks for them.

Layout: ``<cache_dir>/programs/<key[:2]>/<key>/`` holds ``program.json`` and one
``hidden-<n>.bin`` per large constant. The key hashes the graph's text (every node, param,
type and source line), the bytes of every array in it, the entry name, the stat of every
tracejit source file (a changed pass must not find an old program), the compiler, its
flags, the CPU and the headers.

Guarantees, as for libraries (cache.py): an entry is written in ``tmp/`` and renamed into
place whole; program.json carries a sha256 of its own content and of each constant file;
a broken entry is removed under the key's lock with a CacheWarning and rebuilt; a path
others can write is refused with CacheError. An entry whose library was evicted is a plain
miss (no warning): the full pipeline rebuilds both.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._version import __version__
from ..errors import CompilerNotFoundError
from ..ir.graph import Graph
from ..ir.printer import format_graph
from . import declarations, entries, toolchain
from .entries import CacheWarning, LoadedLibrary
from .toolchain import compiler_identity, default_flags, find_compiler

PROGRAMS = "programs"
stats = {"hits": 0, "published": 0}


class ProgramRecord(NamedTuple):
    """What Executable needs from a generated Program to run it, without its source."""

    library_key: str
    cdef: str
    hidden: list  # np.ndarray constants passed after the outputs
    errors: list  # tj_main's return code n means errors[n - 1]
    peak_temp_bytes: int


# ---------------------------------------------------------------------------------- the key

def ready_key(graph: Graph, name: str) -> str | None:
    """program_key, or None when it would wait for the compiler: while a new cache folder's
    compiler facts are probed in the background (the caller runs the pipeline meanwhile; there is
    nothing to look up in a folder without them), or when there is no compiler (an interpreted
    program needs none; a compiled one reports it when it builds)."""
    try:
        if not toolchain.start_probe(find_compiler()):
            return None
    except CompilerNotFoundError:
        return None
    return program_key(graph, name)


def program_key(graph: Graph, name: str) -> str:
    """sha256 over everything that decides the program built from the traced `graph`."""
    cc = find_compiler()
    h = hashlib.sha256()
    for part in (__version__, _sources_digest(), name, format_graph(graph), "\0".join(default_flags(cc)),
                 compiler_identity(cc), entries._cpu_identity(), entries._headers_digest()):
        h.update(part.encode() + b"\0\1")
    for array in _arrays(graph):  # the text abbreviates arrays; their bytes decide the program
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _arrays(graph: Graph):
    for node in graph.nodes:
        for value in node.params.values():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, np.ndarray):
                    yield item
        for sub in node.subgraphs():
            yield from _arrays(sub)


@functools.cache
def _sources_digest() -> str:
    """Path, size and mtime of every tracejit source file: stat only, ~0.3 ms for the package."""
    h = hashlib.sha256()
    for path, st in sorted(_source_stats(str(Path(__file__).resolve().parent.parent), "")):
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _source_stats(folder: str, relative: str):
    with os.scandir(folder) as entries:
        for item in entries:
            if item.is_dir() and item.name != "__pycache__":
                yield from _source_stats(item.path, f"{relative}{item.name}/")
            elif item.name.endswith(".py"):
                yield f"{relative}{item.name}", item.stat()


# --------------------------------------------------------------------------------- lookup

def lookup(key: str) -> tuple[LoadedLibrary, ProgramRecord] | None:
    """The library and record published for `key`, loaded; None on a miss (then build it)."""
    root = entries.cache_root()
    entry = _entry_dir(root, key)
    if not os.path.lexists(entry):
        return None
    found, problem = _try_load(root, entry)
    if problem is not None:
        _remove_broken(root, entry, key)
        return None
    if found is not None:
        stats["hits"] += 1
        entries.stats["disk_hits"] += 1
    return found


def _entry_dir(root: Path, key: str) -> Path:
    return root / PROGRAMS / key[:2] / key


def _try_load(root: Path, entry: Path):
    """((library, record), None) if sound; (None, None) if its library is gone or unusable (the
    full pipeline repairs that, with cache.py's warning); (None, why) if the entry is broken."""
    try:
        stored, problem = _read(entry)
    except OSError as e:
        return None, f"unreadable ({e})"
    if problem is not None:
        return None, problem
    record = stored.record
    library_entry = entries._entry_dir(root, record.library_key)
    if not library_entry.is_dir() or entries._problem(library_entry) is not None:
        return None, None
    try:
        ffi = declarations.ffi_from_tables(stored.ffi_tables)
    except Exception as e:  # noqa: BLE001 - tables from another cffi: any failure means rebuild
        return None, f"its cffi tables do not load ({type(e).__name__}: {e})"
    try:
        library = entries._open_with(ffi, library_entry, record.library_key)
    except OSError:
        return None, None
    return (library, record), None


class _Stored(NamedTuple):
    ffi_tables: dict  # declarations.ffi_tables of record.cdef
    record: ProgramRecord


def _read(entry: Path) -> tuple[_Stored | None, str | None]:
    for path in (entry.parent, entry):
        entries._check_private(path)
    if not entry.is_dir():
        return None, "it is not a folder"
    path = entry / "program.json"
    if not path.exists():
        return None, "program.json is missing"
    entries._check_private(path)
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:
        return None, f"program.json is unreadable ({e})"
    problem = _meta_problem(meta)
    if problem is not None:
        return None, problem
    hidden = []
    for n, spec in enumerate(meta["hidden"]):
        array, problem = _read_hidden(entry / f"hidden-{n}.bin", spec)
        if problem is not None:
            return None, problem
        hidden.append(array)
    record = ProgramRecord(meta["library"], meta["cdef"], hidden, meta["errors"], meta["peak_temp_bytes"])
    return _Stored(meta["ffi"], record), None


def _meta_problem(meta) -> str | None:
    if not isinstance(meta, dict) or meta.get("version") != __version__:
        return "program.json is malformed or from another tracejit version"
    if meta.get("checksum") != _checksum(meta):
        return "program.json does not match its checksum"
    return None  # the checksum covers the fields' types too: we wrote them


def _read_hidden(path: Path, spec: dict) -> tuple[np.ndarray | None, str | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        return None, f"{path.name} does not match its checksum"
    return np.frombuffer(data, np.dtype(spec["dtype"])).reshape(spec["shape"]).copy(), None  # copy: aligned


def _checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _remove_broken(root: Path, entry: Path, key: str) -> None:
    """Under the key's lock (one process repairs it), re-check, warn and remove the entry."""
    import filelock

    from . import cache

    try:
        with cache._lock(root, key):
            problem = _try_load(root, entry)[1] if os.path.lexists(entry) else None
            if problem is None:
                return  # another process repaired it meanwhile
            warnings.warn(f"tracejit cache entry {entry} is broken ({problem}); rebuilding it.", CacheWarning,
                          stacklevel=5)
            if entry.is_dir():
                cache._remove_tree(root, entry)
            else:
                entry.unlink(missing_ok=True)
    except filelock.Timeout:
        pass  # the holder repairs it; this process just builds


# ------------------------------------------------------------------------------- publish

def publish(key: str, library: LoadedLibrary, cdef: str, hidden: list, errors: list, peak_temp_bytes: int) -> None:
    """Link `key` to the library just built or loaded; best effort (a failure only costs a later
    warm start the full pipeline). Entries are content-addressed: an existing one is kept."""
    root = entries.cache_root()
    if Path(library.path).parent != entries._entry_dir(root, library.key):
        return  # the library lives elsewhere (a fallback folder): nothing to link to here
    entry = _entry_dir(root, key)
    if os.path.lexists(entry):
        return
    try:
        _write(root, entry, library.key, cdef, hidden, errors, peak_temp_bytes)
        stats["published"] += 1
    except OSError:
        return
    from . import cache

    try:
        cache.note_growth(root, cache._entry_size(entry))  # counted now, evicted at the next build if need be
    except OSError:
        pass


def _write(root: Path, entry: Path, library_key: str, cdef, hidden, errors, peak_temp_bytes) -> None:
    entries._make_private_dir(root / "tmp")
    work = Path(tempfile.mkdtemp(dir=root / "tmp", prefix="program-"))
    try:
        specs = []
        for n, array in enumerate(hidden):
            data = np.ascontiguousarray(array).tobytes()
            (work / f"hidden-{n}.bin").write_bytes(data)
            specs.append({"dtype": np.dtype(array.dtype).str, "shape": list(array.shape),
                          "sha256": hashlib.sha256(data).hexdigest()})
        meta = {"version": __version__, "library": library_key, "cdef": cdef, "ffi": declarations.ffi_tables(cdef),
                "errors": list(errors), "peak_temp_bytes": int(peak_temp_bytes), "hidden": specs}
        meta["checksum"] = _checksum(meta)
        (work / "program.json").write_text(json.dumps(meta, indent=1))
        for path in work.iterdir():
            os.chmod(path, 0o600)
        for folder in (root / PROGRAMS, entry.parent):
            entries._make_private_dir(folder)
        os.rename(work, entry)  # fails if another process published it first: theirs is the same
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prune(root: Path) -> None:
    """Remove program entries whose library is gone (after an eviction)."""
    from . import cache

    for entry, library_key in _linked_entries(root):
        if not entries._entry_dir(root, library_key).exists():
            cache._remove_tree(root, entry)


def bytes_by_library(root: Path) -> dict[str, int]:
    """Bytes of the program entries linked to each library key. The size cap counts them with
    their library (a large constant makes a large program entry), and they go with it."""
    from . import cache

    sizes: dict[str, int] = {}
    for entry, library_key in _linked_entries(root):
        try:
            sizes[library_key] = sizes.get(library_key, 0) + cache._entry_size(entry)
        except OSError:
            continue  # removed meanwhile
    return sizes


def _linked_entries(root: Path):
    """(program entry, its library key) for every readable program entry; broken ones are
    repaired when looked up, not here."""
    for entry in (root / PROGRAMS).glob("??/*"):
        try:
            yield entry, json.loads((entry / "program.json").read_text())["library"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
