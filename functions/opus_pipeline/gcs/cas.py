"""The one compare-and-swap on Cloud Storage generations, used by every shared object.

The ledger's records, the admission slots and queue entries and the request budget's grant slots
are JSON objects in ``STATE_BUCKET``; every change is a read, an edit, and a write (or a delete)
with ``ifGenerationMatch`` set to the generation read (``0``: the object must not exist yet, which
makes ``create`` a create-only claim). Two invocations can therefore never both believe they
advanced the same object. Writes are single-request uploads: the emulator honours generation
preconditions on those (not on resumable ones). ``listing`` reads a family of such objects (their
generations and the small metadata they carry) in one list call, so that a mechanism spread over
many objects costs one read, not one per object.

Storage trouble on these objects (Cloud Storage's 429 for more than about one write per second
to one object, a 503, the client library giving up its own retries) is mapped here, once, to a
``TransientError``: the platform redelivers, nothing is lost, and no caller sees a library type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from opus_pipeline.errors import ConflictError, ContendedError, TransientError

# How often one change reads and writes again after losing the race to another instance.
CAS_ATTEMPTS = 20
# An answer cut or garbled on the way (the library's checksum of it fails): the call may have
# landed, and its retry is not the library's to make.
ANSWER_LOST = (DataCorruption, InvalidResponse)
# What Cloud Storage answers when it is busy or throttles, or an answer lost: worth a redelivery,
# never a failure.
STORAGE_TRANSIENT = (
    gexc.TooManyRequests,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.RetryError,
    *ANSWER_LOST,
)

# Every write here is conditional, so retrying it is safe; the library's own backoff (1 s, doubling)
# waits far past the moment Cloud Storage's per-object write limit (about one a second) lets the
# next write in, and on a record that is the pipeline's critical path. Short steps instead.
CAS_RETRY: Retry = DEFAULT_RETRY.with_delay(initial=0.25, multiplier=1.3, maximum=2.0)
R = TypeVar("R")


@dataclass(frozen=True)
class Edit(Generic[R]):
    """What an edit of a shared object decided: its ``result``, and the object's new bytes
    (``None``: leave the object as it is, write nothing)."""

    result: R
    raw: bytes | None = None


@dataclass(frozen=True)
class Versioned:
    """An object's bytes (``None``: it does not exist) and the generation they were read at."""

    raw: bytes | None
    generation: int


@dataclass(frozen=True)
class Listed:
    """One object of a listing: its name, generation and custom metadata."""

    name: str
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)


def listing(bucket: storage.Bucket, prefix: str) -> list[Listed]:
    """Every object whose name starts with ``prefix``, in name order, in as few list calls as the
    pages take (reads are not subject to the per-object write limit)."""
    try:
        return [
            Listed(blob.name, int(blob.generation), dict(blob.metadata or {}))
            for blob in bucket.list_blobs(prefix=prefix)
        ]
    except STORAGE_TRANSIENT as exc:
        raise storage_trouble(exc, f"list {prefix}") from None


def until_won(attempt: Callable[[], R], what: str, attempts: int = CAS_ATTEMPTS) -> R:
    """Run ``attempt`` (a read, an edit, conditional writes) again each time it loses a race
    (``ConflictError``); after ``attempts`` losses the object is ``ContendedError``: transient,
    and not an ``InProgressError``, since no other invocation holds this one's lease. The one
    retry of every compare-and-swap change, on one object or on a family of them."""
    for _ in range(attempts):
        try:
            return attempt()
        except ConflictError:
            continue
    raise ContendedError(f"{what} kept changing under this invocation; it will be tried again")


def storage_trouble(exc: Exception, what: str) -> TransientError:
    """The one wording of a storage failure on a shared object (no URL, no credential in it)."""
    return TransientError(f"Cloud Storage could not {what} ({type(exc).__name__}); it will be tried again")


class CasObject:
    """One object in a bucket, read with its generation and written only by compare-and-swap."""

    def __init__(self, bucket: storage.Bucket, name: str) -> None:
        self._bucket = bucket
        self.name = name

    def read(self) -> Versioned:
        blob = self._bucket.blob(self.name)
        try:
            raw = blob.download_as_bytes()
        except gexc.NotFound:
            return Versioned(None, 0)
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, f"read {self.name}") from None
        return Versioned(raw, int(blob.generation))

    def write(self, raw: bytes, generation: int, metadata: dict[str, str] | None = None) -> int:
        """Write ``raw`` (and ``metadata``, which a ``listing`` shows) if the object is still at
        ``generation`` (0: absent); the new generation. ``ConflictError`` when someone else wrote
        it since."""
        blob = self._bucket.blob(self.name)
        blob.metadata = metadata
        try:
            blob.upload_from_string(
                raw, content_type="application/json", if_generation_match=generation, retry=CAS_RETRY
            )
        except gexc.PreconditionFailed:
            # The client retries a conditional write whose answer was lost; its retry then fails
            # the precondition its own first attempt moved on. Our bytes there mean it was ours.
            if self._holds(blob, raw):
                return int(blob.generation)
            raise ConflictError(self.name) from None
        except ANSWER_LOST as exc:
            # The write may have landed with its answer lost: then it is ours, and the caller's
            # next compare-and-swap must start from it, not fail on it.
            if self._holds(blob, raw):
                return int(blob.generation)
            raise storage_trouble(exc, f"write {self.name}") from None
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, f"write {self.name}") from None
        return int(blob.generation)

    def create(self, raw: bytes, metadata: dict[str, str] | None = None) -> int:
        """Create the object only if it does not exist: a claim exactly one caller wins.
        ``raw`` should be unique to the caller, so that a retry of its own landed create is known."""
        return self.write(raw, 0, metadata)

    def delete(self, generation: int) -> None:
        """Delete the object if it is still at ``generation``; already gone is fine.
        ``ConflictError`` when someone else wrote it since."""
        try:
            self._bucket.blob(self.name).delete(if_generation_match=generation, retry=CAS_RETRY)
        except gexc.NotFound:
            return  # gone already (or our own retried delete landed)
        except gexc.PreconditionFailed:
            raise ConflictError(self.name) from None
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, f"delete {self.name}") from None

    def change(self, edit: Callable[[bytes | None], Edit[R]], attempts: int = CAS_ATTEMPTS) -> tuple[R, int]:
        """Apply ``edit`` to the current bytes and write its result by CAS, again on a lost race.
        Returns the edit's result and the generation the object is at afterwards."""

        def once() -> tuple[R, int]:
            current = self.read()
            outcome = edit(current.raw)
            if outcome.raw is None or outcome.raw == current.raw:
                return outcome.result, current.generation
            return outcome.result, self.write(outcome.raw, current.generation)

        return until_won(once, self.name, attempts)

    @staticmethod
    def _holds(blob: storage.Blob, raw: bytes) -> bool:
        """Whether ``blob`` now holds exactly ``raw`` (``blob.generation`` is then the one to use)."""
        try:
            return blob.download_as_bytes() == raw
        except gexc.NotFound:
            return False
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, f"read {blob.name} back") from None
