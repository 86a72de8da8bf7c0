"""OpusClip's request budget as arithmetic on a sliding window of grant times. Pure logic.

A sliding window, not a token bucket: OpusClip states its limit as "N requests per minute", and
a bucket that refills continuously would let a burst of N be followed by more within the same
minute. ``MARGIN_SECONDS`` widens the window so that a call granted here and arriving a little
later still falls inside OpusClip's own minute. ``free_slots`` spreads the window over one slot
per allowed call, so that no single stored object is written once per call (Cloud Storage allows
about one write per second to one object).
"""

from __future__ import annotations

from collections.abc import Mapping
from random import Random

WINDOW_SECONDS = 60.0
MARGIN_SECONDS = 2.0
# Upload links take at most this share of the window while a slot's worth of videos already waits
# uploaded (ingest's ``_link_share``): those run ahead of the project slots, so nothing is gained by
# asking for every link of a folder at once, and each one asked early is a call the slots' turnovers
# (create, look, clips, transcript) miss a minute later: 100 links in a burst's first half minute
# stalled every project call at the window's end. A fifth still lets 6 uploads a minute start at 30
# requests a minute.
UPLOAD_LINK_SHARE = 0.2
# A call that only prepares a video (its upload link) never takes the window's last twentieth: that is
# left to the calls that turn project slots (create, look, clips, transcript). A link can wait; a
# turnover held up holds a slot idle. At five calls a video the projects and their links fill about
# 97% of the window when the slots turn over fast, and links granted in the window's last room made
# turnovers wait for the window's oldest call to leave it.
PREPARING_CALLS = frozenset({"/api/upload-links"})
HEADROOM = 0.05


def share_of(per_minute: int, share: float) -> int:
    """How many calls of one kind a window holds when that kind may take ``share`` of it (at least one)."""
    return max(1, int(per_minute * share))


def share_wait(grants: list[float], per_minute: int, share: float, now: float) -> float:
    """How long a call of a kind limited to ``share`` of the window waits, ``grants`` being that kind's.
    Its calls are spread evenly, one per window / ``share_of`` seconds, not let through in a burst: a
    burst of them leaves the window all at once a minute later, and the next burst then meets every
    other call's at the window's end."""
    inside = recent(grants, now)
    spaced = inside[-1] + share_spacing(per_minute, share) - now if inside else 0.0
    return max(0.0, spaced, wait_seconds(inside, share_of(per_minute, share), now))


def headroom_wait(grants: list[float], per_minute: int, now: float) -> float:
    """How long a call that only prepares (``PREPARING_CALLS``) waits, ``grants`` being every call's:
    until the window holds fewer than ``yielded_limit`` of them."""
    return wait_seconds(grants, yielded_limit(per_minute), now)


def yielded_limit(per_minute: int) -> int:
    """How full the window may be for a call that only prepares to go (at least one call)."""
    return max(1, per_minute - max(1, round(per_minute * HEADROOM)))


def share_spacing(per_minute: int, share: float) -> float:
    """The seconds between two calls of a kind limited to ``share`` of the window."""
    return (WINDOW_SECONDS + MARGIN_SECONDS) / share_of(per_minute, share)


def recent(grants: list[float], now: float) -> list[float]:
    """The grants still inside the window at ``now``, oldest first."""
    return sorted(t for t in grants if t > now - WINDOW_SECONDS - MARGIN_SECONDS)


def wait_seconds(grants: list[float], per_minute: int, now: float) -> float:
    """0 when a call may go now, else how long until the oldest grant leaves the window."""
    inside = recent(grants, now)
    if len(inside) < per_minute:
        return 0.0
    return inside[-per_minute] + WINDOW_SECONDS + MARGIN_SECONDS - now


def free_slots(last_grants: Mapping[int, float], per_minute: int, now: float, wanted: int, rng: Random) -> list[int]:
    """Up to ``wanted`` grant slots in ``range(per_minute)`` that may take a call now, in random
    order (instances racing for the budget then rarely pick the same one); none while the window
    is full. Slot ``i`` holds the time of its last grant (absent: never used), so each slot grants
    at most once per window and ``per_minute`` slots at most ``per_minute`` calls per window, the
    sliding window exactly. Grants in slots past ``per_minute`` (the budget was lowered) still
    count toward the window."""
    if wait_seconds(list(last_grants.values()), per_minute, now) > 0:
        return []
    cutoff = now - WINDOW_SECONDS - MARGIN_SECONDS
    stale = [i for i, t in last_grants.items() if i < per_minute and t <= cutoff]
    unused = per_minute - sum(1 for i in last_grants if i < per_minute)
    picked = rng.sample(stale, min(wanted, len(stale)))
    tries = 0
    while unused and len(picked) < wanted and tries < 64:  # never-used slots, drawn at random
        tries += 1
        index = rng.randrange(per_minute)
        if index not in last_grants and index not in picked:
            picked.append(index)
    if unused and not picked:  # a small budget nearly all used: find the free ones
        picked = [next(i for i in range(per_minute) if i not in last_grants)]
    return picked
