"""Wall-clock budgets as people write them: 12h, 90m, 45s, 1h30m, 1.5h."""
from __future__ import annotations

import re
from .errors import NashError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


class BudgetError(NashError, ValueError):
    pass


def parse_budget(text: str) -> float:
    """Seconds in a budget like '12h', '1h30m', '90m', '45s'; BudgetError for anything else."""
    s = str(text).strip().lower().replace(" ", "")
    parts = _PART.findall(s)
    if not s or "".join(n + u for n, u in parts) != s:
        raise BudgetError(f"budget {text!r} is not a duration like 12h, 90m, 45s or 1h30m")
    units = [u for _, u in parts]
    if len(set(units)) != len(units) or units != sorted(units, key="hms".index):
        raise BudgetError(f"budget {text!r}: give each unit once, in the order h, m, s (like 1h30m)")
    seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise BudgetError(f"budget {text!r} is zero; give a positive duration like 5m")
    return seconds
