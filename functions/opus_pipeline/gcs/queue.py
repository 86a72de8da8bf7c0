"""The one queue of videos waiting at a gate, kept in ``STATE_BUCKET``: for a project slot
(``gcs/admission.py``) or for credits (``gcs/credit_ledger.py``).

A waiting video is one object ``admission/queue/<hash of its key>``, written when it starts to wait
(or its place changes) and deleted when it is admitted or ends: a few writes in its life, on an
object nobody else writes. Its entry (JSON in the object's metadata) says which gate it waits at,
``waitingFor`` (``slot`` or ``credits``, as the record's ``waiting_for``), so the whole queue of
both gates is read in one listing and each gate takes its own entries. A video waits at one gate
at a time: putting it in line at one gate takes its place at the other over. Every write is the
one compare-and-swap (``gcs/cas.py``) on the generation listed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from google.cloud import storage

from opus_pipeline.domain.credits import WAITING_FOR_SLOT
from opus_pipeline.gcs.cas import CasObject, Listed, listing

QUEUE_PREFIX = "admission/queue/"
ENTRY = "entry"  # the metadata field holding a place's entry as JSON
GATE = "waitingFor"  # the entry's field naming the gate it waits at


@dataclass(frozen=True)
class Place:
    """One video's place: its object as listed, and its entry without the gate."""

    item: Listed
    entry: dict[str, Any]


@dataclass(frozen=True)
class Queue:
    """What one listing found: each gate's places, and every place's object by key."""

    places: dict[str, dict[str, Place]]  # gate → key → place
    objects: dict[str, Listed]  # key → its object, at whichever gate

    def at(self, gate: str) -> dict[str, Place]:
        return self.places.get(gate, {})


def place_name(key: str) -> str:
    return QUEUE_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:40]


class WaitingQueue:
    """The queue objects of ``bucket``."""

    def __init__(self, bucket: storage.Bucket) -> None:
        self._bucket = bucket

    def read(self) -> Queue:
        """Both gates' places in one listing (an entry without ``waitingFor`` waits for a slot)."""
        queue = Queue({}, {})
        for item in listing(self._bucket, QUEUE_PREFIX):
            try:
                entry = json.loads(item.metadata[ENTRY])
            except (KeyError, ValueError):
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                continue
            gate = str(entry.pop(GATE, WAITING_FOR_SLOT))
            queue.places.setdefault(gate, {})[entry["key"]] = Place(item, entry)
            queue.objects[entry["key"]] = item
        return queue

    def put(self, queue: Queue, gate: str, entry: dict[str, Any]) -> None:
        """Write ``entry`` as its video's place at ``gate`` over whatever ``queue`` listed for it
        (at either gate). ``ConflictError`` when the place changed since."""
        listed = queue.objects.get(entry["key"])
        doc = json.dumps({**entry, GATE: gate}, sort_keys=True)
        name = listed.name if listed else place_name(entry["key"])
        CasObject(self._bucket, name).write(doc.encode(), listed.generation if listed else 0, {ENTRY: doc})

    def remove(self, place: Place) -> None:
        """Give ``place`` up (already gone is fine). ``ConflictError`` when it changed since."""
        CasObject(self._bucket, place.item.name).delete(place.item.generation)
