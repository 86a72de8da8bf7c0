"""The slot table (``domain/slots.py``) kept in ``STATE_BUCKET``, shared by every instance.

Not one object: Cloud Storage allows about one write per second to one object name, and a burst
of videos writes the table once or more per video within seconds. The table is spread instead:

- a held slot is one object ``admission/slots/<i>`` (``i < cap``), claimed by create-only
  (``ifGenerationMatch=0``) and deleted when its project ends: at most ``cap`` can exist, so at
  most ``cap`` projects run, and each slot object is written twice per project it serves;
- a waiting video is its place in the one queue of both gates (``gcs/queue.py``), an object
  ``admission/queue/<hash of its key>`` with ``waitingFor: slot``, created when it starts to wait,
  marked when it is admitted, and deleted when the slot it got is given back (or it ends): three
  writes in its life, on an object nobody else writes. Not deleted when it gets the slot: that
  would be its third write within a second of the mark (and of a racing admission's), which Cloud
  Storage throttles, right on the path from a freed slot to the next project. While its video
  holds a slot, a read ignores the entry.

The table is read in two list calls (slot and queue objects carry their entry in metadata);
an edit is the pure ``SlotTable`` logic applied to that view, and its difference is written
object by object, each by the one compare-and-swap (``gcs/cas.py``) on the generation read; a
lost race reads again and applies the edit again (every ``SlotTable`` edit can be applied twice).
Claims are written first, and a slot is given back only after its video's entry is deleted, so
that a crash between two writes leaves at worst a queue entry of a video that holds a slot (which
a read ignores) or a slot nobody holds (which the sweeper reclaims).

Per video at 30 calls a minute and 4–50 slots that is about five writes, each on its own object
or on a slot object that changes hands once per project (minutes apart on OpusClip), far under
the limit; a read costs two listings.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.cloud import storage

from opus_pipeline.domain.credits import WAITING_FOR_SLOT
from opus_pipeline.domain.slots import Grant, SlotTable
from opus_pipeline.errors import ConflictError
from opus_pipeline.gcs.cas import Listed, until_won
from opus_pipeline.gcs.queue import Place, Queue, WaitingQueue
from opus_pipeline.gcs.slot_store import SlotStore

SLOTS_PREFIX = "admission/slots/"
ENTRY = "entry"  # the metadata field holding a slot's JSON
R = TypeVar("R")


@dataclass
class _View:
    """What one read found: the table, and the objects behind each of its entries."""

    table: SlotTable
    slots: dict[str, list[Listed]] = field(default_factory=dict)  # key → its slot object(s)
    used: set[int] = field(default_factory=set)  # slot indices taken
    queue: dict[str, tuple[Place, float]] = field(default_factory=dict)  # key → (its place, order)
    places: Queue = field(default_factory=lambda: Queue({}, {}))  # both gates' places, as read
    spent: dict[str, Place] = field(default_factory=dict)  # the places of videos holding a slot


def _entry(item: Listed) -> dict[str, Any] | None:
    try:
        entry = json.loads(item.metadata[ENTRY])
    except (KeyError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("key"), str) else None


class Admission:
    """The slot table in ``STATE_BUCKET``; every change is a set of CAS writes, retried on a conflict."""

    def __init__(self, client: storage.Client, bucket: str, cap: int) -> None:
        self._bucket = client.bucket(bucket)
        self._slots = SlotStore(self._bucket, SLOTS_PREFIX, ENTRY)
        self._queue = WaitingQueue(self._bucket)
        self.cap = cap
        self._rng = random.Random()

    # -- reading ----------------------------------------------------------------------------

    def _view(self) -> _View:
        view = _View(SlotTable())
        for index, item in self._slots.held().items():
            entry = _entry(item)
            if entry is None:
                continue
            view.used.add(index)
            view.slots.setdefault(entry["key"], []).append(item)
            if len(view.slots[entry["key"]]) > 1:  # two claims raced for one key: give the extra back
                with contextlib.suppress(ConflictError):
                    self._slots.give_back(item)
                    view.used.discard(index)
                    view.slots[entry["key"]].pop()
            since = float(entry.get("since", 0.0))
            view.table.in_flight[entry["key"]] = min(since, view.table.in_flight.get(entry["key"], since))
        waiting = []
        view.places = self._queue.read()
        for key, place in view.places.at(WAITING_FOR_SLOT).items():
            if key in view.table.in_flight:  # granted a slot; deleted when it gives the slot back
                view.spent[key] = place
                continue
            entry = dict(place.entry)
            order = float(entry.pop("order", entry.get("since", 0.0)))
            view.queue[key] = (place, order)
            waiting.append((order, place.item.name, entry))
        view.table.waiting = [entry for _, _, entry in sorted(waiting, key=lambda w: (w[0], w[1]))]
        return view

    def read(self) -> SlotTable:
        """The table as it is now (a read: two listings, no write)."""
        return self._view().table

    # -- changing ---------------------------------------------------------------------------

    def change(self, edit: Callable[[SlotTable], R], past_the_cap: bool = False) -> R:
        """Apply ``edit(table)`` (which returns a result) and write what it changed, by CAS; a lost
        race reads and edits again (``until_won``, the one retry of every compare-and-swap).
        ``past_the_cap``: a claim may take a slot object beyond the cap when none is free (``hold``)."""

        def once() -> R:
            view = self._view()
            before = SlotTable(dict(view.table.in_flight), [dict(w) for w in view.table.waiting])
            result = edit(view.table)
            self._write(view, before, max(self.cap, len(view.used) + 1) if past_the_cap else self.cap)
            return result

        return until_won(once, "the admission table")

    def _write(self, view: _View, before: SlotTable, room: int) -> None:
        after = view.table
        for key, since in after.in_flight.items():  # claims first: nothing else is written if one is lost
            if key not in before.in_flight:
                self._claim(view, key, since, room)
        for key in before.in_flight:
            if key not in after.in_flight:
                if key in view.spent and all(w["key"] != key for w in after.waiting):
                    self._queue.remove(view.spent[key])  # first: once the slot is free it would wait again
                for item in view.slots.get(key, []):
                    self._slots.give_back(item)
        old = {w["key"]: w for w in before.waiting}
        orders = [order for _, order in view.queue.values()]
        for position, entry in enumerate(after.waiting):
            was = old.get(entry["key"])
            if was == entry:
                continue
            if position == 0 and len(after.waiting) > 1:
                order = min(orders) - 1.0  # put (back) at the head of the queue: ``SlotTable.requeue``
            elif was is not None:
                order = view.queue[entry["key"]][1]
            else:
                order = float(entry["since"])
            self._put_entry(view, entry, order)
        kept = {w["key"] for w in after.waiting}
        for key in old:
            if key not in kept and key not in after.in_flight and key in view.queue:
                self._queue.remove(view.queue[key][0])

    def _claim(self, view: _View, key: str, since: float, room: int) -> None:
        """Create a free slot object among the first ``room`` for ``key``; ``ConflictError`` when none
        is left or another instance created it first."""
        free = [i for i in range(room) if i not in view.used]
        if not free:
            raise ConflictError(SLOTS_PREFIX)
        index = self._rng.choice(free)
        entry = json.dumps({"key": key, "since": since})
        self._slots.take(index, None, entry, entry.encode())
        view.used.add(index)

    def _put_entry(self, view: _View, entry: dict[str, Any], order: float) -> None:
        self._queue.put(view.places, WAITING_FOR_SLOT, {**entry, "order": order})

    # -- what the use cases ask -------------------------------------------------------------

    def request(self, key: str, now: float) -> Grant:
        return self.change(lambda table: table.request(key, self.cap, now))

    def take(self, key: str, now: float) -> bool:
        """A slot for ``key`` if one is free for it now; no write otherwise (no place in the queue)."""
        return self.change(lambda table: table.take(key, self.cap, now))

    def enqueue(self, key: str, now: float) -> int:
        """Line ``key`` up without taking a slot (its upload is at OpusClip and no slot is free);
        its place in the queue."""
        return self.change(lambda table: table.enqueue(key, now))

    def hold(self, key: str, now: float) -> bool:
        """Count ``key`` among the projects OpusClip runs, whatever the cap (a stalled project that
        runs again: OpusClip counts it again). Past the cap when no slot is free, so that the waiting
        videos start only once one more project ended, and never one project too many. Whether it
        took a slot (False: it held one already)."""

        def take(table: SlotTable) -> bool:
            if key in table.in_flight:
                return False
            table.in_flight[key] = now
            return True

        return self.change(take, past_the_cap=True)

    def release(self, key: str, now: float) -> list[str]:
        """Free ``key``'s slot; the waiting videos that may go now, marked admitted by the same
        change (one reading of the table, not two, on the way from a project's end to the next)."""

        def edit(table: SlotTable) -> list[str]:
            table.drop(key)
            return table.admit_due(self.cap, now)

        return self.change(edit)

    def requeue(self, key: str, now: float, not_before: float) -> None:
        self.change(lambda table: table.requeue(key, now, not_before))

    def forget(self, slots: dict[str, float], waiting: dict[str, float]) -> None:
        """Drop the slots and queue entries found stale in an earlier read (``SlotTable.forget``)."""
        self.change(lambda table: table.forget(slots, waiting))

    def admit_due(self, now: float) -> list[str]:
        """The waiting videos the free slots can take now, each marked admitted by its own CAS:
        one another instance marked first is its to admit, not ours."""
        view = self._view()
        admitted = []
        for key in view.table.admit_due(self.cap, now):
            entry = next(w for w in view.table.waiting if w["key"] == key)
            try:
                self._put_entry(view, entry, view.queue[key][1])
            except ConflictError:
                continue
            admitted.append(key)
        return admitted
