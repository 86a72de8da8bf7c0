"""Use case: publish a video's best clips to its connected social accounts, approved, exactly once.

Before the upload, the choice is checked (``choice_of``: its syntax; ``with_accounts``: each account
against OpusClip's account list), so a misspelt account costs no byte. At ``clips-ready`` the plan
is written (``plan_at_clips_ready``) and, with ``OPUS_PUBLISH_APPROVAL=auto``, carried out at once
(``after_clips_ready``); otherwise it waits for ``opus-pipeline publish --approve``, which marks it
and ticks the sweeper (``approve``). Every pass (``carry_out``) works entry by entry through the
plan's compare-and-swap: an entry is claimed ``sending`` before its request goes out and gets its
id after, so whatever runs twice (a redelivered conclusion, a second approval, two sweeps at
once), one (clip, account) pair is posted at most once. An answer not seen is never sent again
(``domain/publishing.reconcile``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opus_pipeline import logs
from opus_pipeline.domain import publishing, states
from opus_pipeline.domain.clips_page import POSTS_KEY, render_page
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.messages import SWEEP_PUBLISH, SweepTick
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.errors import (
    BudgetSpentError,
    CliError,
    OpusApiError,
    PermanentError,
    PreferenceError,
    RateLimitedError,
    TransientError,
)
from opus_pipeline.gcs.output_page import write_page
from opus_pipeline.gcs.publish_plans import Plan, PublishPlans
from opus_pipeline.runtime import Services
from opus_pipeline.usecases import credits as credit_book

# Answers meaning "this workspace may not post": the social-posting endpoints are tagged enterprise.
_NOT_OPEN = frozenset({"api-key-refused", "not-found"})


def choice_of(services: Services, obj: StorageObject) -> publishing.PublishChoice | None:
    """The video's publishing choice (None: it publishes nothing), read before any call is made;
    ``PreferenceError`` (``bad-metadata``) names a bad value."""
    return publishing.choice(obj.metadata, services.settings.publish_defaults)


def with_accounts(services: Services, chosen: publishing.PublishChoice | None) -> dict[str, Any] | None:
    """``chosen`` with its accounts resolved against OpusClip's list, for the state record (None:
    nothing to publish). ``PreferenceError`` (``bad-metadata``) for an account that is not exactly
    one connected account: checked before any byte is uploaded."""
    if chosen is None:
        return None
    try:
        connected = services.opus.social_accounts()
    except OpusApiError as exc:
        if exc.reason not in _NOT_OPEN:
            raise
        raise PreferenceError(
            f"{publishing.PUBLISH}: this OpusClip workspace may not list social accounts (HTTP {exc.status}; "
            "social posting is an enterprise feature); drop opus-publish or enable posting in OpusClip"
        ) from None
    return publishing.choice_to_json(chosen, publishing.resolve(chosen, connected))


def _plans(services: Services) -> PublishPlans:
    return PublishPlans(services.storage, services.settings.output_bucket, services.settings.state_bucket)


def _now(services: Services) -> datetime:
    return datetime.fromtimestamp(services.wall(), UTC)


def plan_at_clips_ready(services: Services, rec: VideoRecord, manifest_doc: dict[str, Any]) -> None:
    """Write the plan of a video that opted in (once: a redelivered conclusion keeps the plan it
    finds for this version). Called before the record says ``clips-ready``, so a failure here is a
    conclusion retried, never a plan lost. An approved plan is marked for the sweeper first."""
    if not rec.publish:
        return
    plans, approval = _plans(services), services.settings.publish_approval
    fresh = publishing.build_plan(
        rec.source.ref(), rec.project_id or "", manifest_doc["clips"], rec.publish, approval, _now(services)
    )
    if not fresh["posts"]:
        logs.info(f"{rec.source.uri}: no clip to publish", labels=rec.source.labels(), event="publish_planned", posts=0)
        return
    if approval == publishing.APPROVAL_AUTO:
        plans.mark(rec.source)

    def edit(plan: Plan | None) -> tuple[bool, Plan | None]:
        if plan is not None and plan.get("source") == rec.source.ref():
            return False, None
        return True, fresh

    if plans.change(rec.source, edit):
        logs.info(
            f"{rec.source.uri}: {len(fresh['posts'])} posts planned in {plans.uri(rec.source)} (approval {approval})",
            labels=rec.source.labels(),
            event="publish_planned",
            posts=len(fresh["posts"]),
        )


def after_clips_ready(services: Services, rec: VideoRecord) -> None:
    """Show the plan's status and, when it is approved, carry it out. Never raises: the record says
    ``clips-ready`` already, and an approved plan is marked, so the sweeper finishes what this did not."""
    if not rec.publish:
        return
    source = rec.source
    try:
        carry_out(services, source)
    except Exception as exc:
        said = str(exc) if isinstance(exc, PermanentError | TransientError) else type(exc).__name__
        logs.warning(
            f"{source.uri}: publishing was not finished at clips-ready ({said}); the sweeper goes on with it",
            labels=source.labels(),
            event="publish_deferred",
        )


def publish_approved(services: Services) -> int:
    """The sweeper's pass: carry out every marked plan, each isolated from the others. How many."""
    done = 0
    for source in _plans(services).marked():
        try:
            carry_out(services, source)
            done += 1
        except Exception as exc:
            said = str(exc) if isinstance(exc, PermanentError | TransientError) else type(exc).__name__
            logs.warning(f"publishing {source.uri}: {said}; the next pass goes on", labels=source.labels())
    return done


def carry_out(services: Services, source: StorageObject) -> str | None:
    """One pass over the plan: reconcile, then send what is due (or delete what a cancellation left),
    then, once nothing is on its way, show the status, fill the manifest and say so. The status."""
    plans = _plans(services)
    plan = plans.read(source)
    if plan is None or plan.get("source", {}).get("generation") != str(source.generation):
        plans.unmark(source)
        return None
    plans.change(source, lambda p: (None, p if p is not None and publishing.reconcile(p, services.wall()) else None))
    plan = plans.read(source) or plan
    if plan.get("cancelled"):
        for post in publishing.cancellable(plan, _now(services)):
            _cancel_one(services, plans, source, plan, post)
    else:
        for key in publishing.due(plan):
            _send(services, plans, source, plan["projectId"], key)
    return _finish(services, plans, source)


# -- one post -------------------------------------------------------------------------------------


def _send(services: Services, plans: PublishPlans, source: StorageObject, project_id: str, key: str) -> None:
    token = uuid.uuid4().hex

    def claim(plan: Plan | None) -> tuple[dict | None, Plan | None]:
        post = publishing.entry(plan, key) if plan is not None and key in publishing.due(plan) else None
        if post is None:
            return None, None  # sent, being sent, or cancelled meanwhile
        post.update(state=publishing.SENDING, sendingSince=services.wall(), sender=token)
        return dict(post), plan

    post = plans.change(source, claim)
    if post is None:
        return
    log = logs.Logger({**source.labels(), "projectId": project_id})
    credits = publishing.credit_posts([post])
    if credits and not credit_book.fits(services, credits):
        _settle(plans, source, key, token, state=publishing.PLANNED)
        log.info(
            f"{post['platform']} post of {post['clipId']} waits: this month's credits are spent", event="post_waiting"
        )
        return
    now = _now(services)
    body = publishing.request_body(project_id, post)
    try:
        if publishing.posts_now(post, now):
            result = {"postId": services.opus.post_now(body), "publishAt": publishing.iso(now)}
        else:
            result = {"scheduleId": services.opus.schedule_post({**body, "publishAt": post["publishAt"]})}
    except (RateLimitedError, BudgetSpentError) as exc:  # not sent: the next pass sends it
        _settle(plans, source, key, token, state=publishing.PLANNED)
        log.info(f"{post['platform']} post of {post['clipId']} put off: {exc}", event="post_put_off")
        return
    except TransientError as exc:  # sent, answer not seen: never sent again
        _settle(plans, source, key, token, state=publishing.FAILED, error=publishing.NOT_SEEN)
        log.error(f"{post['platform']} post of {post['clipId']}: {exc}; {publishing.NOT_SEEN}", event="post_unknown")
        return
    except PermanentError as exc:  # refused: nothing was posted
        _settle(plans, source, key, token, state=publishing.FAILED, error=str(exc))
        log.error(
            f"{post['platform']} post of {post['clipId']} refused: {exc}", event="post_refused", reason=exc.reason
        )
        return
    state = publishing.PUBLISHED if "postId" in result else publishing.SCHEDULED
    _settle(plans, source, key, None, state=state, **result)
    if credits:
        credit_book.spend(services, credits)
    log.info(
        f"{post['platform']} {'posted' if state == publishing.PUBLISHED else 'scheduled'} clip {post['clipId']} "
        f"for {result.get('publishAt', post['publishAt'])}",
        event="social_post",
        platform=post["platform"],
        outcome=state,
    )


def _settle(plans: PublishPlans, source: StorageObject, key: str, token: str | None, **changes: Any) -> None:
    """Write what became of a sent entry. With ``token``, only while this invocation still holds it;
    without (an id OpusClip gave), always: what OpusClip made is the truth, whatever a reconcile said."""

    def edit(plan: Plan | None) -> tuple[None, Plan | None]:
        post = publishing.entry(plan, key) if plan is not None else None
        if post is None or (token is not None and post.get("sender") != token):
            return None, None
        post.update(changes)
        post.pop("sender", None)
        if "scheduleId" in changes or "postId" in changes:
            post.pop("error", None)
        return None, plan

    plans.change(source, edit)


def _cancel_one(services: Services, plans: PublishPlans, source: StorageObject, plan: Plan, post: dict) -> None:
    """Delete one schedule not yet due; a transient failure leaves it for the next pass."""
    try:
        services.opus.cancel_schedule(post["scheduleId"])
    except OpusApiError as exc:
        if exc.reason != "not-found":
            _settle(plans, source, publishing.pair(post), None, error=f"not cancelled: {exc}")
            return
    _settle(plans, source, publishing.pair(post), None, state=publishing.CANCELLED)
    logs.info(
        f"{source.uri}: cancelled the {post['platform']} schedule of clip {post['clipId']}",
        labels=source.labels(),
        event="post_cancelled",
        platform=post["platform"],
    )


# -- the end of a pass ----------------------------------------------------------------------------


def _finish(services: Services, plans: PublishPlans, source: StorageObject) -> str | None:
    """Once no entry is on its way: the status on the object, the manifest's ``published`` rows,
    the page, one ``published`` message, and the marker gone. Safe to repeat."""
    plan = plans.read(source)
    if plan is None:
        return None
    status = publishing.status(plan)
    if status is None:
        return None  # entries on their way: the marker stays, the next pass finishes
    if status == publishing.CANCELLED and (
        publishing.cancellable(plan, _now(services)) or any(p["state"] == publishing.SENDING for p in plan["posts"])
    ):
        return status  # schedules left to delete
    doc = plans.change_manifest(source, lambda manifest: publishing.with_posts(manifest, plan))
    if doc is not None:
        write_page(services.storage.bucket(services.settings.output_bucket), source, render_page(_page_doc(doc, plan)))
    services.status.show(
        source,
        states.CLIPS_READY,
        error=publishing.errors(plan) if status == publishing.FAILED else None,
        extra={publishing.STATUS_KEY: status},
    )
    if status != publishing.AWAITING_APPROVAL and plan.get("announced") != status:
        message = publishing.PublishedResult(plan, status, plans.uri(source))
        services.publisher.publish(services.settings.clip_results_topic, message, "the published result")
        plans.change(source, lambda p: (None, {**p, "announced": status} if p is not None else None))
    if status != publishing.AWAITING_APPROVAL:
        plans.unmark(source)
    return status


def _page_doc(doc: dict[str, Any], plan: Plan) -> dict[str, Any]:
    clips = [{**clip, POSTS_KEY: publishing.page_rows(plan, str(clip.get("id")))} for clip in doc.get("clips", [])]
    return {**doc, "clips": clips}


# -- the CLI's side: approve and cancel, without the API key --------------------------------------


@dataclass(frozen=True)
class Decision:
    """What ``approve`` or ``cancel`` did, in words for the CLI."""

    detail: str
    changed: bool


def _decide(
    plans: PublishPlans,
    bucket: str,
    name: str,
    edit: Callable[[Plan], tuple[Decision, bool]],
    tick: Callable[[SweepTick], bool],
) -> Decision:
    """Change the plan of ``gs://bucket/name`` with ``edit`` (True: write it), mark it for the
    sweeper and tick it, so that the change is carried out within a minute."""
    found = StorageObject(bucket, name, 0, 0)
    plan = plans.read(found)
    if plan is None or plan.get("source", {}).get("bucket") != bucket:
        raise CliError(f"gs://{bucket}/{name} has no publishing plan (it opted out, or its clips are not ready)")
    source = StorageObject(bucket, name, int(plan["source"]["generation"]), 0)

    def on_plan(current: Plan | None) -> tuple[Decision, Plan | None]:
        decision, write = edit(current or plan)
        return decision, (current or plan) if write else None

    decision = plans.change(source, on_plan)
    if decision.changed:
        plans.mark(source)
    ticked = tick(SweepTick(f"publishing plan of {source.uri} changed", scope=SWEEP_PUBLISH))
    when = "now" if ticked else "on the sweeper's next scheduled run (within a minute)"
    return Decision(f"{decision.detail}; the sweeper carries it out {when}", decision.changed)


def approve(plans: PublishPlans, bucket: str, name: str, tick: Callable[[SweepTick], bool], when: str) -> Decision:
    """``--approve``: the plan is carried out. Again: nothing changes (and nothing is posted twice)."""

    def edit(plan: Plan) -> tuple[Decision, bool]:
        if plan.get("cancelled"):
            raise CliError(f"the publishing plan of gs://{bucket}/{name} was cancelled; it cannot be approved")
        if plan.get("approved"):
            return Decision(f"gs://{bucket}/{name}: already approved", False), False
        plan.update(approved=True, approvedAt=when)
        return Decision(f"gs://{bucket}/{name}: approved {len(plan['posts'])} posts", True), True

    return _decide(plans, bucket, name, edit, tick)


def cancel(plans: PublishPlans, bucket: str, name: str, tick: Callable[[SweepTick], bool], when: str) -> Decision:
    """``--cancel``: nothing more is sent, and every schedule not yet due is deleted at OpusClip."""

    def edit(plan: Plan) -> tuple[Decision, bool]:
        if plan.get("cancelled"):
            return Decision(f"gs://{bucket}/{name}: already cancelled", False), False
        for post in plan["posts"]:
            if post["state"] == publishing.PLANNED:
                post["state"] = publishing.CANCELLED
        plan.update(cancelled=True, cancelledAt=when)
        return Decision(f"gs://{bucket}/{name}: cancelled", True), True

    return _decide(plans, bucket, name, edit, tick)
