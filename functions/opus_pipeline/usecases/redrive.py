"""Use case: re-drive a video that failed, or that the platform gave up redelivering.

Never a duplicate: when the bytes are at OpusClip the clip request is published again (project
creation claims the record before it calls OpusClip); otherwise the object is rewritten onto
itself, a new generation and so a new finalize event. A video being worked on is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from google.cloud import storage

from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.preferences import parse_metadata
from opus_pipeline.domain.record import Stored
from opus_pipeline.errors import NothingToRetryError, PermanentError
from opus_pipeline.gcs.ledger import Ledger


@dataclass(frozen=True)
class Retried:
    """What was done, for the person who asked."""

    action: states.RetryAction
    detail: str


def latest_record(ledger: Ledger, bucket: str, name: str) -> Stored:
    """The record of the newest generation of ``gs://bucket/name``."""
    found = [s for s in ledger.records(bucket, name) if s.record.source.name == name]
    if not found:
        raise NothingToRetryError(f"no video record for gs://{bucket}/{name}")
    return max(found, key=lambda s: s.record.source.generation)


def retry_video(
    storage_client: storage.Client,
    ledger: Ledger,
    bucket: str,
    name: str,
    publish: Callable[[ClipRequest], None],
    wall: Callable[[], float] = time.time,
) -> Retried:
    """Re-drive ``gs://bucket/name``; ``PermanentError`` says why nothing was done."""
    stored = latest_record(ledger, bucket, name)
    rec = stored.record
    lease_live = rec.lease_live(wall())
    action = states.retry_action(rec.state, rec.upload_complete, lease_live)
    if action is states.RetryAction.NONE:
        busy = " and being worked on right now" if lease_live else ""
        raise NothingToRetryError(f"gs://{bucket}/{name} is {rec.state}{busy}: there is nothing to retry")
    if action is states.RetryAction.REPUBLISH:
        return _republish(ledger, stored, publish)
    return _reingest(storage_client, ledger, stored)


def _republish(ledger: Ledger, stored: Stored, publish: Callable[[ClipRequest], None]) -> Retried:
    written = ledger.update(stored, state=states.QUEUED, reason=None, error=None, reset_at=None)
    if written is None:
        raise NothingToRetryError("the video's record changed meanwhile; look at `status` and try again")
    rec = written.record
    publish(rec.clip_request())
    return Retried(
        states.RetryAction.REPUBLISH, f"asked again for the clip project of {rec.source.uri} (upload {rec.upload_id})"
    )


def _reingest(storage_client: storage.Client, ledger: Ledger, stored: Stored) -> Retried:
    source = stored.record.source
    bucket = storage_client.bucket(source.bucket)
    blob = bucket.get_blob(source.name)
    if blob is None:
        raise NothingToRetryError(f"{source.uri} no longer exists; upload it again")
    try:
        parse_metadata(blob.metadata)
    except PermanentError as exc:
        raise NothingToRetryError(f"fix the object's metadata first: {exc}") from None
    if stored.record.state != states.FAILED:
        # The old event may still be redelivered; ending its record first keeps it from
        # streaming the same bytes beside the new generation's upload.
        ended = ledger.update(
            stored, state=states.FAILED, reason="re-driven", error="re-driven by opus-pipeline retry", lease_owner=None
        )
        if ended is None:
            raise NothingToRetryError("the video's record changed meanwhile; look at `status` and try again")
    copy = bucket.copy_blob(blob, bucket, source.name)  # a new generation: a new finalize event
    return Retried(states.RetryAction.REINGEST, f"delivered {source.uri} again as generation {copy.generation}")
