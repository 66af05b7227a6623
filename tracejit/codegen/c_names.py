"""IR value names -> valid, unique C identifiers, so generated C reads like the IR.

`%h1` becomes `h1`, `%0` becomes `v0`, `%params_W1` stays `params_W1`; names that collide with
C keywords, libm functions, loop counters (`i0`, `i1`, ...) or tracejit's own `tj_` symbols
get a suffix.
"""
from __future__ import annotations

import re

C_KEYWORDS = set("""
auto break case char const continue default do double else enum extern float for goto if inline int
long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Imaginary bool true false NULL main
""".split())
LIBC_NAMES = set("""
exp expf log logf log1p log1pf expm1 expm1f sqrt sqrtf tanh tanhf sinh sinhf cosh coshf sin sinf cos cosf
tan tanf atan atanf floor floorf ceil ceilf trunc truncf rint rintf pow powf fabs fabsf fmod fmodf copysign copysignf exp2 exp2f
log2 log2f log10 log10f asin asinf acos acosf asinh asinhf acosh acoshf atanh atanhf cbrt cbrtf atan2
atan2f hypot hypotf malloc free memset memcpy aligned_alloc size_t int32_t int64_t uint32_t uint64_t
INFINITY NAN INT32_MIN INT64_MIN INT32_MAX INT64_MAX omp_set_num_threads
""".split())
LOOP_COUNTER = re.compile(r"^[ij]\d+$")
ABBREVIATIONS = {
    "subtract": "sub", "multiply": "mul", "divide": "div", "negative": "neg", "maximum": "maximum",
    "minimum": "minimum", "reciprocal": "recip", "concatenate": "concat", "broadcast_to": "bcast",
    "greater_equal": "ge", "greater": "gt", "less_equal": "le", "less": "lt", "equal": "eq",
    "not_equal": "ne", "logical_and": "and", "logical_or": "or", "logical_not": "not", "power": "pow",
    "scatter_add": "scatter", "transpose": "transp",
}


class CNames:
    """Hands out C identifiers; the same IR value always gets the same one."""

    def __init__(self):
        self._by_key: dict = {}
        self._taken: set[str] = set()
        self.plain_buffers: set = set()  # values whose storage pointer takes the bare name (inputs, constants)

    def _is_free(self, name: str) -> bool:
        return (name not in self._taken and name not in C_KEYWORDS and name not in LIBC_NAMES
                and not LOOP_COUNTER.match(name) and not name.startswith(("tj_", "TJ_", "__")))

    def fresh(self, hint: str) -> str:
        """A new identifier based on `hint` (made valid, then suffixed until unused)."""
        base = re.sub(r"\W", "_", hint, flags=re.ASCII) or "v"
        if base[0].isdigit() or base.startswith(("tj_", "TJ_", "__")):
            base = "v" + base  # identifiers must not start with a digit; tj_ names are ours
        name, n = base, 1
        while not self._is_free(name):
            name = f"{base}_{n}"
            n += 1
        self._taken.add(name)
        return name

    def of(self, value, suffix: str = "") -> str:
        """The identifier of IR value `value` (+ an optional role suffix such as '_acc')."""
        key = (id(value), suffix)
        if key not in self._by_key:
            self._by_key[key] = self.fresh(value.name + suffix)
        return self._by_key[key]


    def buffer(self, value) -> str:
        """The identifier of the pointer to `value`'s storage. Kernel-written storage gets a
        `_buf` suffix, since the element the kernel computes is a local named after the value."""
        return self.of(value) if id(value) in self.plain_buffers else self.of(value, "_buf")


def kernel_name(index: int, ops: list[str], limit: int = 4) -> str:
    """tj_k{n}_{ops}: the first few distinct op names of the kernel, abbreviated."""
    seen: list[str] = []
    for op in ops:
        short = ABBREVIATIONS.get(op, op)
        if short not in seen:
            seen.append(short)
    return f"tj_k{index}_" + "_".join(seen[:limit])
