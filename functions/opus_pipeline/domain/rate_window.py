"""OpusClip's request budget as arithmetic on a sliding window of grant times. Pure logic.

A sliding window, not a token bucket: OpusClip states its limit as "N requests per minute", and
a bucket that refills continuously would let a burst of N be followed by more within the same
minute. ``MARGIN_SECONDS`` widens the window so that a call granted here and arriving a little
later still falls inside OpusClip's own minute.
"""

from __future__ import annotations

WINDOW_SECONDS = 60.0
MARGIN_SECONDS = 2.0


def recent(grants: list[float], now: float) -> list[float]:
    """The grants still inside the window at ``now``, oldest first."""
    return sorted(t for t in grants if t > now - WINDOW_SECONDS - MARGIN_SECONDS)


def wait_seconds(grants: list[float], per_minute: int, now: float) -> float:
    """0 when a call may go now, else how long until the oldest grant leaves the window."""
    inside = recent(grants, now)
    if len(inside) < per_minute:
        return 0.0
    return inside[-per_minute] + WINDOW_SECONDS + MARGIN_SECONDS - now
