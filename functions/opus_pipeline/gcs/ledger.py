"""The private per-video state record in ``STATE_BUCKET``, written only by compare-and-swap.

Creation uses ``if_generation_match=0``; every later write uses the generation that was read, so
two invocations can never both believe they advanced the same record. Writes are single-request
uploads: the emulator honours generation preconditions on those (not on resumable ones).

``Ledger.claim`` is the one claim protocol of every use case: read (or create) the record, let
the use case decide, and take the lease by CAS when the decision says so, again on a conflict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.preferences import Preferences
from opus_pipeline.errors import (
    ConflictError,
    IllegalTransitionError,
    InProgressError,
    PipelineError,
    UnknownVideoError,
)

CLAIM_ATTEMPTS = 5


def written_by_us(blob: storage.Blob, raw: bytes) -> bool:
    """Whether ``blob`` now holds exactly ``raw`` (``blob.generation`` is then the one to use)."""
    try:
        return blob.download_as_bytes() == raw
    except gexc.NotFound:
        return False


@dataclass(frozen=True)
class VideoRecord:
    """One uploaded version of one object. ``session_url`` is a credential: never log it."""

    source: StorageObject
    state: str = states.RECEIVED
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
    checks: int = 0  # the sweeper's looks at the running project
    next_check: float = 0.0  # wall-clock seconds before which the sweeper leaves it alone
    clip_count: int | None = None
    manifest_uri: str | None = None
    copied: dict[str, dict[str, Any]] = field(default_factory=dict)  # clip id → its copy, as made
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


def record_path(obj: StorageObject) -> str:
    return f"videos/{obj.key}.json"


OPEN_PREFIX = "open/"


def open_marker_path(obj: StorageObject) -> str:
    return f"{OPEN_PREFIX}{obj.key}"


def _key_to_object(key: str) -> StorageObject:
    """The object a ``bucket/name#generation`` key names (size unknown: it is not needed to find it)."""
    rest, _, generation = key.rpartition("#")
    bucket, _, name = rest.partition("/")
    if not bucket or not name:
        raise ValueError(f"not a video key: {key!r}")
    return StorageObject(bucket=bucket, name=name, generation=int(generation), size=0)


class Step(Protocol):
    """A use case's decision about a record; ``claims`` says whether it takes the lease."""

    @property
    def claims(self) -> bool: ...


StepT = TypeVar("StepT", bound=Step)


@dataclass(frozen=True)
class Lease:
    """Who claims, for how long, on which clock (``wall``: lease expiries are compared across
    instances, so they are wall-clock seconds)."""

    owner: str
    seconds: float
    wall: Callable[[], float] = time.time

    def until(self) -> float:
        return self.wall() + self.seconds


class Ledger:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)

    def _upload(self, record: VideoRecord, if_generation_match: int) -> Stored:
        blob = self._bucket.blob(record_path(record.source))
        raw = record.to_json()
        try:
            blob.upload_from_string(raw, content_type="application/json", if_generation_match=if_generation_match)
        except gexc.PreconditionFailed:
            # The client retries a conditional write whose answer was lost; its retry then fails
            # the precondition its own first attempt moved on. Our bytes there mean it was ours.
            if written_by_us(blob, raw):
                return Stored(record, int(blob.generation))
            raise ConflictError(blob.name) from None
        return Stored(record, int(blob.generation))

    def read(self, obj: StorageObject) -> Stored | None:
        blob = self._bucket.blob(record_path(obj))
        try:
            raw = blob.download_as_bytes()
        except gexc.NotFound:
            return None
        return Stored(VideoRecord.from_json(raw), int(blob.generation))

    def create(self, record: VideoRecord, initial: str | None = None) -> Stored:
        """Write a new record, which starts in ``initial`` (by default its own state) and may
        have moved on from there already; ``ConflictError`` if one exists."""
        initial = initial or record.state
        if initial not in states.INITIAL_STATES:
            raise IllegalTransitionError(f"a record cannot start as {initial!r}")
        states.check_transition(initial, record.state)
        return self._upload(record.replace(), if_generation_match=0)

    def write(self, stored: Stored, record: VideoRecord) -> Stored:
        """Replace ``stored`` with ``record``; ``ConflictError`` if it changed since it was read."""
        states.check_transition(stored.record.state, record.state)
        return self._upload(record.replace(), if_generation_match=stored.generation)

    def update(self, stored: Stored, **changes: Any) -> Stored | None:
        """One CAS write without a lease (bookkeeping); ``None`` when someone wrote meanwhile."""
        try:
            return self.write(stored, stored.record.replace(**changes))
        except ConflictError:
            return None

    # -- the index of running projects: one empty object per project created and not concluded.
    # It keeps the sweeper's listing proportional to the projects in flight, not to every video.

    def mark_open(self, obj: StorageObject) -> None:
        self._bucket.blob(open_marker_path(obj)).upload_from_string(b"", content_type="text/plain")

    def mark_concluded(self, obj: StorageObject) -> None:
        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(open_marker_path(obj)).delete()

    def open_projects(self) -> list[StorageObject]:
        """The videos whose project runs, oldest marker first (the sweeper's order)."""
        markers = sorted(self._bucket.list_blobs(prefix=OPEN_PREFIX), key=lambda b: (b.time_created, b.name))
        return [_key_to_object(blob.name[len(OPEN_PREFIX) :]) for blob in markers]

    def read_key(self, key: str) -> Stored | None:
        """The record of ``bucket/name#generation`` (as a webhook URL names it), if any."""
        try:
            return self.read(_key_to_object(key))
        except ValueError:
            return None

    def records(self, bucket: str, prefix: str = "") -> Iterator[Stored]:
        """Every record of objects in ``bucket`` whose name starts with ``prefix``."""
        for blob in self._bucket.list_blobs(prefix=f"videos/{bucket}/{prefix}"):
            yield Stored(VideoRecord.from_json(blob.download_as_bytes()), int(blob.generation))

    def claim(
        self,
        obj: StorageObject,
        decide: Callable[[VideoRecord], StepT],
        lease: Lease,
        new_record: Callable[[], VideoRecord] | None,
        **changes: Any,
    ) -> tuple[HeldRecord, StepT]:
        """Read (or start with ``new_record``) the record of ``obj`` and ``decide`` on it; when the
        step ``claims``, take the lease (and apply ``changes``) by CAS. A lost race decides again.
        Without ``new_record``, a missing record is ``UnknownVideoError``."""
        for _ in range(CLAIM_ATTEMPTS):
            stored = self.read(obj)
            if stored is None and new_record is None:
                raise UnknownVideoError(obj.key)
            current = stored.record if stored else new_record()
            step = decide(current)
            record = current
            if step.claims:
                record = record.replace(lease_owner=lease.owner, lease_expires=lease.until(), **changes)
            try:
                if stored is None:
                    stored = self.create(record, initial=current.state)
                elif step.claims:
                    stored = self.write(stored, record)
            except ConflictError:
                continue
            return HeldRecord(self, stored, lease), step
        raise InProgressError("the video's record kept changing while this invocation tried to claim it")


class HeldRecord:
    """The record an invocation holds the lease of; each write is a CAS on the one it last wrote.

    Losing a CAS means another invocation took the lease over: ``InProgressError`` stops this one.
    Writes are serialized by a lock, so ``keep_alive``'s renewals and the holder's own writes
    never race each other.
    """

    def __init__(self, ledger: Ledger, stored: Stored, lease: Lease) -> None:
        self._ledger = ledger
        self._stored = stored
        self._lease = lease
        self._lock = threading.RLock()

    @property
    def record(self) -> VideoRecord:
        return self._stored.record

    def save(self, **changes: Any) -> None:
        with self._lock:
            try:
                self._stored = self._ledger.write(self._stored, self.record.replace(**changes))
            except ConflictError:
                raise InProgressError("another invocation took over this video's record") from None

    def renew(self, **changes: Any) -> None:
        """Extend the lease (with ``changes``, e.g. the committed offset) while it is ours."""
        with self._lock:
            if self.record.lease_owner == self._lease.owner:
                self.save(lease_expires=self._lease.until(), **changes)

    def release(self, **changes: Any) -> None:
        """Write ``changes`` and give the lease up, so a retry can go on at once."""
        self.save(lease_owner=None, lease_expires=0.0, **changes)

    def settle(self, state: str, exc: PipelineError, **changes: Any) -> None:
        """End in ``state`` for the reason ``exc`` gives; an open session is forgotten."""
        self.release(state=state, reason=exc.reason, error=str(exc), session_url=None, **changes)

    @contextlib.contextmanager
    def keep_alive(self, on_lost: Callable[[Exception], None] | None = None) -> Iterator[None]:
        """Renew the lease every third of its length while the body runs, from a thread of its
        own: a blocking call (a slow PUT, a long ``Retry-After``) cannot outlive the lease while
        this process lives, and a crashed process stops renewing, so its lease lapses."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self._lease.seconds / 3):
                try:
                    self.renew()
                except Exception as exc:  # lost to another invocation, or storage trouble
                    if on_lost is not None:
                        on_lost(exc)
                    if isinstance(exc, InProgressError):
                        return

        renewer = threading.Thread(target=renew_until_stopped, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
