"""A video's state record: the one truth about one uploaded version of one object. Pure values.

The record is stored as JSON in ``STATE_BUCKET`` (see ``gcs/ledger.py``); ``Stored`` pairs it
with the generation it was read at, the token of its next compare-and-swap.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject, parse_generation
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.preferences import Preferences


@dataclass(frozen=True)
class VideoRecord:
    """One uploaded version of one object. Its upload session URL, a credential, is never here
    (``gcs/sessions.py`` keeps it apart while the upload runs)."""

    source: StorageObject
    state: str = states.RECEIVED
    reason: str | None = None
    error: str | None = None
    upload_id: str | None = None
    committed: int = 0
    read_generation: int | None = None
    preferences: dict[str, Any] = field(default_factory=dict)
    publish: dict[str, Any] | None = None  # the publishing choice, accounts resolved (``usecases/publish.py``)
    duration_seconds: float | None = None  # the whole video's, read from its container before upload
    credits: int | None = None  # OpusClip's bill for its project, estimated from the duration
    waiting_for: str | None = None  # while ``waiting``: "slot" (a project slot) or "credits" (this month's)
    lease_owner: str | None = None
    lease_expires: float = 0.0
    project_id: str | None = None
    stage: str | None = None
    reset_at: str | None = None
    # The upload waited out a monthly cap at OpusClip (a 403 at creation) and no project was made of it
    # since: should OpusClip refuse it, it may no longer have it (``domain/credits.refusal``).
    upload_waited: bool = False
    reuploads: int = 0  # times the video was sent again because OpusClip no longer had its upload
    # The create call (it spends credits): how many were sent, when the first of them was, and when the
    # last was sent while what it did is unknown (None once its outcome is recorded). Set, a creation is
    # ambiguous: the project list is looked at before any other create call (``domain/creation.py``).
    create_attempts: int = 0
    create_since: float | None = None
    create_sent_at: float | None = None
    stalled_since: float | None = None  # when the project was first seen STALLED (watched, not failed)
    uploaded_at: str | None = None
    checks: int = 0  # the sweeper's looks at the running project
    next_check: float = 0.0  # wall-clock seconds before which the sweeper leaves it alone
    webhook_looked_at: float = 0.0  # when a webhook call last had OpusClip asked (not the sweeper's schedule)
    rendering_since: float = 0.0  # when a conclusion first found the COMPLETE project's clips still rendering
    conclude_failures: int = 0  # conclusions in a row that failed: each puts the next one further off
    clip_count: int | None = None
    manifest_uri: str | None = None
    # clip id → its copy, noted with the record's next write (a takeover finds the rest by their marks)
    copied: dict[str, dict[str, Any]] = field(default_factory=dict)
    concluded_at: str | None = None
    updated_at: str = ""

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)
        data["source"] = self.source.to_record()
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> VideoRecord:
        data = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["source"] = StorageObject.from_message(data["source"])
        return cls(**values)

    def replace(self, **changes: Any) -> VideoRecord:
        changes.setdefault("updated_at", now_rfc3339())
        return dataclasses.replace(self, **changes)

    @property
    def upload_complete(self) -> bool:
        return bool(self.upload_id) and self.committed >= self.source.size > 0

    def lease_live(self, now: float) -> bool:
        return bool(self.lease_owner) and self.lease_expires > now

    def clip_request(self) -> ClipRequest:
        """The hand-over message for this video's completed upload."""
        return ClipRequest(
            upload_id=self.upload_id or "",
            source=self.source,
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


def object_from_key(key: str) -> StorageObject:
    """The object a ``bucket/name#generation`` key names (size unknown: it is not needed to find it).
    ``ValueError`` for anything else."""
    rest, _, generation = key.rpartition("#")
    bucket, _, name = rest.partition("/")
    if not bucket or not name:
        raise ValueError(f"not a video key: {key!r}")
    return StorageObject(bucket=bucket, name=name, generation=parse_generation(generation), size=0)


# What a video's record knows of one project's life at OpusClip (its stage, stall and render clocks,
# failed conclusions, the webhook's last look): a new project of the same upload starts it afresh.
PROJECT_STORY_RESET: dict[str, Any] = {
    "stage": None,
    "stalled_since": None,
    "rendering_since": 0.0,
    "conclude_failures": 0,
    "webhook_looked_at": 0.0,
}
