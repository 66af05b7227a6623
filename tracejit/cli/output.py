"""Terminal output: syntax colouring (only on a terminal), section headers, a progress line.

Colour follows the usual conventions: `--color always|never|auto`; auto means stdout is a
terminal, NO_COLOR is unset and TERM is not "dumb". C and Python are coloured with Pygments
when it happens to be installed (it is not a dependency); the IR has its own small colourer.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback

RESET, BOLD, DIM = "\033[0m", "\033[1m", "\033[2m"
CYAN, GREEN, YELLOW, MAGENTA, BLUE = "\033[36m", "\033[32m", "\033[33m", "\033[35m", "\033[34m"

# One pass over an IR line: comments, %values, types, keywords, primitive names after '='.
_IR_TOKENS = re.compile(
    r"(?P<comment>#.*$)|(?P<value>%[A-Za-z0-9_.]+)|(?P<type>\b(?:f32|f64|i32|i64|bool)\[[0-9,]*\])"
    r"|(?P<keyword>\b(?:def|return)\b)|(?P<prim>(?<== )[a-z_][a-z0-9_]*)",
    re.M,
)
_IR_STYLE = {"comment": DIM, "value": CYAN, "type": GREEN, "keyword": BOLD + MAGENTA, "prim": YELLOW}


def want_color(mode: str, stream=None) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", lambda: False)
    return bool(isatty()) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def highlight(text: str, language: str, color: bool) -> str:
    """`text` coloured as `language` ('ir', 'c', 'py') when colour is on; otherwise unchanged."""
    if not color:
        return text
    if language == "ir":
        return _IR_TOKENS.sub(lambda m: f"{_IR_STYLE[m.lastgroup]}{m[0]}{RESET}", text)
    return _pygments(text, language)


def _pygments(text: str, language: str) -> str:
    try:
        from pygments import highlight as render
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import CLexer, PythonLexer
    except ImportError:
        return text
    lexer = CLexer() if language == "c" else PythonLexer()
    return render(text, lexer, TerminalFormatter()).rstrip("\n") + ("\n" if text.endswith("\n") else "")


def header(title: str, color: bool) -> str:
    line = f"==== {title} ===="
    return f"{BOLD}{BLUE}{line}{RESET}" if color else line


class progress:
    """`with progress("compiling loss"):` shows 'compiling loss ... 1.3 s' on stderr after a
    short delay, updating until the block ends, then erases it. Silent unless stderr is a terminal."""

    DELAY_S, EVERY_S = 0.4, 0.1

    def __init__(self, message: str, stream=None):
        self.message = message
        self.stream = stream or sys.stderr
        self._done = threading.Event()
        self._shown = False

    def __enter__(self):
        if getattr(self.stream, "isatty", lambda: False)():
            self._start = time.perf_counter()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        if self._done.wait(self.DELAY_S):
            return
        while not self._done.wait(self.EVERY_S):
            self._shown = True
            self.stream.write(f"\r{self.message} ... {time.perf_counter() - self._start:.1f} s")
            self.stream.flush()

    def __exit__(self, *exc):
        self._done.set()
        if hasattr(self, "_thread"):
            self._thread.join()
            if self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()


def print_traceback(exc: BaseException, *, only_user_frames: bool, stream=None) -> None:
    """A traceback without the command's own frames (runpy, tracejit.cli); with only_user_frames,
    without tracejit's and numpy's either, so an error in traced code points at the user's lines."""
    from ..errors import _is_internal

    cli_dir = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and (frames[0].filename.startswith((cli_dir, "<frozen")) or
                      "runpy" in os.path.basename(frames[0].filename)):
        frames.pop(0)
    if only_user_frames:
        frames = [f for f in frames if not _is_internal(f.filename)]
    stream = stream or sys.stderr
    if frames:
        stream.write("Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)))
    stream.write("".join(traceback.format_exception_only(exc)))
