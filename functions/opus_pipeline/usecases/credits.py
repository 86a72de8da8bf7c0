"""Use case: OpusClip's monthly credits — a video goes on when its estimate fits, else it waits, and
the sweeper admits the waiting ones, oldest first, when they fit (after ``reset_at``, or under a
raised ``OPUS_MONTHLY_CREDIT_BUDGET``).

The numbers are OpusClip's (``OpusClient.usage``: at most a minute old, an uncapped answer an hour)
and the pipeline's own book of what it promised (``domain/credits.py``, ``gcs/credit_ledger.py``).
An uncapped workspace without a budget skips all of it: no book write, no call per video.
"""

from __future__ import annotations

from opus_pipeline import logs
from opus_pipeline.domain import states
from opus_pipeline.domain.credits import (
    USAGE_FRESH_SECONDS,
    WAITING_FOR_CREDITS,
    CreditBook,
    Usage,
    epoch_of,
    month_of,
    running_low,
)
from opus_pipeline.domain.messages import ClipRequest, IngestRequest
from opus_pipeline.domain.record import object_from_key
from opus_pipeline.gcs.claims import HeldRecord
from opus_pipeline.runtime import Services

# Past the project's creation: its estimate counts as spent.
_CREATED_STATES = frozenset({states.PROJECT_CREATED, states.CONCLUDING, states.CLIPS_READY})


def _checked(services: Services) -> Usage | None:
    """OpusClip's numbers when credits are to be checked at all; None when nothing limits them."""
    usage = services.opus.usage()
    return None if usage.uncapped and services.settings.monthly_credit_budget is None else usage


def ask(services: Services, key: str, credits: int) -> bool:
    """Reserve ``credits`` for ``key`` if they fit this month; otherwise it is queued. Whether they fit."""
    usage = _checked(services)
    if usage is None:
        return True
    now, budget = services.wall(), services.settings.monthly_credit_budget
    return services.credit_ledger.change(month_of(now), lambda book: book.ask(key, credits, now, usage, budget))


def wait(services: Services, held: HeldRecord, log: logs.Logger, why: str, reset_at: str | None = None) -> str:
    """Put the held video in the credit queue (``waiting``, ``opus-waiting-for=credits``) and say why;
    after a 403 at creation it is admitted again no earlier than OpusClip's ``reset_at``, and its upload
    is marked as having waited (``upload_waited``: OpusClip may not keep it that long)."""
    record, now, not_before = held.record, services.wall(), epoch_of(reset_at)
    estimate = record.credits or 0
    services.credit_ledger.change(month_of(now), lambda book: book.wait(record.source.key, estimate, now, not_before))
    held.release(
        state=states.WAITING,
        waiting_for=WAITING_FOR_CREDITS,
        reset_at=reset_at,
        upload_waited=record.upload_complete,
    )
    services.status.show(
        record.source, states.WAITING, upload_id=record.upload_id, extra={"opus-waiting-for": WAITING_FOR_CREDITS}
    )
    log.info(
        f"{record.source.uri} waits for credits: {why}; it goes on by itself when they suffice "
        "(`opus-pipeline usage` shows the queue)",
        event="video_waiting",
        waiting_for=WAITING_FOR_CREDITS,
        credits=estimate,
    )
    return states.WAITING


def settle(services: Services, key: str, created: bool, credits: int | None = None) -> None:
    """``key``'s project was created (its estimate is spent; ``credits``, the record's estimate, when
    nothing was reserved for it) or will not be (its reservation is freed)."""
    if _checked(services) is not None:
        now = services.wall()
        services.credit_ledger.change(month_of(now), lambda book: book.settle(key, created, now, credits))


def fits(services: Services, credits: int) -> bool:
    """Whether ``credits`` spent outside a project (X posts) fit this month now."""
    usage = _checked(services)
    if usage is None:
        return True
    room = services.credit_ledger.read().room(usage, services.settings.monthly_credit_budget)
    return room is None or credits <= room


def spend(services: Services, credits: int) -> None:
    """Book ``credits`` spent outside a project (X posts) against this month's."""
    if _checked(services) is not None:
        now = services.wall()
        services.credit_ledger.change(month_of(now), lambda book: book.spend(credits, now))


def admit_waiting(services: Services) -> list[str]:
    """The sweeper's step: settle what ended, then admit the waiting videos that fit now, oldest first,
    and log OpusClip's numbers for the dashboard and the alert (``event=credits``).

    An admitted video is handed back: an ingest request when its bytes are not yet at OpusClip, its
    clip request again when they are (a 403 at creation sent it back here)."""
    book = services.credit_ledger.read()
    stranded = _settle_ended(services, book)
    # While videos wait, the numbers of now (a tick is minutes apart); else those of the last minute,
    # which the sweeper's own calls usually carry.
    usage, now = services.opus.usage(max_age=0 if book.waiting else USAGE_FRESH_SECONDS), services.wall()
    budget, admitted = services.settings.monthly_credit_budget, []
    if book.waiting:
        admitted = services.credit_ledger.change(month_of(now), lambda b: b.admit_due(usage, budget, now))
        if admitted:
            book = services.credit_ledger.read()  # for the report: the edit may be applied more than once
        for key in admitted:
            _hand_back(services, key)
    for key in stranded:  # admitted earlier, its hand-back lost (a crash before the publish)
        _hand_back(services, key)
    _report(usage, book)
    return admitted


def _report(usage: Usage, book: CreditBook) -> None:
    if usage.uncapped:
        return
    oldest = book.waiting[0]["credits"] if book.waiting else 0
    low = running_low(usage, oldest)
    (logs.warning if low else logs.info)(
        f"credits: {usage.remaining} of {usage.limit} left this month (resets {usage.reset_at}), "
        f"{sum(book.reserved.values())} reserved, {len(book.waiting)} videos waiting"
        + (f"; the oldest needs {oldest}" if oldest else ""),
        event="credits",
        remaining=usage.remaining,
        limit=usage.limit,
        reserved=sum(book.reserved.values()),
        waiting=len(book.waiting),
        oldest_waiting=oldest,
        low=low,
    )


def _settle_ended(services: Services, book: CreditBook) -> list[str]:
    """Reservations and places whose video was created, failed or vanished meanwhile (a lost write).
    Returns the videos holding a reservation yet still waiting for credits, none of it being worked
    on: admitted, but their hand-back was lost (``create_project._upload_again`` crashed before its
    ingest request went out); handed back again."""
    ended: dict[str, tuple[bool, int | None]] = {}
    stranded: list[str] = []
    now = services.wall()
    for key in [*book.reserved, *(w["key"] for w in book.waiting)]:
        stored = services.ledger.read_key(key)
        state = stored.record.state if stored else None
        if state in _CREATED_STATES or state is None or state in states.END_STATES:
            ended[key] = (state in _CREATED_STATES, stored.record.credits if stored else None)
        elif (
            key in book.reserved
            and stored is not None
            and state == states.WAITING
            and stored.record.waiting_for == WAITING_FOR_CREDITS
            and not stored.record.lease_live(now)
        ):
            stranded.append(key)
    if ended:

        def edit(b: CreditBook) -> None:
            for key, (created, credits) in ended.items():
                b.settle(key, created, now, credits)

        services.credit_ledger.change(month_of(now), edit)
    return stranded


def _hand_back(services: Services, key: str) -> None:
    stored = services.ledger.read_key(key)
    if stored is None or stored.record.state != states.WAITING:
        return  # settled on the next sweep
    record = stored.record
    message: ClipRequest | IngestRequest
    if record.upload_complete:
        message, topic = record.clip_request(), services.settings.clip_requests_topic
    else:
        message, topic = IngestRequest(object_from_key(key)), services.settings.ingest_requests_topic
    services.publisher.publish(topic, message, "the credit admission")
    logs.info(
        f"admitted {record.source.uri}: its {record.credits} credits fit this month now",
        labels=record.source.labels(),
        event="video_admitted",
        waiting_for=WAITING_FOR_CREDITS,
        credits=record.credits,
    )
