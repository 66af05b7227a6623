"""Example arguments from the command line: `x=f32[128,784]`, `params={W1:f32[784,512],b1:f32[512]}`.

Grammar (whitespace is ignored)::

    value := array | dict | tuple | list | literal
    array := DTYPE '[' [INT {',' INT}] ']'     DTYPE: f32 f64 i32 i64 bool; f32[] is a scalar
    dict  := '{' [KEY ':' value {',' KEY ':' value}] '}'
    tuple := '(' [value {',' value}] ')'       list := '[' ... ']'
    literal := a Python int, float, True, False or None (a weak scalar or a static argument)

Arrays are zeros: tracing reads only shapes and dtypes.
"""
from __future__ import annotations

import re

import numpy as np

from .. import dtypes

DTYPES = {"f32": dtypes.float32, "f64": dtypes.float64, "i32": dtypes.int32, "i64": dtypes.int64,
          "bool": dtypes.bool_}
_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<punct>[\[\](){}:,]))")
_NAMED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<spec>.*)$", re.S)
EXAMPLE = "x=f32[128,784], y=i64[128], lr=0.1 or params={W1:f32[784,512],b1:f32[512]}"


class SpecError(ValueError):
    """A shape spec that does not parse; the message names the spec, the column and the fix."""

    def __init__(self, message: str, column: int = 0):
        super().__init__(message)
        self.column = column


def split_named(text: str) -> tuple[str | None, str]:
    """'x=f32[3]' -> ('x', 'f32[3]'); 'f32[3]' -> (None, 'f32[3]')."""
    match = _NAMED.match(text.strip())
    return (match["name"], match["spec"]) if match else (None, text)


def parse(text: str):
    """The example value a spec describes (numpy zeros for arrays, nested in dicts/tuples/lists)."""
    parser = _Parser(text)
    value = parser.value()
    parser.expect_end()
    return value


def parse_arg(text: str):
    """'x=f32[3]' -> ('x', zeros); 'f32[3]' -> (None, zeros). Errors quote the whole argument."""
    name, spec = split_named(text)
    try:
        return name, parse(spec)
    except SpecError as e:
        offset = len(text) - len(spec)
        raise SpecError(str(e).replace(repr(spec), repr(text), 1).replace(
            f"at column {e.column}", f"at column {e.column + offset}")) from None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0

    def _tokenize(self, text: str) -> list[tuple[str, str, int]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if not match:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise self.error(f"unexpected character {text[col]!r}", col)
            kind = match.lastgroup
            tokens.append((kind, match[kind], match.start(kind)))
            pos = match.end()
        return tokens

    def error(self, message: str, col: int | None = None) -> SpecError:
        if col is None:
            col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        return SpecError(f"bad shape spec {self.text!r}: {message} at column {col + 1} (examples: {EXAMPLE})",
                         col + 1)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, punct: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise self.error(f"expected {punct!r}" if punct else "unexpected end")
        if punct is not None and token[1] != punct:
            raise self.error(f"expected {punct!r}, found {token[1]!r}")
        self.i += 1
        return token

    def expect_end(self) -> None:
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")

    def value(self):
        kind, text, _ = self.take()
        if kind == "num":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            return self._named(text)
        if text == "{":
            return self._dict()
        if text in "([":
            items = self._items(")" if text == "(" else "]")
            return tuple(items) if text == "(" else items
        self.i -= 1
        raise self.error(f"expected an array like f32[3,4], found {text!r}")

    def _named(self, text: str):
        literals = {"True": True, "False": False, "None": None}
        if text in literals:
            return literals[text]
        if text not in DTYPES:
            self.i -= 1
            raise self.error(f"unknown dtype {text!r} (use one of {', '.join(DTYPES)})")
        shape = self._shape() if self.peek() is not None and self.peek()[1] == "[" else ()
        return np.zeros(shape, DTYPES[text])

    def _shape(self) -> tuple[int, ...]:
        self.take("[")
        dims = []
        while self.peek() is not None and self.peek()[1] != "]":
            kind, text, col = self.take()
            if kind != "num" or not text.isdigit():
                raise self.error(f"a dimension must be a whole number >= 0, found {text!r}", col)
            dims.append(int(text))
            if self.peek() is not None and self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return tuple(dims)

    def _items(self, close: str) -> list:
        items = []
        while self.peek() is not None and self.peek()[1] != close:
            items.append(self.value())
            if self.peek() is not None and self.peek()[1] == ",":
                self.take(",")
            elif self.peek() is None or self.peek()[1] != close:
                raise self.error(f"expected ',' or {close!r}")
        self.take(close)
        return items

    def _dict(self) -> dict:
        out = {}
        while self.peek() is not None and self.peek()[1] != "}":
            kind, key, col = self.take()
            if kind not in ("name", "str", "num"):
                raise self.error(f"expected a key, found {key!r}", col)
            self.take(":")
            out[key.strip("'\"")] = self.value()
            if self.peek() is not None and self.peek()[1] == ",":
                self.take(",")
            elif self.peek() is None or self.peek()[1] != "}":
                raise self.error("expected ',' or '}'")
        self.take("}")
        return out
