"""Records of compiled functions: what `tracejit dump` shows and what TRACEJIT_DUMP=DIR writes.

`Jitted._compile` calls `record(...)` once per new signature. That costs one dict check unless
someone listens: the CLI's script mode (a collector) or TRACEJIT_DUMP=DIR (written to disk).

Layout of a dump folder, one subfolder per function and signature::

    DIR/index.md, DIR/index.json          every entry: function, signature, folder, source file
    DIR/<name>-<hash8>/traced.ir          the graph as traced (forward and backward when grad is used)
    DIR/<name>-<hash8>/optimized.ir       after the passes, with its fused kernels
    DIR/<name>-<hash8>/kernel.c           the generated C
    DIR/<name>-<hash8>/function.py        readable numpy source of the graph (when available)
    DIR/<name>-<hash8>/meta.json          what the index is rebuilt from

The hash covers the source file, the function's qualified name and its signature, so the same
function and signature land in the same folder run after run (handy for diffing dumps).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import config

FILES = {"traced_ir": "traced.ir", "optimized_ir": "optimized.ir", "c_source": "kernel.c", "python": "function.py"}
_collectors: list = []  # callables receiving each Record (the CLI's script mode)


@dataclass
class Record:
    """One compiled function and signature, as text."""

    name: str
    signature: str  # "x:f32[128,784], y:i64[128]" plus static values
    source: str  # "path/to/file.py:LINE" of the function's definition
    traced_ir: str
    optimized_ir: str
    c_source: str
    python: str | None = None
    created: float = field(default_factory=time.time)

    @property
    def folder(self) -> str:
        digest = hashlib.sha256(f"{self.source}\0{self.name}\0{self.signature}".encode()).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9_.]+', '_', self.name).strip('_') or 'function'}-{digest}"

    @property
    def title(self) -> str:
        return f"{self.name}({self.signature})"


# ---- building a record --------------------------------------------------------------------------
def describe(lowered, name: str | None = None, fun=None, static=()) -> Record:
    """A Record of a `Lowered` (compiles it if it is not compiled yet)."""
    executable = lowered.compile()
    graph = lowered.traced.graph
    return Record(
        name=name or graph.name,
        signature=signature_text(graph, static),
        source=source_of(fun),
        traced_ir=lowered.traced_ir,
        optimized_ir=optimized_text(executable),
        c_source=executable.c_source,
        python=python_text(getattr(executable, "graph", graph)),  # the optimized graph, as make_ir shows
    )


def signature_text(graph, static=()) -> str:
    text = ", ".join(f"{v.name}:{v.type_str}" for v in graph.inputs)
    if static:
        text += "; static " + ", ".join(f"{k}={v!r}" for k, v in static)
    return text


def source_of(fun) -> str:
    code = getattr(getattr(fun, "fun", fun), "__code__", None)  # a Jitted keeps the user's function in .fun
    return f"{code.co_filename}:{code.co_firstlineno}" if code else "<unknown>"


def optimized_text(executable) -> str:
    """The optimized IR; the executable's kernel listing follows when the backend provides one."""
    kernels = getattr(executable, "kernels_text", None)
    text = executable.ir_text
    if kernels and kernels not in text:
        text = f"{text.rstrip()}\n\n{kernels.rstrip()}"
    return text.rstrip() + "\n"


def python_text(graph) -> str | None:
    """Readable numpy source of a graph, if the renderer (ir/pyrender) exists in this tracejit."""
    try:
        from .ir.python import to_python
    except ImportError:
        return None
    try:
        return to_python(graph)
    except Exception as exc:  # a renderer gap must not lose the rest of the dump
        return f"# the numpy renderer failed on this graph: {exc}\n"


# ---- the hook ---------------------------------------------------------------------------------
def record(jitted, key, lowered) -> None:
    """Called by Jitted._compile after each new compile; cheap when nobody listens."""
    out_dir = config.dump_dir()
    if not _collectors and out_dir is None:
        return
    static = tuple((f"arg{k}" if isinstance(k, int) else k, v) for k, v in key[2]) if key else ()
    try:
        rec = describe(lowered, name=jitted.__name__, fun=jitted, static=static)
        for collect in list(_collectors):
            collect(rec)
        if out_dir is not None:
            write(out_dir, rec)
    except Exception as exc:  # a failed dump must not stop the user's program
        warnings.warn(f"tracejit could not dump {jitted.__name__}: {type(exc).__name__}: {exc}", stacklevel=3)


class collecting:
    """`with collecting() as records:` gathers a Record for every function compiled inside."""

    def __enter__(self) -> list[Record]:
        self.records: list[Record] = []
        _collectors.append(self.records.append)
        return self.records

    def __exit__(self, *exc):
        _collectors.remove(self.records.append)


# ---- writing a dump folder ---------------------------------------------------------------------
def write(out_dir, rec: Record) -> Path:
    """Write one record's subfolder and refresh the index; returns the subfolder."""
    import filelock

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(out_dir / ".lock")):
        folder = out_dir / rec.folder
        folder.mkdir(exist_ok=True)
        for attr, filename in FILES.items():
            text = getattr(rec, attr)
            if text is not None:
                _write_atomic(folder / filename, text)
        meta = {k: v for k, v in asdict(rec).items() if k not in FILES}
        _write_atomic(folder / "meta.json", json.dumps(dict(meta, folder=rec.folder), indent=1))
        write_index(out_dir)
    return folder


def _write_atomic(path: Path, text: str) -> None:
    """Readers (and concurrent writers) see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


def read_entries(out_dir) -> list[dict]:
    """The meta.json of every subfolder, oldest first (what the index lists)."""
    entries = []
    for meta_path in Path(out_dir).glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["files"] = sorted(p.name for p in meta_path.parent.iterdir() if p.name in FILES.values())
        entries.append(meta)
    return sorted(entries, key=lambda m: (m.get("created", 0), m.get("folder", "")))


def write_index(out_dir) -> None:
    """index.json (for tools) and index.md (for people), rebuilt from the subfolders on disk."""
    out_dir = Path(out_dir)
    entries = read_entries(out_dir)
    _write_atomic(out_dir / "index.json", json.dumps({"functions": entries}, indent=1))
    lines = ["# tracejit dump", "", f"{len(entries)} compiled function(s). Each folder holds "
             "traced.ir, optimized.ir (with its kernels) and kernel.c.", "",
             "| function | signature | folder | defined at |", "|---|---|---|---|"]
    for m in entries:
        sig = m.get("signature", "").replace("|", "\\|")
        lines.append(f"| `{m.get('name')}` | `{sig}` | [{m['folder']}/]({m['folder']}/) | {m.get('source')} |")
    _write_atomic(out_dir / "index.md", "\n".join(lines))
