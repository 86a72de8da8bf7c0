"""Use case: re-drive a video that failed, or that the platform gave up redelivering.

Never a duplicate: when the bytes are at OpusClip the clip request is published again (project
creation claims the record before it calls OpusClip); otherwise the object is rewritten onto
itself, a new generation and so a new finalize event. A video being worked on is left alone.

Never a second project unasked: a video whose project stalled has that project looked at first
(followed again if OpusClip moved it on), and a video whose creation went unanswered is looked up in
OpusClip's project list by the creation itself before anything is sent. Only ``new_project``
(``--new-project``) asks OpusClip for another project, spending its credits again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.cloud import storage

from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.preferences import parse_metadata
from opus_pipeline.domain.record import PROJECT_STORY_RESET, Stored
from opus_pipeline.errors import NothingToRetryError, OpusApiError, PermanentError
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.open_index import OpenProjects


@dataclass(frozen=True)
class Retried:
    """What was done, for the person who asked."""

    action: states.RetryAction
    detail: str


STALLED_REASON = "project-stalled"
# What a new project (``--new-project``) owes nothing to: the old one's creation and its story. Its
# stage above all: a video ``creating`` whose record still says STALLED holds no slot
# (``states.holds_slot``), so the sweeper would give the slot away during the create call, and a new
# project first seen STALLED would fail at once on the old one's grace.
NEW_PROJECT: dict[str, Any] = {
    "project_id": None,
    "create_attempts": 0,
    "create_since": None,
    "create_sent_at": None,
    **PROJECT_STORY_RESET,
}


class ProjectReader(Protocol):
    """OpusClip's ``GET /api/clip-projects/{id}`` (``OpusClient``)."""

    def get_project(self, project_id: str) -> dict[str, Any]: ...


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
    *,
    new_project: bool = False,
    opus: ProjectReader | None = None,
    open_projects: OpenProjects | None = None,
) -> Retried:
    """Re-drive ``gs://bucket/name``; ``PermanentError`` says why nothing was done. ``opus`` is asked
    about a stalled video's project (None: it cannot be, so only ``new_project`` re-drives it), and a
    project it moved on is put back in ``open_projects`` for the sweeper."""
    stored = latest_record(ledger, bucket, name)
    rec = stored.record
    lease_live = rec.lease_live(wall())
    action = states.retry_action(rec.state, rec.upload_complete, lease_live)
    if action is states.RetryAction.NONE:
        busy = " and being worked on right now" if lease_live else ""
        raise NothingToRetryError(f"gs://{bucket}/{name} is {rec.state}{busy}: there is nothing to retry")
    if action is states.RetryAction.REPUBLISH and new_project:
        return _republish(ledger, stored, publish, **NEW_PROJECT)
    if rec.state == states.FAILED and rec.reason == STALLED_REASON and rec.project_id:
        return _follow_stalled(ledger, stored, opus, open_projects)
    if action is states.RetryAction.REPUBLISH:
        return _republish(ledger, stored, publish)
    return _reingest(storage_client, ledger, stored)


def _follow_stalled(
    ledger: Ledger, stored: Stored, opus: ProjectReader | None, open_projects: OpenProjects | None
) -> Retried:
    """The stalled project is looked at first: followed again when OpusClip moved it on, else left.
    Its stage stays STALLED, the slot given up: the sweeper's first look (due at once) notes the stage
    and, the project running again, takes a slot back for it (``conclude._note_stage``)."""
    rec = stored.record
    new = f"`opus-pipeline retry --new-project {rec.source.uri}` creates a new project (and spends credits)"
    if opus is None or open_projects is None:
        raise NothingToRetryError(f"set OPUS_API_KEY so that project {rec.project_id} is looked at first, or {new}")
    try:
        stage = opus.get_project(rec.project_id or "")["stage"]
    except OpusApiError as exc:
        raise NothingToRetryError(f"OpusClip cannot show project {rec.project_id} ({exc}); {new}") from None
    if stage == "STALLED":
        raise NothingToRetryError(f"project {rec.project_id} is still STALLED at OpusClip; {new}")
    open_projects.mark_open(rec.source)  # before the record says so: the sweeper never misses it
    written = ledger.update(
        stored,
        state=states.PROJECT_CREATED,
        reason=None,
        error=None,
        stalled_since=None,
        checks=0,
        next_check=0.0,
        concluded_at=None,
        lease_owner=None,
    )
    if written is None:
        raise NothingToRetryError("the video's record changed meanwhile; look at `status` and try again")
    return Retried(
        states.RetryAction.REPUBLISH,
        f"project {rec.project_id} of {rec.source.uri} moved on (stage {stage}): following it again, no new project",
    )


def _republish(ledger: Ledger, stored: Stored, publish: Callable[[ClipRequest], None], **changes: Any) -> Retried:
    """The clip request again. A creation that went unanswered keeps its mark: creation looks in
    OpusClip's project list before it sends anything (``domain/creation.py``)."""
    written = ledger.update(stored, state=states.QUEUED, reason=None, error=None, reset_at=None, **changes)
    if written is None:
        raise NothingToRetryError("the video's record changed meanwhile; look at `status` and try again")
    rec = written.record
    publish(rec.clip_request())
    looked_up = (
        "; OpusClip's project list is looked at first for the project an unanswered create call may have made"
        if rec.create_sent_at is not None
        else ""
    )
    fresh = " (a new project: --new-project)" if "project_id" in changes else ""
    return Retried(
        states.RetryAction.REPUBLISH,
        f"asked again for the clip project of {rec.source.uri} (upload {rec.upload_id}){fresh}{looked_up}",
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
