"""Every TRACEJIT_* environment variable and its default, read in one place."""
from __future__ import annotations

import os
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def cache_dir() -> Path:
    """TRACEJIT_CACHE_DIR, else the user's cache folder (platformdirs), read at each call so tests can set it."""
    explicit = _env("TRACEJIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("tracejit"))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "tracejit"


def debug_level() -> int:
    """TRACEJIT_DEBUG: 1 traced IR, 2 IR after each pass and the fusion groups, 3 C and compiler command."""
    try:
        return int(_env("TRACEJIT_DEBUG", "0"))
    except ValueError:
        return 0


def c_compiler() -> str | None:
    """TRACEJIT_CC, else CC, else None (the toolchain then searches cc, gcc, clang)."""
    return _env("TRACEJIT_CC") or _env("CC")


def extra_cflags() -> list[str]:
    """TRACEJIT_CFLAGS: extra flags appended to the compiler command (part of the cache key)."""
    return (_env("TRACEJIT_CFLAGS", "") or "").split()


def num_threads() -> int:
    """TRACEJIT_NUM_THREADS: threads for generated loops and the BLAS (default: the cores)."""
    value = _env("TRACEJIT_NUM_THREADS")
    if value:
        return max(1, int(value))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def num_threads_set() -> bool:
    """Whether the user chose TRACEJIT_NUM_THREADS (then it also sizes numpy's BLAS pool)."""
    return bool(_env("TRACEJIT_NUM_THREADS"))


def gemm() -> str:
    """TRACEJIT_GEMM: whose gemm the generated float32/float64 matmuls call. `tracejit` (default):
    tracejit's own (csrc/gemm.c), on the OpenMP pool of the loops, where the CPU has AVX-512;
    `blas`: numpy's OpenBLAS."""
    value = (_env("TRACEJIT_GEMM", "tracejit") or "tracejit").lower()
    if value not in ("tracejit", "blas"):
        raise ValueError(f"TRACEJIT_GEMM={value!r}: expected 'tracejit' or 'blas'")
    return value


def sanitize() -> bool:
    """TRACEJIT_SANITIZE=1 compiles generated C with AddressSanitizer and UBSan."""
    return _env("TRACEJIT_SANITIZE", "0") not in ("0", "false", "no")


def dump_dir() -> Path | None:
    """TRACEJIT_DUMP=DIR writes IR and C of every compiled function under DIR."""
    value = _env("TRACEJIT_DUMP")
    return Path(value) if value else None


def cache_max_bytes() -> int:
    """TRACEJIT_CACHE_MAX_BYTES: size cap of the disk cache; least recently used entries go first."""
    return int(_env("TRACEJIT_CACHE_MAX_BYTES", str(1 << 30)))


def pool_bytes() -> int:
    """TRACEJIT_POOL_BYTES: idle bytes of large outputs kept for reuse (default 256 MiB; 0 turns it off).

    Outputs of 256 KiB or more are allocated from a pool: when such an array dies its block is kept,
    and the next call needing about that size reuses it with its pages already mapped, instead of
    having the kernel map, fault in and zero fresh ones (3.4 ms of an 8 ms call making 40 MB). The
    price is memory: up to this many bytes stay allocated while no array uses them, the most
    recently freed first; a block larger than the cap is never kept, so a function that makes one
    1 GB output once does not hold on to it. Read once, when the first function is compiled."""
    value = _env("TRACEJIT_POOL_BYTES", str(256 << 20))
    try:
        cap = int(value)
    except ValueError:
        cap = -1
    if cap < 0:
        raise ValueError(f"TRACEJIT_POOL_BYTES={value!r}: set it to a byte count >= 0 (0 turns the pool off)")
    return cap


def csrc_dir() -> Path:
    """Folder of the hand-written C headers that generated code includes."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "csrc", here / "_csrc"):  # source tree, installed wheel
        if (candidate / "tracejit.h").exists():
            return candidate
    return here.parent / "csrc"
