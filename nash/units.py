"""Counts and times as people write them on a command line: 200k, 1.5M, 3e5; 2.5ms."""
from __future__ import annotations

import math
import re

from .errors import NashError

_COUNT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?([kmg]?)")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}  # M is mega, never milli: a count has no fractions


class UnitsError(NashError, ValueError):
    pass


def parse_count(text) -> int:
    """A positive whole count: '200k' = 200000, '1.5M' = 1500000, '3G', '250000', '3e5';
    UnitsError for anything else (a fraction of one, a negative, a stray word)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().lower().replace("_", "").replace(",", "")
        m = _COUNT.fullmatch(s)
        if not m:
            raise UnitsError(f"{text!r} is not a count like 200k, 1.5M or 250000")
        digits, exp, suffix = m.groups()
        # exact decimal arithmetic: 1.1M must be 1100000, not 1100000.0000000002 rounded down
        whole, _, frac = digits.partition(".")
        scale = _SUFFIX[suffix] * 10 ** int(exp or 0)
        numer = int(whole or "0") * 10 ** len(frac) + int(frac or "0")
        value, rest = divmod(numer * scale, 10 ** len(frac))
        if rest:
            raise UnitsError(f"{text!r} is not a whole count")
    if value < 1:
        raise UnitsError(f"{text!r}: give a count of at least 1")
    return value


def parse_ms(text) -> float:
    """Positive milliseconds: '2.5', '2.5ms', '1e1'; UnitsError for anything else."""
    s = str(text).strip().lower()
    s = s[:-2].strip() if s.endswith("ms") else s
    try:
        value = float(s)
    except ValueError:
        raise UnitsError(f"{text!r} is not a time in milliseconds like 5, 2.5 or 2.5ms") from None
    if not (math.isfinite(value) and value > 0):
        raise UnitsError(f"{text!r}: give a positive number of milliseconds")
    return value


def format_count(n: int) -> str:
    """n as parse_count reads it back, short where it can be: 200000 -> '200k', 1500000 -> '1.5M'."""
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale and (n * 1000) % scale == 0:  # at most three decimals
            return f"{n / scale:.3f}".rstrip("0").rstrip(".") + suffix
    return str(n)
