"""The messages between the functions and to the user's tools: the clip request (ingest → project
creation), the ingest request (the sweeper → ingest, for a video admitted against this month's
credits), the clip result, and the sweep tick (a freed slot's, or a webhook's for one video). Pure
logic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opus_pipeline.domain.events import StorageObject, name_problem
from opus_pipeline.domain.preferences import Preferences
from opus_pipeline.errors import PoisonMessageError, PreferenceError

SCHEMA_VERSION = 1
MAX_UPLOAD_ID_CHARS = 256  # OpusClip's ids are short; the id travels in a header (x-opus-upload-id)
_SOURCE_FIELDS = {"bucket": str, "name": str, "generation": str, "size": int}


def _versioned_body(data: bytes) -> dict:
    """A message body: a UTF-8 JSON object of ``schemaVersion`` 1, else ``PoisonMessageError``."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PoisonMessageError("the message body is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise PoisonMessageError("the message body is not a JSON object")
    version = body.get("schemaVersion")
    if type(version) is not int or version != SCHEMA_VERSION:  # not 1.0, not true: JSON's 1 exactly
        raise PoisonMessageError(f"unknown schemaVersion {version!r}; expected the integer 1")
    return body


@dataclass(frozen=True)
class ClipRequest:
    """``{"schemaVersion": 1, "uploadId", "source", "preferences", "uploadedAt"}``."""

    upload_id: str
    source: StorageObject
    preferences: Preferences
    uploaded_at: str

    def encode(self) -> bytes:
        return json.dumps(
            {
                "schemaVersion": SCHEMA_VERSION,
                "uploadId": self.upload_id,
                "source": self.source.to_message(),
                "preferences": self.preferences.to_message(),
                "uploadedAt": self.uploaded_at,
            },
            ensure_ascii=False,
        ).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        return {
            "uploadId": self.upload_id,
            "bucket": self.source.bucket,
            "name": self.source.name,
            "generation": str(self.source.generation),
        }

    @classmethod
    def decode(cls, data: bytes) -> ClipRequest:
        """Parse and validate a message body; ``PoisonMessageError`` says what is wrong."""
        body = _versioned_body(data)
        upload_id = body.get("uploadId")
        if not isinstance(upload_id, str) or not upload_id:
            raise PoisonMessageError("uploadId is missing or not a string")
        if not upload_id.isprintable() or len(upload_id) > MAX_UPLOAD_ID_CHARS:
            raise PoisonMessageError(
                f"uploadId has control or non-printable characters, or is over {MAX_UPLOAD_ID_CHARS} characters"
            )
        source = body.get("source")
        if not isinstance(source, dict):
            raise PoisonMessageError("source is missing or not an object")
        for name, kind in _SOURCE_FIELDS.items():
            if not isinstance(source.get(name), kind) or isinstance(source.get(name), bool):
                raise PoisonMessageError(f"source.{name} is missing or not a {kind.__name__}")
        try:
            typed_source = StorageObject.from_message(source)
        except ValueError:
            raise PoisonMessageError("source.generation is not a whole number (digits only)") from None
        if problem := name_problem(typed_source.name):
            raise PoisonMessageError(f"source.name: {problem}")
        prefs = body.get("preferences", {})
        if not isinstance(prefs, dict):
            raise PoisonMessageError("preferences is not an object")
        try:
            preferences = Preferences.from_message(prefs)
        except PreferenceError as exc:
            raise PoisonMessageError(f"preferences: {exc}") from None
        uploaded_at = body.get("uploadedAt")
        if not isinstance(uploaded_at, str):
            raise PoisonMessageError("uploadedAt is missing or not a string")
        return cls(upload_id=upload_id, source=typed_source, preferences=preferences, uploaded_at=uploaded_at)


@dataclass(frozen=True)
class IngestRequest:
    """``{"schemaVersion": 1, "source": {"bucket", "name", "generation"}}`` on ``INGEST_REQUESTS_TOPIC``:
    upload this version of this object now. Ingest acts on it only for a video its ledger holds as
    waiting for credits, so a forged or replayed request can start nothing else."""

    source: StorageObject

    def encode(self) -> bytes:
        return json.dumps({"schemaVersion": SCHEMA_VERSION, "source": self.source.ref()}).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        return self.source.ref()

    @classmethod
    def decode(cls, data: bytes) -> IngestRequest:
        """Parse and validate a message body; ``PoisonMessageError`` says what is wrong."""
        source = _versioned_body(data).get("source")
        fields = ("bucket", "name", "generation")
        if not isinstance(source, dict) or not all(isinstance(source.get(f), str) and source[f] for f in fields):
            raise PoisonMessageError("source must be an object of bucket, name and generation strings")
        if not (source["generation"].isascii() and source["generation"].isdigit()):
            raise PoisonMessageError("source.generation is not a whole number")
        return cls(StorageObject(source["bucket"], source["name"], int(source["generation"]), size=0))


@dataclass(frozen=True)
class ClipResult:
    """One message per concluded video on ``CLIP_RESULTS_TOPIC``, for the user's own tools."""

    source: StorageObject
    upload_id: str
    project_id: str
    status: str
    clip_count: int
    manifest: str | None
    reason: str | None = None
    duration_seconds: float | None = None
    credits: int | None = None

    def encode(self) -> bytes:
        body = {
            "schemaVersion": SCHEMA_VERSION,
            "source": self.source.ref(),
            "uploadId": self.upload_id,
            "projectId": self.project_id,
            "status": self.status,
            "clipCount": self.clip_count,
            "manifest": self.manifest,
            "durationSeconds": self.duration_seconds,
            "credits": self.credits,
        }
        if self.reason:
            body["reason"] = self.reason
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        return {
            "projectId": self.project_id,
            "status": self.status,
            "bucket": self.source.bucket,
            "name": self.source.name,
            "generation": str(self.source.generation),
        }


SWEEP_ALL = "all"
SWEEP_ADMIT = "admit"
SWEEP_PUBLISH = "publish"  # carry out the publishing plans marked for it (``usecases/publish.py``)
SWEEP_VIDEO = "video"  # look at the one video a webhook named (``usecases/sweep.look_at``)


@dataclass(frozen=True)
class SweepTick:
    """ "Run now" on the sweeper's topic (Cloud Scheduler's ticks say the same; the sweeper reads
    neither's body). ``why`` is for people reading the topic. ``scope`` ``admit`` (a freed slot's
    tick) asks only for the admission of the next waiting videos, not for a whole sweep: with a
    long queue, the sweep reads every waiting video's record, and a burst frees a slot every second.
    Scope ``video`` (the webhook receiver's, which hands its look and conclusion on) asks for a look
    at the one video the body names (``video``: its key, which may be longer than an attribute may).
    The scope can only make a tick do less: a scheduled tick (no attributes) and anything else sweep
    all."""

    why: str
    scope: str = SWEEP_ALL
    video: str | None = None

    def encode(self) -> bytes:
        body = {"sweep": self.why} if self.video is None else {"sweep": self.why, "video": self.video}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        return {"why": self.why, "scope": self.scope}

    @staticmethod
    def scope_of(attributes: Mapping[str, Any]) -> str:
        """The scope a delivered tick's attributes (``events.pubsub_attributes``) ask for:
        ``admit``, ``video`` or ``publish`` when they say so, else ``all``."""
        scope = attributes.get("scope")
        return scope if scope in (SWEEP_ADMIT, SWEEP_VIDEO, SWEEP_PUBLISH) else SWEEP_ALL

    @staticmethod
    def video_of(data: bytes) -> str:
        """The video key a ``video`` tick's body names; ``PoisonMessageError`` when it names none."""
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise PoisonMessageError("the sweep tick's body is not UTF-8 JSON") from None
        video = body.get("video") if isinstance(body, dict) else None
        if not isinstance(video, str) or not video:
            raise PoisonMessageError("a video sweep tick names no video")
        return video
