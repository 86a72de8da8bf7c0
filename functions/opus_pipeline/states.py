"""A video's states and the decisions taken on them. Pure logic.

The state record is the truth; every transition is one compare-and-swap write of it.

received ─► skipped | failed(reason)
   ▼
uploading(offset, session) ─► superseded
   ▼
uploaded ─► queued ─► creating ─► project-created | failed(reason)
"""

from __future__ import annotations

from enum import Enum

RECEIVED = "received"
UPLOADING = "uploading"
UPLOADED = "uploaded"
QUEUED = "queued"
CREATING = "creating"
PROJECT_CREATED = "project-created"
FAILED = "failed"
SKIPPED = "skipped"
SUPERSEDED = "superseded"


class IngestStep(Enum):
    """What an ``on_video_uploaded`` invocation does with an existing record."""

    NOTHING = "nothing"  # finished (or failed for good) earlier: a duplicate event
    BUSY = "busy"  # another invocation holds a live lease: raise, the retry takes over later
    UPLOAD = "upload"  # take the lease and (re)start or resume the upload
    PUBLISH = "publish"  # bytes are all there, the hand-over message is not yet confirmed


def ingest_step(state: str, lease_owner: str | None, lease_expires: float, me: str, now: float) -> IngestStep:
    """Decide what to do with a record in ``state`` whose lease is as given."""
    if state not in (RECEIVED, UPLOADING, UPLOADED):
        return IngestStep.NOTHING
    if lease_owner and lease_owner != me and lease_expires > now:
        return IngestStep.BUSY
    return IngestStep.PUBLISH if state == UPLOADED else IngestStep.UPLOAD


def backoff_seconds(failures: int, hint: float | None, jitter: float, cap: float = 32.0) -> float:
    """Exponential backoff (1, 2, 4 … ``cap`` s) scaled by ``jitter`` in [0.5, 1]; a short hint wins."""
    if hint is not None and hint <= cap:
        return hint
    return min(cap, 2.0 ** max(0, failures - 1)) * jitter


class ProjectStep(Enum):
    """What a ``create_clip_project`` delivery does with the video's record."""

    NOTHING = "nothing"  # a project exists already, or the video failed for good
    BUSY = "busy"  # another delivery is creating it right now: let Pub/Sub redeliver
    CREATE = "create"  # claim ``creating`` and call OpusClip


def project_step(state: str, lease_owner: str | None, lease_expires: float, me: str, now: float) -> ProjectStep:
    """Decide what to do with a clip request for a record in ``state``."""
    if state in (UPLOADED, QUEUED):
        return ProjectStep.CREATE
    if state == CREATING:
        if lease_owner and lease_owner != me and lease_expires > now:
            return ProjectStep.BUSY
        return ProjectStep.CREATE
    return ProjectStep.NOTHING


class RetryAction(Enum):
    """What ``opus-pipeline retry`` does for a video in a given state."""

    REPUBLISH = "republish"  # the bytes are at OpusClip: ask for the project again
    REINGEST = "reingest"  # nothing usable was uploaded: deliver the object again
    NONE = "none"  # nothing to retry


def retry_action(state: str, upload_complete: bool, lease_live: bool) -> RetryAction:
    """Failed videos, and videos stuck after the platform gave up redelivering (a clip request
    dead-lettered in ``queued``, an upload abandoned in ``uploading``), can be re-driven. Asking
    for a project twice is safe: creation claims the record first."""
    if lease_live or state in (PROJECT_CREATED, CREATING, SKIPPED, SUPERSEDED):
        return RetryAction.NONE
    if state in (UPLOADED, QUEUED) or (state == FAILED and upload_complete):
        return RetryAction.REPUBLISH
    return RetryAction.REINGEST
