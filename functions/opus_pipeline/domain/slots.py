"""The slot table: who holds one of OpusClip's in-flight project slots, and who waits. Pure logic.

At most ``OPUS_MAX_PARALLEL_PROJECTS`` projects are created and not concluded. A clip request
that finds no free slot joins a first-come queue instead of spending retries; a conclusion frees
its slot and admits the head of the queue at once, and the sweeper does the same as a safety net
(and reclaims slots whose holder is gone). ``gcs/admission.py`` keeps the table in Cloud Storage,
one object per slot and per waiting video; every edit here may be applied twice (after a lost
race) and must come to the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ADMIT_GRACE_SECONDS = 120.0  # an admitted video's clip request arrives within this, or is admitted again


@dataclass(frozen=True)
class Grant:
    """``granted``, or the 1-based place in the queue."""

    granted: bool
    position: int = 0


@dataclass
class SlotTable:
    """Who holds a slot (video key → since when) and who waits, oldest first."""

    in_flight: dict[str, float] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)  # {"key", "since", "notBefore", "admittedAt"}

    def _position(self, key: str) -> int:
        return next((i for i, w in enumerate(self.waiting) if w["key"] == key), -1)

    def free_for(self, key: str, cap: int, now: float) -> bool:
        """Whether ``request`` would grant ``key`` a slot now: the free slots go to the due waiters
        in their order first, then to newcomers."""
        if key in self.in_flight:
            return True
        due = [w["key"] for w in self.waiting if w.get("notBefore", 0.0) <= now]
        ahead = due.index(key) if key in due else len(due)
        return ahead < cap - len(self.in_flight)

    def take(self, key: str, cap: int, now: float) -> bool:
        """A slot for ``key`` when one is free for it (``free_for``); nothing changes otherwise."""
        if key in self.in_flight:
            self._unqueue(key)  # a slot claimed before its queue entry was cleared (a crash between)
            return True
        if not self.free_for(key, cap, now):
            return False
        self.drop(key)
        self.in_flight[key] = now
        return True

    def request(self, key: str, cap: int, now: float) -> Grant:
        """A slot for ``key`` when one is free for it (``take``). Otherwise ``key`` waits; its place
        is returned."""
        if self.take(key, cap, now):
            return Grant(True)
        position = self._position(key)
        if position < 0:
            return Grant(False, self.enqueue(key, now))
        # an admission that came too late for its slot is spent: the next free one admits it again
        self.waiting[position].pop("admittedAt", None)
        return Grant(False, position + 1)

    def enqueue(self, key: str, now: float) -> int:
        """Put ``key`` at the end of the queue unless it is in it already (an admission it holds is
        kept); its 1-based place."""
        if self._position(key) < 0:
            self.waiting.append({"key": key, "since": now, "notBefore": 0.0})
        return self._position(key) + 1

    def release(self, key: str) -> None:
        self.in_flight.pop(key, None)

    def requeue(self, key: str, now: float, not_before: float) -> None:
        """OpusClip refused for the in-flight cap after all (another tool shares the key): the
        video goes back to the head of the queue and is not tried again before ``not_before``."""
        self.in_flight.pop(key, None)
        position = self._position(key)
        if position >= 0:
            del self.waiting[position]
        self.waiting.insert(0, {"key": key, "since": now, "notBefore": not_before})

    def drop(self, key: str) -> None:
        """Forget ``key`` entirely (its video ended or no longer exists)."""
        self.release(key)
        self._unqueue(key)

    def _unqueue(self, key: str) -> None:
        position = self._position(key)
        if position >= 0:
            del self.waiting[position]

    def forget(self, slots: dict[str, float], waiting: dict[str, float]) -> None:
        """Drop the slots and queue entries found stale in an earlier read, but only those still
        as they were read: a video admitted (or queued again) meanwhile keeps its new entry."""
        for key, since in slots.items():
            if self.in_flight.get(key) == since:
                del self.in_flight[key]
        self.waiting = [w for w in self.waiting if waiting.get(w["key"]) != w["since"]]

    def admit_due(self, cap: int, now: float) -> list[str]:
        """The waiting videos the free slots can take now, oldest first, marked as admitted so
        that nobody admits them twice while their clip request travels (``ADMIT_GRACE_SECONDS``)."""
        travelling = [w for w in self.waiting if now - w.get("admittedAt", -ADMIT_GRACE_SECONDS) < ADMIT_GRACE_SECONDS]
        free = cap - len(self.in_flight) - len(travelling)
        due = [w for w in self.waiting if w.get("notBefore", 0.0) <= now and w not in travelling]
        for entry in due[: max(0, free)]:
            entry["admittedAt"] = now
        return [w["key"] for w in due[: max(0, free)]]
