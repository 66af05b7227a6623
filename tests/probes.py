"""Process probes the leak and thread tests share (not a test module)."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def rss_kb() -> int:
    """Resident set size of this process, in kB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_threads(work, n: int, with_index: bool = True) -> list:
    """Run work(k) (or work()) on n threads at once; the exceptions they raised, for the caller to assert on."""
    errors: list = []

    def guarded(k):
        try:
            work(k) if with_index else work()
        except Exception as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def builds_logged(log: Path) -> int:
    """Library builds in the logging_cc wrapper's log (the --version and OpenMP probes are not
    builds; a program of two translation units is built by two `-c` compiles and one link: the
    link counts)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return sum("/build-" in line and not line.startswith("-c ") for line in lines)
