"""The system C compiler: finding it, the flags we build with, and one direct build call.

The compiler is run directly with ``subprocess`` (about 35 ms for a small file) rather
than through cffi's setuptools-based ``ffi.compile()`` (about 0.4 s); the result is
loaded in cffi's ABI mode by ``cache.py``.

Facts about a compiler (its ``--version`` line, whether ``-fopenmp`` works) are probed
once and remembered in ``<cache_dir>/toolchain.json``, keyed by the compiler binary's
path, size and mtime, so a warm process never starts the compiler at all.

Sanitizers: with ``TRACEJIT_SANITIZE=1`` the library is built with ASan and UBSan. An
ASan-instrumented ``.so`` cannot be dlopened into an ordinary python, so tests that use
it must run python as a subprocess with the runtime preloaded::

    env = {**os.environ, "TRACEJIT_SANITIZE": "1",
           "LD_PRELOAD": subprocess.check_output(["gcc", "-print-file-name=libasan.so"], text=True).strip(),
           "ASAN_OPTIONS": "detect_leaks=0"}   # python itself "leaks" at exit
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Sequence

from .. import config
from ..errors import CompileError, CompilerNotFoundError

SEARCHED = ("cc", "gcc", "clang")

# Flags that decide what the code computes. -fno-math-errno lets libm calls be pure
# (needed to vectorize them); -ffp-contract=off stops gcc from fusing a*b+c into one
# fma, which rounds differently from numpy; -fwrapv gives signed integers numpy's
# wrap-around overflow instead of C's undefined behaviour. Never -ffast-math.
# -fno-builtin-atan(f): with -fno-math-errno, gcc 12 rewrites sin(atan(x)) as x / sqrt(x*x + 1)
# or copysign(1, x), and cos(atan(x)) likewise, which gives +-1 and 0 for a nan; without the
# builtin it keeps the calls (still vectorized: tracejit.h declares atan's simd versions).
BASE_FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-std=gnu11",
              "-fno-math-errno", "-ffp-contract=off", "-fwrapv", "-fopenmp-simd",
              "-fno-builtin-atan", "-fno-builtin-atanf"]
# Flags that only change how the build runs: -pipe passes assembly between the compiler's
# stages through pipes instead of temporary files (~10 ms of a 0.2 s build).
BUILD_FLAGS = ["-pipe"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g"]

_OPENMP_PROBE = "#include <omp.h>\nint tj_probe(void) { return omp_get_max_threads(); }\n"
_probes: dict[str, dict] = {}
_probe_lock = threading.Lock()
_found: dict[tuple, str] = {}


def _argv(cc: str) -> list[str]:
    """The compiler command as an argv list (CC may carry a wrapper, e.g. 'ccache gcc')."""
    return shlex.split(cc)


def find_compiler() -> str:
    """TRACEJIT_CC or CC if set (it must exist), else the first of cc, gcc, clang on PATH.

    Remembered per (setting, PATH): searching PATH costs ~80 us, too much for every call.
    """
    explicit = config.c_compiler()
    memo_key = (explicit, os.environ.get("PATH"))
    if memo_key not in _found:
        _found[memo_key] = _search_compiler(explicit)
    return _found[memo_key]


def _search_compiler(explicit: str | None) -> str:
    if explicit:
        argv = _argv(explicit)
        path = shutil.which(argv[0]) if argv else None
        if path is None:
            raise CompilerNotFoundError(
                f"The C compiler {explicit!r} (from TRACEJIT_CC or CC) was not found.\n"
                "Set TRACEJIT_CC to a working compiler, e.g. TRACEJIT_CC=gcc, or unset it "
                f"to search PATH for {', '.join(SEARCHED)}.")
        return shlex.join([path, *argv[1:]])
    for name in SEARCHED:
        path = shutil.which(name)
        if path:
            return path
    raise CompilerNotFoundError(
        f"tracejit needs a C compiler and found none: TRACEJIT_CC and CC are unset and none of "
        f"{', '.join(SEARCHED)} is on PATH.\n"
        "Install gcc (e.g. `apt-get install gcc`, `dnf install gcc`, or `xcode-select --install`) "
        "or set TRACEJIT_CC to the compiler's path.")


def _binary_signature(cc: str) -> str:
    """Path, size and mtime of the compiler binary: changes when the compiler is replaced."""
    path = os.path.realpath(_argv(cc)[0])
    st = os.stat(path)
    return f"{cc}|{path}|{st.st_size}|{st.st_mtime_ns}"


def _probe_file() -> Path:
    return config.cache_dir() / "toolchain.json"


def _load_probes() -> dict:
    try:
        data = json.loads(_probe_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_probe(signature: str, facts: dict) -> None:
    """Remember a probe on disk; best effort (atomic replace, failure only costs a re-probe)."""
    path = _probe_file()
    try:
        data = _load_probes()
        data[signature] = facts
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".toolchain-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def _run_probe(cc: str) -> dict:
    """Start the compiler: its version line and whether it can build OpenMP code (both at once)."""
    import subprocess  # here, not at the top: a warm process never starts the compiler

    with tempfile.TemporaryDirectory(prefix="tracejit-probe-") as tmp:
        src = Path(tmp) / "tj_probe_openmp.c"
        src.write_text(_OPENMP_PROBE)
        openmp_cmd = [*_argv(cc), str(src), "-o", str(Path(tmp) / "probe.so"), "-shared", "-fPIC", "-fopenmp"]
        try:
            version = subprocess.Popen([*_argv(cc), "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            with version, subprocess.Popen(openmp_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as openmp:
                out, err = version.communicate(timeout=60)
                openmp_ok = openmp.wait(timeout=120) == 0
        except OSError as e:
            raise CompilerNotFoundError(f"Could not run the C compiler {cc!r}: {e}. Set TRACEJIT_CC to a working "
                                        "compiler.") from e
    lines = (out or err).strip().splitlines()
    return {"identity": lines[0] if lines else cc, "openmp": openmp_ok}


def _probe(cc: str) -> dict:
    """Facts about `cc`, from this process's memo, else toolchain.json, else by running it."""
    facts = _probes.get(cc)
    if facts is None:
        with _probe_lock:  # a probe started in the background (start_probe) is waited for, not repeated
            facts = _probes.get(cc) or _stored_facts(cc)
            if facts is None:
                facts = _run_probe(cc)
                _save_probe(_binary_signature(cc), facts)
            _probes[cc] = facts
    return facts


def _stored_facts(cc: str) -> dict | None:
    facts = _load_probes().get(_binary_signature(cc))
    return facts if isinstance(facts, dict) and isinstance(facts.get("identity"), str) else None


def start_probe(cc: str) -> bool:
    """True if the facts about `cc` are at hand (this process's memo or toolchain.json). Else
    start probing it in a background thread and return False: a new cache folder's probe runs
    the compiler twice (~50-90 ms), which then overlaps the caller's passes and code generation."""
    if cc in _probes:
        return True
    with _probe_lock:
        facts = _stored_facts(cc)
        if facts is not None:
            _probes[cc] = facts
            return True
    threading.Thread(target=_probe_quietly, args=(cc,), name="tracejit-probe", daemon=True).start()
    return False


def _probe_quietly(cc: str) -> None:
    try:
        _probe(cc)
    except Exception:  # noqa: BLE001 - the caller's own _probe() runs it again and raises
        pass


def compiler_identity(cc: str) -> str:
    """First line of `cc --version` (part of the cache key); probed once, then remembered."""
    return _probe(cc)["identity"]


def supports_openmp(cc: str) -> bool:
    """Whether `cc -fopenmp` builds a shared library using omp.h."""
    return bool(_probe(cc)["openmp"])


@functools.cache
def _openblas_dirs() -> tuple[str, str] | None:
    """Header and library folders of the scipy-openblas32 wheel, or None if not installed.

    Same paths as its get_include_dir()/get_lib_dir(), found without importing the package
    (the import costs ~25 ms through importlib.metadata, which a cache hit cannot afford).
    """
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    here = Path(list(spec.submodule_search_locations)[0])
    return str(here / "include"), str(here / "lib")


def default_flags(cc: str | None = None) -> list[str]:
    """Every flag of a build, compile and link, in command order after the source file.

    `--as-needed` drops the BLAS and libgomp from libraries that do not use them, so a
    purely elementwise kernel does not load OpenBLAS (and start its threads) on dlopen.
    """
    cc = cc or find_compiler()
    return list(_flags(cc, config.sanitize(), tuple(config.extra_cflags()), _numpy_has_blas()))


def _numpy_has_blas() -> bool:
    """Whether numpy's own OpenBLAS is there for the generated gemms (runtime/blas.py). Then the
    scipy-openblas32 fallback is compiled out (TJ_NUMPY_BLAS) and not linked: linking it cost
    ~10 ms of each build, and loading it started a second, idle OpenBLAS thread pool."""
    from ..runtime.blas import numpy_blas64

    return numpy_blas64() is not None


@functools.lru_cache(maxsize=64)
def _flags(cc: str, sanitize: bool, extra: tuple[str, ...], numpy_blas: bool) -> tuple[str, ...]:
    flags = list(BASE_FLAGS) + BUILD_FLAGS
    if supports_openmp(cc):
        flags.append("-fopenmp")
    if sanitize:
        flags += SANITIZE_FLAGS
    flags.append(f"-I{config.csrc_dir()}")
    blas = None if numpy_blas else _openblas_dirs()
    if numpy_blas:
        flags.append("-DTJ_NUMPY_BLAS")
    if blas:
        flags.append(f"-I{blas[0]}")
    flags += extra
    flags.append("-Wl,--as-needed")
    if blas:
        flags += [f"-L{blas[1]}", f"-Wl,-rpath,{blas[1]}", "-lscipy_openblas"]
    flags += ["-lmvec", "-lm"]
    return tuple(flags)


def compile_shared(c_source: str | Sequence[str], workdir: Path, name: str, *, cc: str | None = None,
                   flags: list[str] | None = None, failed_dir: Path | None = None,
                   while_compiling: Callable[[], object] | None = None) -> Path:
    """Write `<workdir>/<name>.c`, compile it to `<workdir>/<name>.so`, return the .so path.

    `c_source` may be several translation units (a list): they are written to `<name>.c`,
    `<name>-2.c`, ..., compiled to objects at the same time (one compiler per core) and linked
    into the one library, all with the same flags.
    `while_compiling` runs in this process while the compiler runs in its own (work the caller
    needs next, such as parsing the library's cdef, then costs nothing on 2 cores).
    On failure raise CompileError with the command, the compiler's output and the path of
    the C file that failed, copied to `failed_dir` (if given) so it outlives the work directory.
    """
    cc = cc or find_compiler()
    flags = default_flags(cc) if flags is None else flags
    workdir = Path(workdir)
    units = [c_source] if isinstance(c_source, str) else list(c_source)
    c_files = [workdir / f"{name}{'' if n == 0 else f'-{n + 1}'}.c" for n in range(len(units))]
    so_file = workdir / f"{name}.so"
    for c_file, text in zip(c_files, units):
        c_file.write_text(text)
    if len(units) == 1:
        commands = [[*_argv(cc), str(c_files[0]), "-o", str(so_file), *flags]]
    else:
        objects = [c_file.with_suffix(".o") for c_file in c_files]
        commands = [[*_argv(cc), "-c", str(c), "-o", str(o), *flags] for c, o in zip(c_files, objects)]
    if config.debug_level() >= 3:
        for command, text in zip(commands, units):
            print(f"[tracejit] {shlex.join(command)}\n{text}", file=sys.stderr)
    _run_compilers(commands, c_files, cc, failed_dir, while_compiling)
    if len(units) > 1:
        link = [*_argv(cc), *map(str, objects), "-o", str(so_file), *flags]
        _run_compilers([link], c_files, cc, failed_dir, None)
    if not so_file.exists():
        raise CompileError("The C compiler reported success but wrote no library.", command=commands[-1],
                           c_file=str(_keep_failed(c_files[0], failed_dir)))
    return so_file


def _run_compilers(commands: list[list[str]], c_files: list[Path], cc: str, failed_dir: Path | None,
                   while_compiling: Callable[[], object] | None) -> None:
    """Run the commands at once (command n compiles c_files[n]; a single link command reports
    the first file); raise CompileError for the first that fails."""
    import subprocess

    procs = []
    try:
        for command in commands:
            try:
                procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            except OSError as e:
                raise CompilerNotFoundError(f"Could not run the C compiler {cc!r}: {e}. Set TRACEJIT_CC to a "
                                            "working compiler.") from e
        if while_compiling is not None:
            while_compiling()
        outputs = []
        for proc, command, c_file in zip(procs, commands, c_files):
            try:
                outputs.append(proc.communicate(timeout=600))
            except subprocess.TimeoutExpired as e:
                raise CompileError("The C compiler ran for more than 10 minutes and was stopped.", command=command,
                                   c_file=str(_keep_failed(c_file, failed_dir))) from e
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    for proc, command, c_file, (stdout, stderr) in zip(procs, commands, c_files, outputs):
        if proc.returncode != 0:
            kept = _keep_failed(c_file, failed_dir)
            raise CompileError(f"The C compiler failed (exit status {proc.returncode}) on generated code.",
                               command=command, output=stderr + stdout, c_file=str(kept))


def _keep_failed(c_file: Path, failed_dir: Path | None) -> Path:
    """Copy a C file that failed to compile where the user can read it after we clean up."""
    if failed_dir is None:
        return c_file
    try:
        failed_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept = failed_dir / c_file.name
        shutil.copyfile(c_file, kept)
        return kept
    except OSError:
        return c_file
