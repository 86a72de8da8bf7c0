"""The credit book (``domain/credits.py``) kept in ``STATE_BUCKET``, shared by every instance.

Not one object: Cloud Storage allows about one write per second to one object name, and every
video changes the book two or three times within seconds of the others in a burst. The book is
spread instead, so that no object is written by every video:

- a reservation is one object ``credits/reserved/<hash of the key>``, created when the video is
  admitted and deleted when its project is created (or will not be);
- a place in the credit queue is the video's place in the one queue of both gates
  (``gcs/queue.py``), an object ``admission/queue/<hash of the key>`` with ``waitingFor: credits``,
  written when the video starts to wait and deleted when it is admitted (or ends);
- a creation is one object ``credits/spent/<YYYY-MM>/<hash of the key>`` (a credit spent outside a
  project, an X post, one of a unique name there), written once and never again: the month's
  ``created`` is the sum of that month's listing, so a new month counts from zero by itself, and
  a creation settled twice finds its object and is counted once.

Each object carries its entry (key, credits, moments) in its metadata, so the book is read in
three list calls (reservations, the queue, the month's creations). An edit is the pure
``CreditBook`` logic applied to that view, and its difference is written object by object, each
by the one compare-and-swap (``gcs/cas.py``) on the generation listed; a lost race reads and
edits again (``until_won``). Creations are written first and deletions last, so that a crash
between two writes leaves a reservation beside its counted creation (held back until the sweeper
settles it, which finds the creation counted), never credits handed out twice.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.cloud import storage

from opus_pipeline.domain.credits import SPENT_KEPT_SECONDS, WAITING_FOR_CREDITS, CreditBook, month_of
from opus_pipeline.errors import ConflictError
from opus_pipeline.gcs.cas import CasObject, Listed, listing, until_won
from opus_pipeline.gcs.queue import Place, Queue, WaitingQueue

CREDITS_PREFIX = "credits/"
LEGACY_BOOK = "credits/book.json"  # the one object the book was before it was spread (read once, then gone)
RESERVED_PREFIX = "credits/reserved/"
SPENT_PREFIX = "credits/spent/"
ENTRY = "entry"  # the metadata field holding an object's entry as JSON
R = TypeVar("R")


@dataclass
class _View:
    """What one read found: the book, and the objects behind its reservations and places."""

    book: CreditBook
    reserved: dict[str, Listed] = field(default_factory=dict)  # key → its reservation object
    waiting: dict[str, Place] = field(default_factory=dict)  # key → its place in the queue
    places: Queue = field(default_factory=lambda: Queue({}, {}))  # both gates' places, as read


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _entry(item: Listed) -> dict[str, Any] | None:
    try:
        entry = json.loads(item.metadata[ENTRY])
    except (KeyError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("credits"), int) else None


class CreditLedger:
    """The credit book in ``STATE_BUCKET``; every change is a set of CAS writes, retried on a conflict."""

    def __init__(self, client: storage.Client, bucket: str, wall: Callable[[], float] = time.time) -> None:
        self._bucket = client.bucket(bucket)
        self._wall = wall
        self._queue = WaitingQueue(self._bucket)
        self._legacy_checked = False

    # -- reading ----------------------------------------------------------------------------

    def _view(self, month: str) -> _View:
        view = _View(CreditBook(month=month))
        for item in listing(self._bucket, RESERVED_PREFIX):
            entry = _entry(item)
            if entry is not None and isinstance(entry.get("key"), str):
                view.book.reserved[entry["key"]] = entry["credits"]
                view.reserved[entry["key"]] = item
        view.places = self._queue.read()
        view.waiting = view.places.at(WAITING_FOR_CREDITS)
        places = sorted(view.waiting.values(), key=lambda p: (float(p.entry.get("since", 0.0)), p.item.name))
        view.book.waiting = [dict(place.entry) for place in places]
        kept_from = self._wall() - SPENT_KEPT_SECONDS
        months = dict.fromkeys([month_of(kept_from), month])  # the last minutes may reach into last month
        for listed_month in months:
            for item in listing(self._bucket, f"{SPENT_PREFIX}{listed_month}/"):
                entry = _entry(item)
                if entry is None:
                    continue
                when = float(entry.get("when", 0.0))
                if listed_month == month:
                    view.book.created += entry["credits"]
                    if isinstance(entry.get("key"), str):
                        view.book.counted[entry["key"]] = entry["credits"]
                if when > kept_from:
                    view.book.spent.append([when, entry["credits"]])
        view.book.spent.sort()
        return view

    def read(self, month: str | None = None) -> CreditBook:
        """The book of ``month`` (this month when not given) as it is now: a read, no write."""
        return self._view(month or month_of(self._wall())).book

    # -- changing ---------------------------------------------------------------------------

    def change(self, month: str, edit: Callable[[CreditBook], R]) -> R:
        """Apply ``edit(book)`` to the book of ``month`` (this month when empty) and write what it
        changed, by CAS; a lost race reads and edits again (``until_won``). A credit spent is
        written once per call, however often the edit is applied again."""
        month = month or month_of(self._wall())
        self._take_over_legacy_book()
        booked: Counter[int] = Counter()  # credits already written as spent by an earlier attempt

        def once() -> R:
            view = self._view(month)
            before = copy.deepcopy(view.book)
            result = edit(view.book)
            self._write(view, before, month, booked)
            taken = view.book.reserved.keys() - before.reserved.keys()
            if taken:
                self._in_turn(month, edit, before, taken)
            return result

        return until_won(once, "the credit book")

    def _in_turn(self, month: str, edit: Callable[[CreditBook], object], before: CreditBook, taken: set[str]) -> None:
        """Keep each new reservation only if the edit still grants it against every reservation
        written before it; else put its video back as it was and lose the race (``ConflictError``).

        Reservations of different videos are different objects, so two instances can each find room
        for one more video and both write theirs: the check that the single book object's CAS used
        to make. Reservations are ordered by their generations (the moments Cloud Storage committed
        them): the one ordered first always stays, and a later one sees every earlier one, since an
        earlier one was committed before the later one's listing."""
        now = self._view(month)
        late = []
        for key in sorted(taken):
            mine = now.reserved.get(key)
            if mine is None:
                continue  # given up meanwhile (settled, or waiting again)
            trial = copy.deepcopy(before)
            trial.created, trial.spent, trial.counted = now.book.created, now.book.spent, now.book.counted
            ahead = [k for k, item in now.reserved.items() if k != key and item.generation < mine.generation]
            trial.reserved = {k: now.book.reserved[k] for k in ahead}
            edit(trial)
            if key not in trial.reserved:
                late.append(key)
        if not late:
            return
        for key in taken:  # all of them, so that the edit applied again decides for each anew
            entry = before.waiting_entry(key)
            if entry is not None and key not in now.waiting:
                self._queue.put(now.places, WAITING_FOR_CREDITS, entry)
            if key in now.reserved:
                CasObject(self._bucket, now.reserved[key].name).delete(now.reserved[key].generation)
        raise ConflictError(RESERVED_PREFIX)

    def _write(self, view: _View, before: CreditBook, month: str, booked: Counter[int]) -> None:
        after, written = view.book, Counter(booked)
        new_spent = list((Counter(tuple(s) for s in after.spent) - Counter(tuple(s) for s in before.spent)).elements())
        for key in after.counted.keys() - before.counted.keys():  # creations: named by their video
            amount = after.counted[key]
            matched = next((s for s in new_spent if s[1] == amount), None)
            if matched is not None:
                new_spent.remove(matched)
            when = matched[0] if matched is not None else self._wall()
            self._spend(f"{SPENT_PREFIX}{month}/{_hash(key)}", {"key": key, "when": when, "credits": amount})
        for moment, spent in new_spent:  # credits spent outside a project: each its own
            if written[int(spent)]:  # this call's, written before an earlier attempt lost its race
                written[int(spent)] -= 1
                continue
            self._spend(f"{SPENT_PREFIX}{month}/{uuid.uuid4().hex}", {"when": moment, "credits": int(spent)})
            booked[int(spent)] += 1
        for key, credits in after.reserved.items():
            if before.reserved.get(key) != credits:
                self._reserve(view.reserved.get(key), key, credits)
        was = {w["key"]: w for w in before.waiting}
        for entry in after.waiting:
            if was.get(entry["key"]) != entry:
                self._queue.put(view.places, WAITING_FOR_CREDITS, entry)
        for key in before.reserved.keys() - after.reserved.keys():
            CasObject(self._bucket, view.reserved[key].name).delete(view.reserved[key].generation)
        for key in was.keys() - {w["key"] for w in after.waiting}:
            self._queue.remove(view.waiting[key])

    def _take_over_legacy_book(self) -> None:
        """Spread a book kept as the one object ``credits/book.json`` (a deployment from before the
        book was spread) over the objects of today, then delete it, so that no reservation, place in
        the credit queue or credit counted this month is lost in the upgrade. Every write is
        create-only and the delete conditional: instances doing it at once, or again after a crash,
        end with the same objects. Looked for once per instance."""
        if self._legacy_checked:
            return
        legacy = CasObject(self._bucket, LEGACY_BOOK)
        current = legacy.read()
        if current.raw is not None:
            book = CreditBook.from_json(current.raw)
            for key, credits in book.reserved.items():
                with contextlib.suppress(ConflictError):
                    self._reserve(None, key, credits)
            places = self._queue.read()
            waiting_now = places.at(WAITING_FOR_CREDITS)
            for entry in book.waiting:
                if entry.get("key") not in waiting_now:
                    self._queue.put(places, WAITING_FOR_CREDITS, entry)
            if book.month and book.created:
                with contextlib.suppress(ConflictError):  # its creations, counted once as one object
                    self._spend(f"{SPENT_PREFIX}{book.month}/legacy-book", {"when": 0.0, "credits": int(book.created)})
            with contextlib.suppress(ConflictError):
                legacy.delete(current.generation)
        self._legacy_checked = True

    def _spend(self, name: str, entry: dict[str, Any]) -> None:
        doc = json.dumps(entry, sort_keys=True)
        CasObject(self._bucket, name).create(doc.encode(), {ENTRY: doc})

    def _reserve(self, listed: Listed | None, key: str, credits: int) -> None:
        doc = json.dumps({"key": key, "credits": credits, "at": self._wall()}, sort_keys=True)
        name = listed.name if listed else RESERVED_PREFIX + _hash(key)
        CasObject(self._bucket, name).write(doc.encode(), listed.generation if listed else 0, {ENTRY: doc})
