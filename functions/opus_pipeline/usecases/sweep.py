"""Use case: the safety net for lost webhooks: look at running projects, oldest first.

Each run reads the index of running projects (one marker per project in ``STATE_BUCKET``),
skips those whose next look is not due (per-video backoff: ``states.next_check_seconds``) or
that another invocation is concluding, and asks OpusClip about at most ``SWEEP_MAX_CALLS`` of
them, so a thousand open projects cost a bounded number of calls per run out of the 30 a minute
OpusClip allows one key, and starts none ``LOOKS_SECONDS`` into a run, so the last conclusion ends
before the function's timeout. A look that fails for the project's own sake (an answer too big, too
slow, a 5xx) is put off like any look; one the key's rate limit or budget refused ends the run's
looks, and puts nobody off (the project is not to blame). Markers of videos that ended meanwhile
are removed. First of all, the one queue (``gcs/queue.py``) is served gate by gate: project slots
whose holder is gone are reclaimed and the videos waiting for a slot admitted (should an admission
have been lost), then those waiting for credits that fit now, so a long sweep never starves the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from opus_pipeline import http_policy, logs
from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import object_from_key
from opus_pipeline.domain.slots import ADMIT_GRACE_SECONDS
from opus_pipeline.errors import BudgetSpentError, PipelineError, RateLimitedError, TransientError
from opus_pipeline.runtime import Services
from opus_pipeline.usecases.admit import admit_next
from opus_pipeline.usecases.conclude import CONCLUDE_BUDGET_SECONDS, FUNCTION_TIMEOUT_SECONDS, check_project
from opus_pipeline.usecases.create_project import is_ambiguous, resolve_ambiguous
from opus_pipeline.usecases.credits import admit_waiting
from opus_pipeline.usecases.publish import publish_approved

# No look starts this long into a run: a look that concludes then has its whole budget, the wait for a
# copy's answer the budget cannot cut short and its last writes (``LAST_WRITES_SECONDS``) before the
# function's timeout, which would cut it without a word.
LAST_WRITES_SECONDS = 30.0
LOOKS_SECONDS = (
    FUNCTION_TIMEOUT_SECONDS - CONCLUDE_BUDGET_SECONDS - sum(http_policy.TRANSFER_TIMEOUT) - LAST_WRITES_SECONDS
)


@dataclass
class SweepReport:
    open: int = 0
    checked: int = 0
    not_due: int = 0
    concluded: int = 0
    errors: int = 0
    reclaimed: int = 0
    slots_in_use: int = 0
    waiting: int = 0
    admitted_for_credits: int = 0
    publishing_plans: int = 0


def sweep(services: Services) -> SweepReport:
    """One tick. Every part is isolated: a failure of any kind (storage refusing a write, an
    unexpected bug) in the reclaim or in one project's look is logged and the rest goes on."""
    report, started, looking = SweepReport(), services.clock(), True
    _admit_due(services, report)  # first: a long sweep must not starve the queue
    report.publishing_plans = _publish_approved(services)
    for obj in services.open_projects.running():
        report.open += 1  # once the looks ended, looked at on a later run
        if looking and services.clock() - started < LOOKS_SECONDS:
            looking = _look_isolated(obj, services, report, "sweep")
    logs.info(
        f"sweep: {report.open} running projects, {report.checked} looked at, {report.concluded} concluded",
        event="sweep",
        open=report.open,
        checked=report.checked,
        concluded=report.concluded,
        reclaimed=report.reclaimed,
        slots_in_use=report.slots_in_use,
        waiting=report.waiting,
        admitted_for_credits=report.admitted_for_credits,
    )
    return report


def look_at(services: Services, key: str) -> SweepReport:
    """A webhook's tick: look at one video now, as a sweep would (if its look is due, which the
    receiver made it; a redelivered tick finds it looked at and put off, and asks nothing)."""
    report = SweepReport()
    try:
        obj = object_from_key(key)
    except ValueError:
        logs.error(f"sweep: a video tick names no video ({key[:200]!r}); ignored", event="sweep_error")
        return report
    report.open = 1
    _settle_creation(obj, services)
    _look_isolated(obj, services, report, "webhook")
    return report


def _settle_creation(obj: StorageObject, services: Services) -> None:
    """A webhook's tick for a video whose create call went unanswered: the project OpusClip called
    about is looked for in its list now (``resolve_ambiguous``, which never creates), and once
    adopted it is looked at at once, as the webhook asked. Found nothing, or could not look: the clip
    request's redelivery looks again."""
    try:
        stored = services.ledger.read(obj)
        if stored is None or not is_ambiguous(stored.record, services.wall()):
            return
        resolve_ambiguous(stored, services)
        adopted = services.ledger.read(obj)
        if adopted is not None and adopted.record.state == states.PROJECT_CREATED:
            services.ledger.update(adopted, next_check=services.wall())
    except Exception as exc:  # the look below, or the clip request's redelivery, goes on regardless
        logs.warning(f"sweep: the creation of {obj.uri} is not settled yet ({_said(exc)})", labels=obj.labels())


def _look_isolated(obj: StorageObject, services: Services, report: SweepReport, trigger: str) -> bool:
    """One look, whose failure of any kind is logged and counted, never raised. False when the key's
    rate limit or request budget refused a call: every other look would be refused as well."""
    try:
        _look(obj, services, report, trigger)
    except (RateLimitedError, BudgetSpentError) as exc:  # the key's trouble, not the project's: no put-off
        report.errors += 1
        logs.warning(
            f"sweep: {obj.uri} could not be looked at: {exc}; the other projects are looked at on the next run",
            labels=obj.labels(),
            reason=exc.reason,
        )
        return False
    except TransientError as exc:  # this project's (a 5xx, an answer too big or too slow): put off, then again
        report.errors += 1
        _put_off(obj, services)
        logs.warning(f"sweep: {obj.uri} could not be looked at: {exc}", labels=obj.labels(), reason=exc.reason)
    except Exception as exc:  # one project's trouble must not stop the sweep for the others
        report.errors += 1
        _put_off(obj, services)
        logs.error(
            f"sweep: {obj.uri} could not be looked at: {_said(exc)}",
            labels=obj.labels(),
            event="sweep_error",
            reason=getattr(exc, "reason", type(exc).__name__),
        )
    return True


def _look(obj: StorageObject, services: Services, report: SweepReport, trigger: str) -> None:
    stored = services.ledger.read(obj)
    if stored is None or stored.record.state in states.END_STATES:
        services.open_projects.mark_concluded(obj)
        return
    rec, now = stored.record, services.wall()
    if rec.state not in states.OPEN_STATES or rec.next_check > now or rec.lease_live(now):
        report.not_due += 1
        return
    if report.checked >= services.settings.sweep_max_calls:
        return  # counted as open; looked at on a later run
    report.checked += 1
    if check_project(stored, services, trigger) in states.END_STATES:
        report.concluded += 1


def _put_off(obj: StorageObject, services: Services) -> None:
    """A look that failed is put off like a look, so the same project does not fail first on every
    tick (oldest first, a few failing projects would take every look of every run), unless what
    failed put it off itself (a conclusion does, further each time); best effort (the storage
    trouble may be what failed)."""
    try:
        stored = services.ledger.read(obj)
        now = services.wall()
        if stored is not None and stored.record.next_check <= now:
            checks = stored.record.checks + 1
            services.ledger.update(stored, checks=checks, next_check=now + states.next_check_seconds(checks))
    except Exception as exc:
        logs.warning(f"sweep: could not put {obj.uri} off ({type(exc).__name__})", labels=obj.labels())


def _said(exc: Exception) -> str:
    """A pipeline error's own words (written for people, without secrets); for anything else only
    its type, since a library's text may quote a URL."""
    return str(exc) if isinstance(exc, PipelineError) else f"an unexpected {type(exc).__name__}"


def _admit_due(services: Services, report: SweepReport) -> None:
    """The one queue's turn, gate by gate, each isolated from the other: the project slots (their
    storage trouble is a sweep error), then the credits (their trouble, OpusClip unreachable, waits
    for the next tick)."""
    try:
        report.reclaimed = reclaim_slots(services, report)
    except Exception as exc:
        report.errors += 1
        logs.error(f"sweep: reclaiming slots and admitting waiting videos failed: {_said(exc)}", event="sweep_error")
    try:
        report.admitted_for_credits = len(admit_waiting(services))
    except Exception as exc:
        logs.warning(f"sweep: the videos waiting for credits could not be looked at: {_said(exc)}")


def _publish_approved(services: Services) -> int:
    """The approved publishing plans' turn (each plan isolated from the others inside)."""
    try:
        return publish_approved(services)
    except Exception as exc:
        logs.warning(f"sweep: the publishing plans could not be looked at: {_said(exc)}")
        return 0


def reclaim_slots(services: Services, report: SweepReport) -> int:
    """Admit whoever may go now, then free the slots nobody holds any more (reading the record of
    every video in flight or waiting) and admit again into those (a lost admission too). A tick
    from a freed slot thus reaches its next video before the reads of a long queue."""
    admit_next(services)
    table = services.admission.read()
    now = services.wall()
    slots, waiting = {}, {}
    for key, since in table.in_flight.items():
        stored = services.ledger.read_key(key)
        rec = stored.record if stored else None
        if rec is not None and rec.state in states.BEFORE_CREATION and now - since < ADMIT_GRACE_SECONDS:
            continue  # taken by its hand-over or its first create call before the record says so
        if (
            rec is None
            or not states.holds_slot(rec.state, rec.stage)
            or (rec.state == states.CREATING and not rec.lease_live(now))
        ):
            slots[key] = since
    for entry in table.waiting:
        stored = services.ledger.read_key(entry["key"])
        if stored is None or stored.record.state not in states.QUEUE_STATES:
            waiting[entry["key"]] = entry["since"]
    if slots or waiting:
        services.admission.forget(slots, waiting)
        admit_next(services)
    table = services.admission.read()
    report.slots_in_use, report.waiting = len(table.in_flight), len(table.waiting)
    return len(slots)
