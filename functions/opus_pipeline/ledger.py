"""The private per-video state record in ``STATE_BUCKET``, written only by compare-and-swap.

Creation uses ``if_generation_match=0``; every later write uses the generation that was read, so
two invocations can never both believe they advanced the same record. Writes are single-request
uploads: the emulator honours generation preconditions on those (not on resumable ones).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage

from .errors import InProgressError, PipelineError
from .events import StorageObject
from .messages import ClipRequest
from .preferences import Preferences
from .states import RECEIVED


class ConflictError(Exception):
    """Someone else wrote the record since it was read."""


@dataclass(frozen=True)
class VideoRecord:
    """One uploaded version of one object. ``session_url`` is a credential: never log it."""

    source: dict[str, Any]
    state: str = RECEIVED
    reason: str | None = None
    error: str | None = None
    upload_id: str | None = None
    session_url: str | None = field(default=None, repr=False)
    committed: int = 0
    read_generation: int | None = None
    preferences: dict[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires: float = 0.0
    project_id: str | None = None
    stage: str | None = None
    reset_at: str | None = None
    message_id: str | None = None
    uploaded_at: str | None = None
    updated_at: str = ""

    @classmethod
    def for_object(cls, obj: StorageObject) -> VideoRecord:
        return cls(source={**obj.to_message(), "crc32c": obj.crc32c})

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> VideoRecord:
        data = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> VideoRecord:
        changes.setdefault("updated_at", now_rfc3339())
        return dataclasses.replace(self, **changes)

    def clip_request(self) -> ClipRequest:
        """The hand-over message for this video's completed upload."""
        return ClipRequest(
            upload_id=self.upload_id or "",
            source={k: v for k, v in self.source.items() if k != "crc32c"},
            preferences=Preferences.from_message(self.preferences),
            uploaded_at=self.uploaded_at or self.updated_at,
        )


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Stored:
    """A record with the generation of the object it was read from (the CAS token)."""

    record: VideoRecord
    generation: int


def record_path(bucket: str, name: str, generation: int | str) -> str:
    return f"videos/{bucket}/{name}#{generation}.json"


class Ledger:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)

    def _blob(self, record: VideoRecord) -> storage.Blob:
        src = record.source
        return self._bucket.blob(record_path(src["bucket"], src["name"], src["generation"]))

    def _upload(self, blob: storage.Blob, record: VideoRecord, if_generation_match: int) -> Stored:
        try:
            blob.upload_from_string(
                record.to_json(), content_type="application/json", if_generation_match=if_generation_match
            )
        except gexc.PreconditionFailed:
            raise ConflictError(blob.name) from None
        return Stored(record, int(blob.generation))

    def read(self, obj: StorageObject) -> Stored | None:
        blob = self._bucket.blob(record_path(obj.bucket, obj.name, obj.generation))
        try:
            raw = blob.download_as_bytes()
        except gexc.NotFound:
            return None
        return Stored(VideoRecord.from_json(raw), int(blob.generation))

    def create(self, record: VideoRecord) -> Stored:
        """Write a new record; ``ConflictError`` if one already exists."""
        return self._upload(self._blob(record), record.replace(), if_generation_match=0)

    def write(self, stored: Stored, record: VideoRecord) -> Stored:
        """Replace ``stored`` with ``record``; ``ConflictError`` if it changed since it was read."""
        return self._upload(self._blob(record), record.replace(), if_generation_match=stored.generation)

    def records(self, bucket: str, prefix: str = "") -> Iterator[Stored]:
        """Every record of objects in ``bucket`` whose name starts with ``prefix``."""
        for blob in self._bucket.list_blobs(prefix=f"videos/{bucket}/{prefix}"):
            yield Stored(VideoRecord.from_json(blob.download_as_bytes()), int(blob.generation))


class HeldRecord:
    """The record an invocation holds the lease of; each write is a CAS on the one it last wrote.

    Losing a CAS means another invocation took the lease over: ``InProgressError`` stops this one.
    """

    def __init__(self, ledger: Ledger, stored: Stored) -> None:
        self._ledger = ledger
        self._stored = stored

    @property
    def record(self) -> VideoRecord:
        return self._stored.record

    def save(self, **changes: Any) -> None:
        try:
            self._stored = self._ledger.write(self._stored, self.record.replace(**changes))
        except ConflictError:
            raise InProgressError("another invocation took over this video's record") from None

    def release(self, **changes: Any) -> None:
        """Write ``changes`` and give the lease up, so a retry can go on at once."""
        self.save(lease_owner=None, lease_expires=0.0, **changes)

    def settle(self, state: str, exc: PipelineError, **changes: Any) -> None:
        """End in ``state`` for the reason ``exc`` gives; an open session is forgotten."""
        self.release(state=state, reason=exc.reason, error=str(exc), session_url=None, **changes)
