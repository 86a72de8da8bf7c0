"""CloudEvent payloads → typed values. Pure logic."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opus_pipeline.errors import PermanentError, PoisonMessageError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")
MAX_OBJECT_NAME_BYTES = 1024  # Cloud Storage's limit on an object name, in bytes of UTF-8


def parse_generation(text: object) -> int:
    """An object generation as Cloud Storage writes it: ASCII digits only (``int`` would also take
    ``" 5"``, ``"+5"``, ``"5_0"`` or other scripts' digits, which name no object). ``ValueError``."""
    raw = str(text)
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"not a generation: {raw!r}")
    return int(raw)


def name_problem(name: str, derived: Iterable[str] = ()) -> str | None:
    """Why an object called ``name`` cannot be processed, or ``None``.

    Cloud Storage names are 1–1024 bytes of UTF-8 without CR or LF; ``derived`` are the names the
    pipeline makes from it (the state record's path), which must fit the same limit, or every
    write of them fails and the event is retried for a day to no end.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "the object name is not valid UTF-8"
    if not 1 <= size <= MAX_OBJECT_NAME_BYTES:
        return f"the object name is {size} bytes; Cloud Storage allows 1 to {MAX_OBJECT_NAME_BYTES}"
    if "\r" in name or "\n" in name:
        return "the object name contains a carriage return or line feed"
    for path in derived:
        if len(path.encode("utf-8")) > MAX_OBJECT_NAME_BYTES:
            return (
                f"the object name is {size} bytes: too long for the pipeline's state record "
                f"({len(path.encode('utf-8'))} of at most {MAX_OBJECT_NAME_BYTES} bytes); rename it shorter"
            )
    return None


def foreign_bucket(bucket: str, source_bucket: str) -> str | None:
    """Why an event or message naming ``bucket`` is not this pipeline's, or ``None``: it serves
    ``SOURCE_BUCKET`` only (output folders are keyed by object name and would collide across buckets)."""
    if bucket == source_bucket:
        return None
    return f"bucket {bucket!r} is not this pipeline's SOURCE_BUCKET {source_bucket!r}"


@dataclass(frozen=True)
class StorageObject:
    """One uploaded version (``generation``) of one object: the pipeline's typed source.

    It travels as a dict only at the edges: ``to_message`` for the clip request,
    ``to_record`` for the state record (which also keeps ``crc32c``).
    """

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str = ""
    md5_hash: str | None = None
    crc32c: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
    content_encoding: str = field(default="", compare=False)  # "gzip" after `gcloud storage cp -Z`

    @property
    def key(self) -> str:
        """The idempotency key of one uploaded version of one object."""
        return f"{self.bucket}/{self.name}#{self.generation}"

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def labels(self) -> dict[str, str]:
        return {"bucket": self.bucket, "object": self.name, "generation": str(self.generation)}

    def ref(self) -> dict[str, str]:
        """Which version of which object, as the results message and the manifest name it."""
        return {"bucket": self.bucket, "name": self.name, "generation": str(self.generation)}

    def to_message(self) -> dict[str, Any]:
        """The ``source`` block of the clip-request message (``generation`` as a string, as GCS)."""
        return {
            "bucket": self.bucket,
            "name": self.name,
            "generation": str(self.generation),
            "size": self.size,
            "contentType": self.content_type,
            "md5Hash": self.md5_hash,
        }

    def to_record(self) -> dict[str, Any]:
        return {**self.to_message(), "crc32c": self.crc32c}

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> StorageObject:
        """From a ``source`` block (message or record); ``KeyError``/``ValueError`` if malformed."""
        return cls(
            bucket=str(data["bucket"]),
            name=str(data["name"]),
            generation=parse_generation(data["generation"]),
            size=int(data["size"]),
            content_type=str(data.get("contentType") or ""),
            md5_hash=data.get("md5Hash"),
            crc32c=data.get("crc32c"),
        )


def storage_object(data: Mapping[str, Any] | None) -> StorageObject:
    """Parse the object resource of a ``google.cloud.storage.object.v1.finalized`` event."""
    if not isinstance(data, Mapping):
        raise PermanentError("the event carries no object resource", reason="bad-event")
    try:
        return StorageObject(
            bucket=str(data["bucket"]),
            name=str(data["name"]),
            generation=parse_generation(data["generation"]),
            size=int(data.get("size", 0)),
            content_type=str(data.get("contentType") or ""),
            md5_hash=data.get("md5Hash"),
            crc32c=data.get("crc32c"),
            metadata=dict(data.get("metadata") or {}),
            content_encoding=str(data.get("contentEncoding") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"malformed object resource in event: {exc!r}", reason="bad-event") from None


@dataclass(frozen=True)
class Skip:
    """Why an object is not ingested; ``show`` says whether to mark it ``skipped`` for people.

    Placeholders and objects outside ``SOURCE_PREFIX`` are not this pipeline's to touch.
    """

    reason: str
    show: bool


def skip_reason(obj: StorageObject, source_prefix: str, state_bucket: str = "") -> Skip | None:
    """Why this object is not a video for us to ingest, or ``None`` when it is."""
    if obj.bucket == state_bucket:  # a trigger on the state bucket would feed on its own writes
        return Skip("the pipeline's own state bucket (check the trigger's bucket filter)", show=False)
    if obj.name.endswith("/"):
        return Skip("folder placeholder", show=False)
    if source_prefix and not obj.name.startswith(source_prefix):
        return Skip(f"outside SOURCE_PREFIX {source_prefix!r}", show=False)
    is_video_type = obj.content_type.lower().startswith("video/")
    if not is_video_type and not obj.name.lower().endswith(VIDEO_EXTENSIONS):
        return Skip(f"not a video (contentType {obj.content_type or 'unset'!r})", show=True)
    return None


def _pubsub_message(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``message`` of a ``google.cloud.pubsub.topic.v1.messagePublished`` event, or ``{}``.

    Eventarc and a push subscription (through functions-framework) both deliver
    ``{"message": {"data": base64, "attributes", "messageId"}, "subscription"}``.
    """
    message = data.get("message") if isinstance(data, Mapping) else None
    return message if isinstance(message, Mapping) else {}


def pubsub_attributes(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The message attributes of a Pub/Sub event (``{}`` when it has none or is malformed)."""
    attributes = _pubsub_message(data).get("attributes")
    return attributes if isinstance(attributes, Mapping) else {}


def pubsub_payload(data: Mapping[str, Any] | None) -> bytes:
    """The message bytes of a Pub/Sub event (``_pubsub_message``)."""
    encoded = _pubsub_message(data).get("data")
    if not isinstance(encoded, str):
        raise PoisonMessageError("the event carries no Pub/Sub message data")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonMessageError("the Pub/Sub message data is not base64") from None
