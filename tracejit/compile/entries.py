"""The cache's read side: folders and their safety, one entry's soundness, loading a library.

What a warm process needs to find and load a program (programs.py), kept apart from building,
locking and eviction (cache.py), so that a warm start neither imports nor compiles the rest.
Layout, keys and guarantees: see cache.py.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .. import config
from .._version import __version__
from ..errors import CacheError

if TYPE_CHECKING:
    import cffi

stats = {"compiles": 0, "disk_hits": 0, "memory_hits": 0}
_fallback_roots: dict[Path, Path] = {}


class CacheWarning(UserWarning):
    """A cache entry was broken and has been rebuilt, or the cache folder is unusable."""


class LoadedLibrary:
    """A shared library opened with cffi in ABI mode: call its functions as `.lib.<name>(...)`."""

    __slots__ = ("ffi", "lib", "path", "key", "source_path")

    def __init__(self, ffi: "cffi.FFI", lib, path: Path, key: str, source_path: Path):
        self.ffi, self.lib, self.path, self.key, self.source_path = ffi, lib, path, key, source_path

    def __repr__(self) -> str:
        return f"LoadedLibrary(key={self.key[:12]}..., path={str(self.path)!r})"



# ---------------------------------------------------------------------------- the key

@functools.cache
def _cpu_identity() -> str:
    """What -march=native depends on: the machine, the CPU's model and feature flags (of the first
    processor listed). Not platform.processor(): it starts `uname -p`, ~14 ms of a warm start."""
    wanted = ("model name", "flags", "vendor_id")
    lines = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key.strip() in wanted:
                    lines[key.strip()] = value.strip()
    except OSError:
        pass
    return f"{os.uname().machine}|" + "|".join(lines.get(k, "") for k in wanted)


@functools.cache
def _headers_digest() -> str:
    """Hash of csrc/*.h, which every generated file includes."""
    h = hashlib.sha256()
    for path in sorted(config.csrc_dir().glob("*.h")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# ------------------------------------------------------------------- folders and safety

def _check_private(path: Path) -> None:
    """Refuse code from a path others can write: they could make us load anything. That is a
    path with group/other write permission, or one owned by another user (root excepted)."""
    st = os.stat(path)
    if st.st_mode & 0o022:
        raise CacheError(
            f"tracejit refuses to use the cache path {path}: it is writable by group or others "
            f"(mode {oct(st.st_mode & 0o777)}), and the cache holds code loaded into this process.\n"
            f"Fix it with `chmod go-w {path}`, or set TRACEJIT_CACHE_DIR to a private folder.")
    if st.st_uid not in (os.geteuid(), 0):
        raise CacheError(
            f"tracejit refuses to use the cache path {path}: it belongs to user id {st.st_uid}, not to you "
            f"(user id {os.geteuid()}), who could replace the code it holds and this process loads.\n"
            "Set TRACEJIT_CACHE_DIR to a folder of your own.")


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)


def cache_root() -> Path:
    """The cache folder, created 0o700 if missing; a private temp folder if it is not writable."""
    wanted = config.cache_dir()
    if wanted in _fallback_roots:
        return _fallback_roots[wanted]
    try:
        wanted.parent.mkdir(parents=True, exist_ok=True)
        _make_private_dir(wanted)
        if not os.access(wanted, os.W_OK | os.X_OK):
            raise PermissionError("no write permission")
    except OSError as e:
        fallback = _fallback_root(wanted)
        warnings.warn(f"tracejit cannot write its cache folder {wanted} ({e}); using {fallback} for this "
                      "process. Set TRACEJIT_CACHE_DIR to a writable folder.", CacheWarning, stacklevel=3)
        return fallback
    _check_private(wanted)
    return wanted


def _fallback_root(wanted: Path) -> Path:
    """A private temporary cache folder standing in for `wanted` for the rest of this process."""
    fallback = Path(tempfile.mkdtemp(prefix="tracejit-cache-"))
    _fallback_roots[wanted] = fallback
    return fallback


def _entry_dir(root: Path, key: str) -> Path:
    return root / key[:2] / key


# --------------------------------------------------------------------- entries on disk

def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _problem(entry: Path) -> str | None:
    """Why `entry` cannot be used as is (None if it is sound). Raises CacheError if unsafe."""
    for path in (entry.parent, entry, entry / "lib.so"):
        if path.exists():
            _check_private(path)
    try:
        meta = json.loads((entry / "meta.json").read_text())
        checksum = _sha256_file(entry / "lib.so")
        if not (entry / "source.c").is_file():
            return "source.c is missing"
    except FileNotFoundError as e:
        return f"{Path(e.filename).name} is missing"
    except (OSError, ValueError) as e:
        return f"meta.json is unreadable ({e})"
    if not isinstance(meta, dict) or meta.get("version") != __version__:
        return "meta.json is malformed or from another tracejit version"
    if meta.get("checksum") != checksum:
        return "lib.so does not match the checksum in meta.json"
    return None


def _open_with(ffi, entry: Path, key: str) -> LoadedLibrary:
    """dlopen an entry with a ready FFI (cffi's, or _cffi_backend's from programs.py)."""
    lib = ffi.dlopen(str(entry / "lib.so"))
    try:
        os.utime(entry)
    except OSError:
        pass
    return LoadedLibrary(ffi, lib, entry / "lib.so", key, entry / "source.c")
