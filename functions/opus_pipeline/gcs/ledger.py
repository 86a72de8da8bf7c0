"""The video records in ``STATE_BUCKET``: read them, and advance each by compare-and-swap.

Creation requires that no record exists (generation 0); every later write names the generation
that was read, and every write is checked against the state machine (``domain/states.py``).
The claim protocol built on it is in ``gcs/claims.py``; the index of running projects in
``gcs/open_index.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.cloud import storage

from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import Stored, VideoRecord, object_from_key
from opus_pipeline.errors import ConflictError, IllegalTransitionError
from opus_pipeline.gcs.cas import STORAGE_TRANSIENT, CasObject, storage_trouble

RECORDS_PREFIX = "videos/"


def record_path(obj: StorageObject) -> str:
    return f"{RECORDS_PREFIX}{obj.key}.json"


class Ledger:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)

    def _object(self, obj: StorageObject) -> CasObject:
        return CasObject(self._bucket, record_path(obj))

    def read(self, obj: StorageObject) -> Stored | None:
        current = self._object(obj).read()
        if current.raw is None:
            return None
        return Stored(VideoRecord.from_json(current.raw), current.generation)

    def write(self, stored: Stored, record: VideoRecord) -> Stored:
        """Replace ``stored`` with ``record``; ``ConflictError`` if it changed since it was read."""
        record = self.checked_next(stored.record, record)
        return Stored(record, self._object(record.source).write(record.to_json(), stored.generation))

    def update(self, stored: Stored, **changes: Any) -> Stored | None:
        """One CAS write without a lease (bookkeeping); ``None`` when someone wrote meanwhile."""
        try:
            return self.write(stored, stored.record.replace(**changes))
        except ConflictError:
            return None

    @staticmethod
    def checked_new(record: VideoRecord, initial: str | None = None) -> VideoRecord:
        """``record`` stamped for its first write, if the state machine lets a record start so."""
        initial = initial or record.state
        if initial not in states.INITIAL_STATES:
            raise IllegalTransitionError(f"a record cannot start as {initial!r}")
        states.check_transition(initial, record.state)
        return record.replace()

    @staticmethod
    def checked_next(current: VideoRecord, record: VideoRecord) -> VideoRecord:
        """``record`` stamped to replace ``current``, if the state machine allows the step."""
        states.check_transition(current.state, record.state)
        return record.replace()

    def cas(self, obj: StorageObject) -> CasObject:
        """The record's object, for a protocol (the claim) that reads and writes it in one change."""
        return self._object(obj)

    def read_key(self, key: str) -> Stored | None:
        """The record of ``bucket/name#generation`` (as a webhook URL names it), if any."""
        try:
            return self.read(object_from_key(key))
        except ValueError:
            return None

    def records(self, bucket: str, prefix: str = "") -> Iterator[Stored]:
        """Every record of objects in ``bucket`` whose name starts with ``prefix``."""
        try:
            for blob in self._bucket.list_blobs(prefix=f"{RECORDS_PREFIX}{bucket}/{prefix}"):
                yield Stored(VideoRecord.from_json(blob.download_as_bytes()), int(blob.generation))
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, "list the video records") from None
