"""The slot table (``domain/slots.py``) kept in ``STATE_BUCKET``, shared by every instance.

One JSON object advanced by the one compare-and-swap (``gcs/cas.py``), like the video records:
no other component to deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.cloud import storage

from opus_pipeline.domain.slots import Grant, SlotTable
from opus_pipeline.gcs.cas import CasObject, Edit

TABLE_OBJECT = "admission/slots.json"
R = TypeVar("R")


class Admission:
    """The slot table in ``STATE_BUCKET``; every change is a CAS, retried on a conflict."""

    def __init__(self, client: storage.Client, bucket: str, cap: int) -> None:
        self._object = CasObject(client.bucket(bucket), TABLE_OBJECT)
        self.cap = cap

    @property
    def conflicts(self) -> int:
        """For the benchmark: how often instances raced for the table."""
        return self._object.conflicts

    def read(self) -> tuple[SlotTable, int]:
        current = self._object.read()
        return (SlotTable.from_json(current.raw) if current.raw else SlotTable()), current.generation

    def change(self, edit: Callable[[SlotTable], R]) -> R:
        """Apply ``edit(table)`` (which returns a result) and write it back by CAS."""

        def on_bytes(raw: bytes | None) -> Edit[R]:
            table = SlotTable.from_json(raw) if raw else SlotTable()
            before = table.to_json()
            result = edit(table)
            after = table.to_json()
            return Edit(result, after if after != before else None)

        return self._object.change(on_bytes)[0]

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
