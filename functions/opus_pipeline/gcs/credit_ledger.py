"""The credit book (``domain/credits.py``) kept in ``STATE_BUCKET``, shared by every instance.

Not one object: Cloud Storage allows about one write per second to one object name, and every
video changes the book two or three times within seconds of the others in a burst. The book is
spread instead, so that no object is written by every video:

- a reservation is one object ``credits/reserved/<hash of the key>``, created when the video is
  admitted and deleted when its project is created (or will not be);
- a place in the credit queue is one object ``credits/waiting/<hash of the key>``, created when
  the video starts to wait and deleted when it is admitted (or ends);
- a creation (or a credit spent outside a project) is one object
  ``credits/spent/<YYYY-MM>/<unique name>``, written once and never again: the month's
  ``created`` is the sum of that month's listing, so a new month counts from zero by itself.

Each object carries its entry (key, credits, moments) in its metadata, so the book is read in
three list calls. An edit is the pure ``CreditBook`` logic applied to that view, and its
difference is written object by object, each by the one compare-and-swap (``gcs/cas.py``) on the
generation listed; a lost race reads and edits again (``until_won``). Creations are written
first and deletions last, so that a crash between two writes leaves the credits counted twice
(held back, given up by the sweeper's settling), never once too few.
"""

from __future__ import annotations

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

from opus_pipeline.domain.credits import SPENT_KEPT_SECONDS, CreditBook, month_of
from opus_pipeline.gcs.cas import CasObject, Listed, listing, until_won

CREDITS_PREFIX = "credits/"
RESERVED_PREFIX = "credits/reserved/"
WAITING_PREFIX = "credits/waiting/"
SPENT_PREFIX = "credits/spent/"
ENTRY = "entry"  # the metadata field holding an object's entry as JSON
R = TypeVar("R")


@dataclass
class _View:
    """What one read found: the book, and the objects behind its reservations and places."""

    book: CreditBook
    reserved: dict[str, Listed] = field(default_factory=dict)  # key → its reservation object
    waiting: dict[str, Listed] = field(default_factory=dict)  # key → its place object


def _name(prefix: str, key: str) -> str:
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:40]


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

    # -- reading ----------------------------------------------------------------------------

    def _view(self, month: str) -> _View:
        view = _View(CreditBook(month=month))
        for item in listing(self._bucket, RESERVED_PREFIX):
            entry = _entry(item)
            if entry is not None and isinstance(entry.get("key"), str):
                view.book.reserved[entry["key"]] = entry["credits"]
                view.reserved[entry["key"]] = item
        places = []
        for item in listing(self._bucket, WAITING_PREFIX):
            entry = _entry(item)
            if entry is not None and isinstance(entry.get("key"), str):
                view.waiting[entry["key"]] = item
                places.append((float(entry.get("since", 0.0)), item.name, entry))
        view.book.waiting = [entry for _, _, entry in sorted(places, key=lambda p: (p[0], p[1]))]
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
        booked: Counter[int] = Counter()  # credits already written as spent by an earlier attempt

        def once() -> R:
            view = self._view(month)
            before = copy.deepcopy(view.book)
            result = edit(view.book)
            self._write(view, before, month, booked)
            return result

        return until_won(once, "the credit book")

    def _write(self, view: _View, before: CreditBook, month: str, booked: Counter[int]) -> None:
        after, written = view.book, Counter(booked)
        new_spent = Counter(tuple(s) for s in after.spent) - Counter(tuple(s) for s in before.spent)
        for when, amount in new_spent.elements():
            if written[int(amount)]:  # this call's, written before an earlier attempt lost its race
                written[int(amount)] -= 1
                continue
            doc = json.dumps({"when": when, "credits": int(amount)})
            CasObject(self._bucket, f"{SPENT_PREFIX}{month}/{uuid.uuid4().hex}").create(doc.encode(), {ENTRY: doc})
            booked[int(amount)] += 1
        for key, amount in after.reserved.items():
            if before.reserved.get(key) != amount:
                self._put(RESERVED_PREFIX, view.reserved.get(key), {"key": key, "credits": amount})
        was = {w["key"]: w for w in before.waiting}
        for entry in after.waiting:
            if was.get(entry["key"]) != entry:
                self._put(WAITING_PREFIX, view.waiting.get(entry["key"]), entry)
        for key in before.reserved.keys() - after.reserved.keys():
            CasObject(self._bucket, view.reserved[key].name).delete(view.reserved[key].generation)
        for key in was.keys() - {w["key"] for w in after.waiting}:
            CasObject(self._bucket, view.waiting[key].name).delete(view.waiting[key].generation)

    def _put(self, prefix: str, listed: Listed | None, entry: dict[str, Any]) -> None:
        doc = json.dumps(entry, sort_keys=True)
        name = listed.name if listed else _name(prefix, entry["key"])
        CasObject(self._bucket, name).write(doc.encode(), listed.generation if listed else 0, {ENTRY: doc})
