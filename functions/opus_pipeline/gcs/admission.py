"""Admission under OpusClip's in-flight cap: a slot table shared by every instance.

At most ``OPUS_MAX_PARALLEL_PROJECTS`` projects are created and not concluded. A clip request
that finds no free slot joins a first-come queue instead of spending retries; a conclusion frees
its slot and admits the head of the queue at once, and the sweeper does the same as a safety net
(and reclaims slots whose holder is gone).

The table is one JSON object in ``STATE_BUCKET`` advanced by compare-and-swap (generation
preconditions), like the video records: no other component to deploy, and at OpusClip's rates
(a handful of admissions a minute) one object is far below Cloud Storage's one write per second
per object. ``SlotTable`` is the pure part; ``Admission`` reads and writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline.errors import InProgressError
from opus_pipeline.gcs.ledger import written_by_us

TABLE_OBJECT = "admission/slots.json"
ADMIT_GRACE_SECONDS = 120.0  # an admitted video's clip request arrives within this, or is admitted again
CAS_ATTEMPTS = 20


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

    def to_json(self) -> bytes:
        return json.dumps({"inFlight": self.in_flight, "waiting": self.waiting}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SlotTable:
        data = json.loads(raw)
        return cls(dict(data.get("inFlight", {})), list(data.get("waiting", [])))

    def _position(self, key: str) -> int:
        return next((i for i, w in enumerate(self.waiting) if w["key"] == key), -1)

    def request(self, key: str, cap: int, now: float) -> Grant:
        """A slot for ``key`` when one is free for it: the free slots go to the due waiters in
        their order first, then to newcomers. Otherwise ``key`` waits; its place is returned."""
        if key in self.in_flight:
            return Grant(True)
        due = [w["key"] for w in self.waiting if w.get("notBefore", 0.0) <= now]
        ahead = due.index(key) if key in due else len(due)
        if ahead < cap - len(self.in_flight):
            self.drop(key)
            self.in_flight[key] = now
            return Grant(True)
        if self._position(key) < 0:
            self.waiting.append({"key": key, "since": now, "notBefore": 0.0})
        return Grant(False, self._position(key) + 1)

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


class Admission:
    """The slot table in ``STATE_BUCKET``; every change is a CAS, retried on a conflict."""

    def __init__(self, client: storage.Client, bucket: str, cap: int) -> None:
        self._blob_name = TABLE_OBJECT
        self._bucket = client.bucket(bucket)
        self.cap = cap
        self.conflicts = 0  # for the benchmark: how often instances raced for the table

    def read(self) -> tuple[SlotTable, int]:
        blob = self._bucket.blob(self._blob_name)
        try:
            raw = blob.download_as_bytes()
        except gexc.NotFound:
            return SlotTable(), 0
        return SlotTable.from_json(raw), int(blob.generation)

    def change(self, edit: Any) -> Any:
        """Apply ``edit(table)`` (which returns a result) and write it back by CAS."""
        for _ in range(CAS_ATTEMPTS):
            table, generation = self.read()
            before = table.to_json()
            result = edit(table)
            if table.to_json() == before:
                return result
            blob = self._bucket.blob(self._blob_name)
            try:
                blob.upload_from_string(
                    table.to_json(), content_type="application/json", if_generation_match=generation
                )
            except gexc.PreconditionFailed:
                if written_by_us(blob, table.to_json()):  # a retried write of ours (see ledger.py)
                    return result
                self.conflicts += 1
                continue
            return result
        raise InProgressError("the admission table kept changing; this delivery will be retried")

    def request(self, key: str, now: float) -> Grant:
        return self.change(lambda table: table.request(key, self.cap, now))

    def release(self, key: str, now: float) -> list[str]:
        """Free ``key``'s slot; the waiting videos that may go now."""

        def edit(table: SlotTable) -> list[str]:
            table.drop(key)
            return table.admit_due(self.cap, now)

        return self.change(edit)

    def requeue(self, key: str, now: float, not_before: float) -> None:
        self.change(lambda table: table.requeue(key, now, not_before))
