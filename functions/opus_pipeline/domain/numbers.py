"""Numbers in OpusClip's answers, as Python's JSON reader hands them over. Pure logic.

Python reads NaN, Infinity and integers of any length from JSON; none of them is a number a float
holds, and ``math.isfinite`` raises ``OverflowError`` on an integer of 309 digits or more. Every
reader of a rank, a score, a time range or a creation moment asks here, so that such a value is
left out as unknown, never a conclusion that fails for good.
"""

from __future__ import annotations

import math


def finite(value: object) -> float | None:
    """``value`` as a float when it is a JSON number a float holds; None for anything else (a bool,
    text, NaN, an infinity, an integer too large)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
