"""A video's states, the transitions between them, and the decisions taken on them. Pure logic.

The state record is the truth; every transition is one compare-and-swap write of it, checked
against ``TRANSITIONS`` (writing without a state change is always allowed). The diagram below
is ``diagram()``; a test keeps the two equal.

received ─► uploading | uploaded | queued | failed | waiting | superseded
uploading ─► uploaded | queued | waiting | failed | superseded
uploaded ─► queued | waiting | creating
queued ─► creating
creating ─► project-created | failed | queued | waiting
waiting ─► creating | queued | uploading | uploaded
project-created ─► concluding
concluding ─► clips-ready | failed | project-created
failed ─► queued | project-created

``skipped`` is shown on objects only (non-videos get no record). Every record starts
``received``, written by ingest: a clip request never starts one.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import TypeVar

from opus_pipeline.errors import IllegalTransitionError


class Status(StrEnum):
    """A video's status: the state record's ``state`` and the object's ``opus-status``. A ``str``:
    records keep it as its text, and a status read back compares equal to its member."""

    RECEIVED = "received"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    QUEUED = "queued"
    CREATING = "creating"
    WAITING = "waiting"
    PROJECT_CREATED = "project-created"
    CONCLUDING = "concluding"
    CLIPS_READY = "clips-ready"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"


# The members by their own names, as every module writes them (``states.FAILED``).
(
    RECEIVED,
    UPLOADING,
    UPLOADED,
    QUEUED,
    CREATING,
    WAITING,
    PROJECT_CREATED,
    CONCLUDING,
    CLIPS_READY,
    FAILED,
    SKIPPED,
    SUPERSEDED,
) = Status

TRANSITIONS: dict[str, tuple[str, ...]] = {
    # waiting: its estimate does not fit this month's credits; superseded: overwritten before the probe;
    # uploaded, queued or waiting (a slot): a short video's ``uploading`` rode on a later write
    RECEIVED: (UPLOADING, UPLOADED, QUEUED, FAILED, WAITING, SUPERSEDED),
    # queued or waiting: ``uploaded`` rode on the hand-over's write; waiting: no project slot is free,
    # so ingest lines the video up itself rather than publish a clip request that would only wait
    UPLOADING: (UPLOADED, QUEUED, WAITING, FAILED, SUPERSEDED),
    UPLOADED: (QUEUED, WAITING, CREATING),  # the clip request can be consumed before ``queued`` is written
    QUEUED: (CREATING,),
    CREATING: (PROJECT_CREATED, FAILED, QUEUED, WAITING),  # queued again: the call failed transiently
    # Admitted when a slot frees (or, waiting for credits, when they suffice: uploading, or creating if
    # its bytes are at OpusClip already); queued again by ``opus-pipeline retry``.
    WAITING: (CREATING, QUEUED, UPLOADING, UPLOADED),
    PROJECT_CREATED: (CONCLUDING,),  # OpusClip says the project ended (COMPLETE or STALLED)
    CONCLUDING: (CLIPS_READY, FAILED, PROJECT_CREATED),  # back: collecting the clips failed transiently
    # ``opus-pipeline retry`` when the bytes are at OpusClip; or of a stalled project OpusClip moved on
    FAILED: (QUEUED, PROJECT_CREATED),
    CLIPS_READY: (),
    SUPERSEDED: (),
}
# Groups of states, each named for the question it answers; defined here, beside the table.
END_STATES = frozenset({CLIPS_READY, FAILED, SKIPPED, SUPERSEDED})  # nothing more happens by itself
# A project runs at OpusClip (or is being concluded): the sweeper and the webhook look at it.
OPEN_STATES = frozenset({PROJECT_CREATED, CONCLUDING})
# A slot is held from the admission of a clip request until its project concludes; a video in any
# other state, or whose record is gone, holds it no more (its holder crashed or it was re-driven).
HOLDING_STATES = frozenset({CREATING, PROJECT_CREATED, CONCLUDING})
# A waiting video is in the queue until it is admitted (or asks again: its request is redelivered).
QUEUE_STATES = frozenset({WAITING, QUEUED, UPLOADED, CREATING})
# Not created yet: a slot taken now (by ingest's hand-over, or a first create call before it claims
# the record) is its video's before the record says so.
BEFORE_CREATION = frozenset({RECEIVED, UPLOADING, UPLOADED, QUEUED, WAITING})
TERMINAL_STAGES = frozenset({"COMPLETE", "STALLED"})  # OpusClip no longer counts the project as running
INITIAL_STATES = frozenset({RECEIVED})
E = TypeVar("E", bound=Enum)


def holds_slot(state: str, stage: str | None) -> bool:
    """Whether a video in ``state`` whose project was last seen at ``stage`` holds a project slot:
    slots follow OpusClip's own count, which stops at COMPLETE or STALLED, however long the clips
    then take to be read and copied."""
    return state in HOLDING_STATES and stage not in TERMINAL_STAGES


def render_wait_over(rendering_since: float, now: float, wait: float) -> bool:
    """Whether clips still rendering since ``rendering_since`` (0: not seen yet) have been waited
    for long enough (``CLIP_RENDER_WAIT_SECONDS``): the project is then concluded without them."""
    return rendering_since > 0 and now - rendering_since >= wait


def check_transition(current: str, new: str) -> None:
    if new != current and new not in TRANSITIONS.get(current, ()):
        raise IllegalTransitionError(f"a video cannot go from {current!r} to {new!r}")


def diagram() -> str:
    """The transition table as the module docstring shows it."""
    return "\n".join(f"{state} ─► {' | '.join(targets)}" for state, targets in TRANSITIONS.items() if targets)


def lease_held_by_other(lease_owner: str | None, lease_expires: float, me: str, now: float) -> bool:
    return bool(lease_owner) and lease_owner != me and lease_expires > now


class IngestStep(Enum):
    """What an ``on_video_uploaded`` invocation does with an existing record."""

    NOTHING = "nothing"  # finished (or failed for good) earlier: a duplicate event
    BUSY = "busy"  # another invocation holds a live lease: raise, the retry takes over later
    UPLOAD = "upload"  # take the lease and (re)start or resume the upload
    PUBLISH = "publish"  # bytes are all there, the hand-over message is not yet confirmed

    @property
    def claims(self) -> bool:
        """Whether this step takes the record's lease."""
        return self in (IngestStep.UPLOAD, IngestStep.PUBLISH)


def ingest_step(
    state: str, lease_owner: str | None, lease_expires: float, me: str, now: float, admitted: bool = False
) -> IngestStep:
    """Decide what to do with a record in ``state`` whose lease is as given. ``admitted``: the sweeper
    asks for the upload of a video that waited for credits (only such a request starts one). A
    ``queued`` or ``waiting`` record that names its ingest as holder was handed over (ingest
    records it before it publishes the clip request or lines the video up for a slot, and lets
    the lease lapse): while the lease lives, a duplicate event has nothing to do (should the holder
    die before the publish, its own event is redelivered); once it lapsed, a delivery publishes
    again (a clip request twice is one project). A video waiting for credits, or lined up by
    project creation, holds no lease."""
    if state == WAITING and admitted:
        return IngestStep.BUSY if lease_held_by_other(lease_owner, lease_expires, me, now) else IngestStep.UPLOAD
    busy = lease_held_by_other(lease_owner, lease_expires, me, now)
    handing_over = state in (QUEUED, WAITING) and lease_owner
    if state not in (RECEIVED, UPLOADING, UPLOADED) and not (handing_over and not busy):
        return IngestStep.NOTHING
    if busy:
        return IngestStep.BUSY
    return IngestStep.PUBLISH if state in (UPLOADED, QUEUED, WAITING) else IngestStep.UPLOAD


class ProjectStep(Enum):
    """What a ``create_clip_project`` delivery does with the video's record."""

    NOTHING = "nothing"  # a project exists already, or the video failed for good
    STALE = "stale"  # the request names an older upload of the video than the record
    BUSY = "busy"  # another delivery is creating it right now: let Pub/Sub redeliver
    CREATE = "create"  # claim ``creating`` and call OpusClip

    @property
    def claims(self) -> bool:
        return self is ProjectStep.CREATE


def _leased_step(state: str, ready: tuple[str, ...], working: str, busy: bool, steps: tuple[E, E, E]) -> E:
    """``steps`` = (go, busy, nothing): go from a ``ready`` state, or from ``working`` whose holder
    is gone; busy while its holder lives; nothing to do from any other state."""
    go, held, nothing = steps
    if state in ready or (state == working and not busy):
        return go
    return held if state == working else nothing


def project_step(state: str, lease_owner: str | None, lease_expires: float, me: str, now: float) -> ProjectStep:
    """Decide what to do with a clip request for a record in ``state``. An ``uploaded`` record
    whose lease ingest still holds is busy: ingest is handing it over (publish, then ``queued``),
    and taking it from under ingest would fail that hand-over."""
    busy = lease_held_by_other(lease_owner, lease_expires, me, now)
    if state == UPLOADED and busy:
        return ProjectStep.BUSY
    steps = (ProjectStep.CREATE, ProjectStep.BUSY, ProjectStep.NOTHING)
    return _leased_step(state, (UPLOADED, QUEUED, WAITING), CREATING, busy, steps)


class ConcludeStep(Enum):
    """What a webhook or a sweep does with a video whose project may have ended."""

    NOTHING = "nothing"  # no project running: concluded already, or not created yet
    BUSY = "busy"  # another invocation is concluding it right now
    CONCLUDE = "conclude"  # claim ``concluding``, collect the clips

    @property
    def claims(self) -> bool:
        return self is ConcludeStep.CONCLUDE


def conclude_step(state: str, lease_owner: str | None, lease_expires: float, me: str, now: float) -> ConcludeStep:
    busy = lease_held_by_other(lease_owner, lease_expires, me, now)
    steps = (ConcludeStep.CONCLUDE, ConcludeStep.BUSY, ConcludeStep.NOTHING)
    return _leased_step(state, (PROJECT_CREATED,), CONCLUDING, busy, steps)


# 2**32 minutes outlasts any cap; a larger exponent would overflow a float after ~1,024 looks.
MAX_BACKOFF_DOUBLINGS = 32


def stall_over(stalled_since: float | None, now: float, grace: float) -> bool:
    """Whether a STALLED project has been watched for ``grace`` seconds: OpusClip may move a stalled
    project on (its ``stallCount`` counts stalls), so a stall fails the video only past the grace."""
    return stalled_since is not None and now - stalled_since >= grace


def next_stall_look(stalled_since: float, checks: int, now: float, grace: float) -> float:
    """When to look at a stalled project again: as any running project, but never after its grace ends."""
    return min(now + next_check_seconds(checks), stalled_since + grace)


def next_check_seconds(checks: int, first: float = 60.0, cap: float = 1800.0) -> float:
    """How long the sweeper leaves a running project alone after its ``checks``-th look:
    1, 2, 4 … 30 minutes, so long projects cost few calls and short ones are seen soon. A project
    looked at for weeks keeps the cap (the exponent is bounded, so it never overflows)."""
    return min(cap, first * 2.0 ** min(MAX_BACKOFF_DOUBLINGS, max(0, checks - 1)))


class RetryAction(Enum):
    """What ``opus-pipeline retry`` does for a video in a given state."""

    REPUBLISH = "republish"  # the bytes are at OpusClip: ask for the project again
    REINGEST = "reingest"  # nothing usable was uploaded: deliver the object again
    NONE = "none"  # nothing to retry


def retry_action(state: str, upload_complete: bool, lease_live: bool) -> RetryAction:
    """Failed videos (a stalled project too: a new one is made from the same upload), and videos
    stuck after the platform gave up redelivering (a clip request dead-lettered in ``queued``, or
    in ``creating`` once its holder's lease lapsed; an upload abandoned in ``uploading``; a
    ``waiting`` video whose admission was lost), can be re-driven. Asking for a project twice is
    safe: creation claims the record first. A video waiting for credits with nothing uploaded yet
    is the sweeper's to admit: nothing to retry. The lease of a ``queued`` or ``waiting`` record is
    its ingest's hand-over, left to lapse: asking again while it lives is as safe as later."""
    working = lease_live and state not in (QUEUED, WAITING)
    if working or state in (PROJECT_CREATED, CONCLUDING, CLIPS_READY, SUPERSEDED):
        return RetryAction.NONE
    if state == WAITING and not upload_complete:
        return RetryAction.NONE
    if state in (UPLOADED, QUEUED, WAITING, CREATING) or (state == FAILED and upload_complete):
        return RetryAction.REPUBLISH
    return RetryAction.REINGEST
