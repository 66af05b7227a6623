"""`tracejit cache path|info|clear`: the on-disk cache of compiled libraries (compile/cache.py)."""
from __future__ import annotations

import time

from .. import config


def run(opts, color: bool) -> int:
    return {"path": show_path, "info": show_info, "clear": clear}[opts.action](opts)


def show_path(opts) -> int:
    print(config.cache_dir())
    return 0


def show_info(opts) -> int:
    folder = config.cache_dir()
    if not folder.exists():  # do not create the folder just to say it is empty
        print(f"cache:   {folder} (does not exist yet)\nentries: 0")
        return 0
    from ..compile import cache

    entries = cache.list_entries()
    total = sum(e.size for e in entries)
    print(f"cache:   {folder}")
    print(f"entries: {len(entries)}")
    print(f"size:    {human_bytes(total)} (limit {human_bytes(config.cache_max_bytes())}, "
          "set by TRACEJIT_CACHE_MAX_BYTES)")
    if entries:
        print(f"oldest:  {when(entries[0].last_used)}  (least recently used)")
        print(f"newest:  {when(entries[-1].last_used)}")
    if opts.verbose:
        for e in reversed(entries):
            print(f"  {e.key[:16]}  {human_bytes(e.size):>9}  {when(e.last_used)}  {e.path}")
    return 0


def clear(opts) -> int:
    folder = config.cache_dir()
    if not folder.exists():
        print(f"nothing to clear: {folder} does not exist")
        return 0
    from ..compile import cache

    size = sum(e.size for e in cache.list_entries())
    count = cache.clear()
    print(f"removed {count} entr{'y' if count == 1 else 'ies'} ({human_bytes(size)}) from {folder}")
    return 0


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def when(epoch: float) -> str:
    ago = time.time() - epoch
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60)):
        if ago >= seconds:
            return f"{stamp} ({ago / seconds:.0f} {unit} ago)"
    return f"{stamp} ({max(ago, 0):.0f} s ago)"
