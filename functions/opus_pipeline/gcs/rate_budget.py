"""OpusClip's request budget (``OPUS_RATE_PER_MINUTE`` per API key), shared by every instance.

The budget is spread over ``per_minute`` grant slots, one small object each
(``admission/rate/<i>``), holding the time of its last grant in its metadata
(``domain/rate_window.free_slots``). A call goes out only once it has won one slot whose last
grant has left the window, by the one compare-and-swap (``gcs/cas.py``): each slot grants at
most once a window, so the slots together grant at most ``per_minute`` calls in any window.

A call of a kind limited to a share of the window (``rate_window.UPLOAD_LINK_SHARE``) also waits
for its turn among its kind's, spread evenly over the window (``rate_window.share_wait``); the slot
carries the kind of its last grant. A call that only prepares (an upload link) leaves the window's
last room to the calls that turn project slots (``rate_window.headroom_wait``).

Why not one object: Cloud Storage allows about one write per second to one object name, and a
single window object written once per call held the whole pipeline to about one OpusClip call a
second whatever the budget said. Here a call costs one listing of the slots (a read, unlimited)
and one write to a slot that was last written a window (62 s) ago; racing instances pick slots
at random, so they rarely even meet on one.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable

from google.cloud import storage

from opus_pipeline.domain import rate_window
from opus_pipeline.errors import BudgetSpentError, ConflictError
from opus_pipeline.gcs.cas import Listed
from opus_pipeline.gcs.slot_store import SlotStore

SLOTS_PREFIX = "admission/rate/"
GRANTED_AT = "grantedAt"  # the metadata field of a slot: the wall-clock time of its last grant
KIND = "kind"  # and the kind of that grant (the path called), for a call limited to a share of the window
CANDIDATES = 4  # slots one look tries before looking again
CONTENDED_PAUSE_SECONDS = 0.2  # after losing every candidate: a breath, then look again until give-up


class RateLimiter:
    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        per_minute: int,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._slots = SlotStore(client.bucket(bucket), SLOTS_PREFIX, GRANTED_AT)
        self.per_minute = per_minute
        self._wall = wall
        self._sleep = sleep
        self._rng = random.Random()
        self._listed: dict[int, Listed] | None = None  # the slots as this instance last saw them

    def _take(self, index: int, slots: dict[int, Listed], now: float, kind: str | None) -> bool:
        """Win slot ``index`` for a call at ``now`` (remembered with the slots listed); False when
        another instance won it first."""
        body = json.dumps({GRANTED_AT: now, "grant": uuid.uuid4().hex}).encode()  # unique: see SlotStore.take
        more = {KIND: kind} if kind else {}
        try:
            taken = self._slots.take(index, slots.get(index), repr(now), body, more)
        except ConflictError:
            return False
        self._listed = {**slots, index: taken}
        return True

    def _held_back(self, slots: dict[int, Listed], kind: str | None, share: float, now: float) -> float:
        """How long a call of ``kind`` waits before it may take a free slot (0: it may go): its kind's
        share of the window (``rate_window.share_wait``), and the window's headroom when it only
        prepares (``rate_window.headroom_wait``)."""
        if kind is None:
            return 0.0
        last = {i: float(s.metadata[GRANTED_AT]) for i, s in slots.items()}
        wait = 0.0
        if share < 1.0:
            grants = [last[i] for i, s in slots.items() if s.metadata.get(KIND) == kind]
            wait = rate_window.share_wait(grants, self.per_minute, share, now)
        if kind in rate_window.PREPARING_CALLS:
            wait = max(wait, rate_window.headroom_wait(list(last.values()), self.per_minute, now))
        return wait

    def acquire(self, max_wait: float, kind: str | None = None, share: float = 1.0) -> None:
        """Take one call of the budget, waiting up to ``max_wait`` seconds for it. Its grant is noted as
        of ``kind``; with a ``share`` below 1, calls of its kind take at most that share of the window,
        and a call that only prepares leaves the window's headroom to the others (both counted on a
        fresh listing of the slots).

        The slots as this instance last saw them are tried first, without listing them again (a
        listing of every slot is most of a grant's cost): a slot another instance took since is
        only a lost compare-and-swap, never a second grant in a window, and the slots are then
        listed anew. Other instances' grants only make the remembered window look emptier than it
        is, so a window that looks full is full."""
        give_up = self._wall() + max_wait
        restrained = share < 1.0 or kind in rate_window.PREPARING_CALLS
        while True:
            remembered = None if restrained else self._listed
            slots = remembered if remembered is not None else self._slots.held()
            now = self._wall()
            last = {i: float(s.metadata[GRANTED_AT]) for i, s in slots.items()}
            wanted = 1 if remembered is not None else CANDIDATES
            held_back = self._held_back(slots, kind, share, now) if restrained else 0.0
            free = [] if held_back else rate_window.free_slots(last, self.per_minute, now, wanted, self._rng)
            if any(self._take(index, slots, now, kind) for index in free):
                return
            self._listed = None
            if remembered is not None:
                continue  # what this instance remembered is out of date: list the slots
            # lost every candidate to other instances (the window moves on), or none is free yet
            if held_back:
                # not all at the same moment: callers waking together would each win a slot of their
                # own, a burst of the kind the spacing is there to avoid
                wait = held_back + self._rng.uniform(0.0, rate_window.share_spacing(self.per_minute, share) / 2)
            elif free:
                wait = CONTENDED_PAUSE_SECONDS
            else:
                wait = rate_window.wait_seconds(list(last.values()), self.per_minute, now)
            if now + wait > give_up:
                spent = f" (the share {kind} calls may take of it)" if held_back else ""
                raise BudgetSpentError(
                    f"OpusClip's budget of {self.per_minute} requests a minute{spent} is spent for the next {wait:.0f}s"
                )
            self._sleep(wait)
