"""Use case: a project may have ended → ask OpusClip → bring the clips back, or fail the video.

The sweeper ends here, on its schedule or on a webhook's tick (the receiver only judges the call
and hands the look on: ``hand_look_on``); nothing but OpusClip's own answer to
``GET /api/clip-projects/{id}`` is trusted. A running project only has its stage noted. An ended
one is claimed ``concluding`` by compare-and-swap, so a second webhook, a webhook racing the
sweeper or a redelivered sweep find it taken (or done) and write nothing. A takeover after a
crash skips the clips already copied: those the record names, and those it had no time to name,
found by the marks a checked copy is given (``kept_copy``; the record notes copies at most once a
second, Cloud Storage's write rate on one object). The project slot
is given up as soon as OpusClip says the project is COMPLETE or STALLED, before a clip is read:
OpusClip no longer counts it against the plan's parallel projects, so the next video starts while
these clips are listed, rendered and copied. Every part of a conclusion is bounded: the clip list
(``OpusClient.all_clips``), each answer and copy (``http_policy``, ``clip_download``), the wait for
renders (``CLIP_RENDER_WAIT_SECONDS``), the whole conclusion (``CONCLUDE_BUDGET_SECONDS``), and a
conclusion that fails is put off like a look, further each time, so one bad project never holds the
sweep of the others. It is counted a failure and put off in the very write that claims it, undone
when it ends: a conclusion the platform cuts short, which writes nothing more, is put off all the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.cloud import storage

from opus_pipeline import logs
from opus_pipeline.domain import manifest, states, webhook
from opus_pipeline.domain.clips_page import THUMBNAIL_KEY, render_page
from opus_pipeline.domain.messages import SWEEP_VIDEO, ClipResult, SweepTick
from opus_pipeline.domain.record import Stored, VideoRecord, now_rfc3339
from opus_pipeline.errors import (
    BudgetSpentError,
    DeadlineReachedError,
    OpusApiError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from opus_pipeline.gcs.output_page import write_page
from opus_pipeline.opus.clip_download import Copied, copy_clip, kept_copy
from opus_pipeline.retry import retried
from opus_pipeline.runtime import Services
from opus_pipeline.usecases.admit import free_slot
from opus_pipeline.usecases.clip_copies import CopyPlan, plan_copies, write_captions
from opus_pipeline.usecases.create_project import is_ambiguous
from opus_pipeline.usecases.failures import record_failure
from opus_pipeline.usecases.leased import LeasedUseCase
from opus_pipeline.usecases.publish import after_clips_ready, plan_at_clips_ready

CONCLUDE_LEASE_SECONDS = 120.0
# The custom metadata a clip's copy carries: which project and clip it is, and which file of it.
COPY_MARK_PROJECT = "opus-project-id"
COPY_MARK_CLIP = "opus-clip-id"
COPY_MARK_QUALITY = "opus-quality"
COPY_ATTEMPTS = 3
# The sweep function's timeout (``infra/functions.tf``): the platform cuts a run there without a word,
# so nothing a conclusion would write after it (its put-off) is ever written.
FUNCTION_TIMEOUT_SECONDS = 540.0
# A conclusion starts no copy this long after it was claimed, and each copy ends by then (its
# deadline): it keeps the copies made and is put off, the rest copied on its next try. The rest of
# the run is room for the wait the budget cannot cut short (a copy's body is cut at its deadline, the
# answer's headers are waited for up to ``http_policy.TRANSFER_TIMEOUT``), the conclusion's last
# writes, and the looks before it (``sweep.LOOKS_SECONDS``).
CONCLUDE_BUDGET_SECONDS = 240.0
RENDER_RECHECK_SECONDS = 60.0  # a clip still rendering at COMPLETE: when the sweeper looks again
FAILED_CONCLUSION_SECONDS = 15.0  # a failed conclusion's first put-off: the next tick, then doubling
# A short project can end before its creation is recorded (that write may be throttled); the one
# webhook OpusClip sends waits that long for it instead of being ignored until the next sweep.
CREATION_WAIT_SECONDS = 0.5
CREATION_WAITS = 10


def check_project(stored: Stored, services: Services, trigger: str) -> str:
    """Look at the project of ``stored``'s video once; conclude it if it ended. Returns the state.
    A running project has its stage noted and its next look put off."""
    rec = stored.record
    log = logs.Logger({**rec.source.labels(), "uploadId": rec.upload_id, "projectId": rec.project_id})
    if rec.state not in states.OPEN_STATES or not rec.project_id:
        log.info(f"{trigger}: {rec.source.uri} is {rec.state}; nothing to do", event="conclusion_ignored")
        return rec.state
    try:
        project = services.opus.get_project(rec.project_id)
    except OpusApiError as exc:
        if exc.reason != "not-found":
            raise
        gone = PermanentError(
            f"OpusClip no longer has project {rec.project_id} (deleted?); `opus-pipeline retry {rec.source.uri}` "
            "creates a new one from the same upload while OpusClip still has it",
            reason="project-gone",
        )
        return _Conclusion(rec, services, "GONE", log, trigger, failure=gone).run()
    stage = project["stage"]
    if stage == "STALLED" and not states.stall_over(rec.stalled_since, services.wall(), _grace(services)):
        return _watch_stall(stored, services, log)
    if stage not in states.TERMINAL_STAGES:
        _note_stage(stored, stage, services, log)
        return rec.state
    return _Conclusion(rec, services, stage, log, trigger).run()


def _grace(services: Services) -> float:
    return services.settings.stalled_grace_seconds


def _watch_stall(stored: Stored, services: Services, log: logs.Logger) -> str:
    """A STALLED project is watched, not failed, for ``STALLED_GRACE_SECONDS``: OpusClip no longer counts
    it against the parallel cap, so its slot is freed at once; looked at again as any running project
    (never after the grace ends), its clips come back if it moves on, and past the grace it fails."""
    rec, now = stored.record, services.wall()
    since = rec.stalled_since if rec.stalled_since is not None else now
    checks = rec.checks + 1
    next_check = states.next_stall_look(since, checks, now, _grace(services))
    if (
        services.ledger.update(stored, stage="STALLED", stalled_since=since, checks=checks, next_check=next_check)
        is None
    ):
        return rec.state  # someone else moved the record on meanwhile; their word wins
    if rec.stalled_since is None:
        free_slot(services, rec.source.key)
        services.status.show(
            rec.source, rec.state, upload_id=rec.upload_id, project_id=rec.project_id, extra={"opus-stage": "STALLED"}
        )
        log.warning(
            f"project {rec.project_id} stalled at OpusClip; watched for {_grace(services):.0f}s before the video fails",
            event="project_stage",
            stage="STALLED",
        )
    return rec.state


def handle_webhook(
    query: Mapping[str, str], headers: Mapping[str, str], read_body: Callable[[], bytes | None], services: Services
) -> int:
    """The HTTP status to answer OpusClip's call, within seconds: the call is judged and the look
    (and any conclusion) handed on to the sweeper (``hand_look_on``); no clip is read or copied in
    the request. The URL's token is judged before ``read_body`` is called. Unknown or concluded
    videos get 200 too: OpusClip has nothing to retry."""
    settings = services.settings
    verdict = webhook.judge_url(settings.webhook_token, query)
    if verdict.status is None:
        keys = webhook.signing_keys(settings.opus_api_key, settings.webhook_secret)
        verdict = webhook.judge_body(keys, headers, read_body(), settings.webhook_require_signature)
    if verdict.status is not None:
        logs.warning(f"refused a webhook call: {verdict.why}", event="webhook_refused", status=verdict.status)
        return verdict.status
    if verdict.warning:
        logs.warning(f"webhook: {verdict.warning}", event="webhook_unverified")
    key = query[webhook.VIDEO_PARAM]
    stored = services.ledger.read_key(key)
    for _ in range(CREATION_WAITS):
        if stored is None or stored.record.state != states.CREATING:
            break
        if is_ambiguous(stored.record, services.wall()):  # OpusClip calls for a project it made
            _hand_creation_on(stored, services)
            return 200
        services.sleep(CREATION_WAIT_SECONDS)
        stored = services.ledger.read_key(key)
    if stored is None:
        logs.info(f"webhook for an unknown video {key!r}; nothing to do", event="conclusion_ignored")
        return 200
    hand_look_on(stored, services)
    return 200


def _hand_creation_on(stored: Stored, services: Services) -> None:
    """A webhook for a video whose create call went unanswered: OpusClip made a project of it. Its
    project list is the sweeper's to read (``sweep.look_at``: a call of the request budget, which may
    have to wait, and the adoption's writes), not the request's, which answers at once. Without a
    tick topic, the clip request's redelivery looks in the list all the same."""
    rec = stored.record
    topic = services.settings.sweep_ticks_topic
    if topic:
        tick = SweepTick("a webhook call for an unanswered creation", scope=SWEEP_VIDEO, video=rec.source.key)
        services.publisher.publish(topic, tick, "the sweep tick")
    logs.info(
        f"webhook: the creation of {rec.source.uri} went unanswered; the sweeper looks for its project",
        labels=rec.source.labels(),
        event="webhook_handed_on",
    )


def hand_look_on(stored: Stored, services: Services) -> None:
    """A webhook's hint for a running project: bring its next look forward and tick the sweeper to
    make it (a ``video`` tick on ``SWEEP_TICKS_TOPIC``; without one, the next scheduled sweep).
    At most one look a minute, however many calls arrive (the 30 calls a minute of the key are
    shared with every function, and a caller must not be able to spend them): a call within a
    minute of the last is not dropped, its video is looked at when that minute ends. One write
    per look at most, none while a conclusion holds the record (it would take its compare-and-swap)."""
    rec, now = stored.record, services.wall()
    labels = {**rec.source.labels(), "projectId": rec.project_id}
    if rec.state not in states.OPEN_STATES or not rec.project_id or rec.lease_live(now):
        why = "being concluded" if rec.lease_live(now) else rec.state
        logs.info(f"webhook: {rec.source.uri} is {why}; nothing to do", labels=labels, event="conclusion_ignored")
        return
    if not webhook.look_due(rec.webhook_looked_at, now):
        at = webhook.next_look_at(rec.webhook_looked_at, rec.next_check)
        if at < rec.next_check:
            services.ledger.update(stored, next_check=at)  # None: someone moved it on meanwhile
        logs.info(
            f"webhook: {rec.source.uri} was looked at less than {webhook.LOOK_INTERVAL_SECONDS:.0f}s ago; "
            "it is looked at again when that minute ends",
            labels=labels,
            event="webhook_look_deferred",
        )
        return
    if services.ledger.update(stored, webhook_looked_at=now, next_check=min(rec.next_check, now)) is None:
        return  # a call at the same moment won, and handed the look on
    topic = services.settings.sweep_ticks_topic
    if topic:
        tick = SweepTick("a webhook call", scope=SWEEP_VIDEO, video=rec.source.key)
        services.publisher.publish(topic, tick, "the sweep tick")
    logs.info(f"webhook: {rec.source.uri} is looked at now by the sweeper", labels=labels, event="webhook_handed_on")


def _note_stage(stored: Stored, stage: str, services: Services, log: logs.Logger) -> None:
    """Remember the stage and when to look again; show it on the object when it changed."""
    rec = stored.record
    checks = rec.checks + 1
    next_check = services.wall() + states.next_check_seconds(checks)
    moved_on = {"stalled_since": None} if rec.stalled_since is not None else {}  # a stall ended
    if services.ledger.update(stored, stage=stage, checks=checks, next_check=next_check, **moved_on) is None:
        return  # someone else moved the record on meanwhile; their word wins
    if not states.holds_slot(rec.state, rec.stage) and states.holds_slot(rec.state, stage):
        # its slot went at STALLED, and it runs again; the stage first, so that the sweeper's reclaim of
        # slots whose holder holds none never finds the slot taken back beside a record still STALLED
        _take_slot_back(services, rec.source.key, log)
    if stage != rec.stage:
        services.status.show(
            rec.source, rec.state, upload_id=rec.upload_id, project_id=rec.project_id, extra={"opus-stage": stage}
        )
        log.info(f"project {rec.project_id} is at stage {stage}", event="project_stage", stage=stage)


def _take_slot_back(services: Services, key: str, log: logs.Logger) -> None:
    """A stalled project that runs again counts against OpusClip's parallel cap again, and slots follow
    OpusClip's own count: it takes a slot back, past the cap when none is free (the videos that wait
    then start only once one more project ended), so the pipeline never admits one project too many."""
    if services.admission.hold(key, services.wall()):
        log.info("the project runs again after a stall: it holds a project slot again", event="slot_taken_back")


class _Conclusion(LeasedUseCase[states.ConcludeStep]):
    rule = staticmethod(states.conclude_step)

    def __init__(
        self,
        seen: VideoRecord,
        services: Services,
        stage: str,
        log: logs.Logger,
        trigger: str,
        failure: PermanentError | None = None,
    ) -> None:
        """``seen``: the record as the look read it, whose failures in a row the claim counts on."""
        super().__init__(seen.source, services, log, CONCLUDE_LEASE_SECONDS)
        self.failure = failure
        self.stage = stage
        self.trigger = trigger
        self._failures_before = seen.conclude_failures
        self._deadline = services.clock() + CONCLUDE_BUDGET_SECONDS
        self._slot_freed = False
        self._taking_over = False  # the record was left ``concluding`` by a conclusion that died

    def decide(self, record: VideoRecord) -> states.ConcludeStep:
        """As the rule says, except for a record another conclusion ended meanwhile (its count of
        failures moved): that one's put-off wins over a second try at once."""
        self._taking_over = record.state == states.CONCLUDING
        step = super().decide(record)
        if step.claims and record.conclude_failures != self._failures_before:
            return states.ConcludeStep.BUSY
        return step

    def run(self) -> str:
        # Counted a failure and put off in advance, as ``_put_off`` would when the budget ends: a
        # conclusion the platform cuts short (it writes nothing more) is put off all the same.
        failures = self._failures_before + 1
        step = self.claim(
            None,
            state=states.CONCLUDING,
            conclude_failures=failures,
            next_check=_put_off_until(self.svc.wall() + CONCLUDE_BUDGET_SECONDS, failures),
        )
        if step is not states.ConcludeStep.CONCLUDE:
            why = "being concluded by another invocation" if step is states.ConcludeStep.BUSY else self.record.state
            self.log.info(f"{self.trigger}: {self.obj.uri} is {why}; nothing to do", event="conclusion_ignored")
            return self.record.state
        try:
            with self.held.keep_alive():
                self._free_slot()
                if self.failure is not None:
                    self._fail(self.failure)
                elif self.stage == "COMPLETE":
                    clips = manifest.best_first(self.svc.opus.all_clips(self.record.project_id or ""))
                    rendering = manifest.still_rendering(clips)
                    waited = self.record.rendering_since
                    if rendering and not states.render_wait_over(waited, self.svc.wall(), self._render_wait):
                        return self._wait_for_renders(rendering)
                    self._bring_clips_back(clips, frozenset(rendering))
                else:
                    self._stalled()
        except (RateLimitedError, BudgetSpentError) as exc:
            if self.record.state == states.CONCLUDING:
                self._wait_for_the_key(exc)
            raise
        except BaseException:
            if self.record.state == states.CONCLUDING:  # undo only what is not concluded yet
                self._put_off()
            raise
        self.svc.open_projects.mark_concluded(self.obj)
        return self.record.state

    @property
    def _render_wait(self) -> float:
        return self.settings.clip_render_wait_seconds

    def _free_slot(self) -> None:
        """Once, before anything is read: the next waiting video starts now. A conclusion that
        claimed a record whose stage is COMPLETE or STALLED already (an earlier one waited for
        renders, or failed after freeing it) has nothing to free."""
        if self._slot_freed or self.record.stage in states.TERMINAL_STAGES:
            return
        free_slot(self.svc, self.obj.key)
        self._slot_freed = True

    def _put_off(self) -> None:
        """A conclusion that failed, or ran out of time (``CONCLUDE_BUDGET_SECONDS``), goes back to
        ``project-created`` and is tried again later, at the next tick and then 0.5, 1, 2 … 30 minutes
        after each failure in a row: a project whose clips cannot be read or copied costs a bounded
        share of the sweeps, and never blocks the others. The failure was counted by the claim; the
        copies made so far are kept (noted with this write). Its stage is kept once its slot is freed,
        so the next attempt frees nothing again."""
        failures = self.record.conclude_failures
        next_check = _put_off_until(self.svc.wall(), failures)
        self.held.release(state=states.PROJECT_CREATED, next_check=next_check, **self._stage_kept)

    def _wait_for_the_key(self, exc: RateLimitedError | BudgetSpentError) -> None:
        """OpusClip's rate limit (or the shared budget) refused a call: the key's trouble, not the
        project's. Not counted as a failure (that would put the project off further each time), it
        is tried again once ``Retry-After`` has passed (without one: the first put-off)."""
        next_check = self.svc.wall() + (exc.retry_after or FAILED_CONCLUSION_SECONDS)
        self.held.release(state=states.PROJECT_CREATED, next_check=next_check, **self._not_failed, **self._stage_kept)

    @property
    def _stage_kept(self) -> dict[str, Any]:
        """Its stage, once its slot is freed: the next attempt frees nothing again."""
        return {"stage": self.stage} if self._slot_freed else {}

    @property
    def _not_failed(self) -> dict[str, Any]:
        """What undoes the failure the claim counted in advance, for every end but a put-off."""
        return {"conclude_failures": self._failures_before}

    def _time_left(self) -> float:
        """Seconds left of the conclusion's budget (``CONCLUDE_BUDGET_SECONDS``): each copy's deadline.
        None left is ``DeadlineReachedError``, and ``run`` puts the conclusion off."""
        left = self._deadline - self.svc.clock()
        if left <= 0:
            raise DeadlineReachedError(
                f"concluding {self.obj.uri} took its {CONCLUDE_BUDGET_SECONDS:.0f}s; the clips copied so far "
                "are kept and the others are copied on its next try"
            )
        return left

    # -- COMPLETE ---------------------------------------------------------------------------

    def _wait_for_renders(self, rendering: list[str]) -> str:
        """Not concluded yet: a file still being made is not copied; the sweeper looks again, until
        ``CLIP_RENDER_WAIT_SECONDS`` after the first such look. The slot is free meanwhile."""
        now = self.svc.wall()
        since = self.record.rendering_since or now
        again = min(RENDER_RECHECK_SECONDS, max(1.0, since + self._render_wait - now))  # not past the wait's end
        self.held.release(
            state=states.PROJECT_CREATED,
            stage=self.stage,
            checks=self.record.checks + 1,
            next_check=now + again,
            rendering_since=since,
            **self._not_failed,
        )
        self.log.info(
            f"project {self.record.project_id} is COMPLETE but {len(rendering)} of its clips are still rendering "
            f"({', '.join(rendering)}); looking again in {again:.0f}s (at most {self._render_wait:.0f}s in all: "
            "CLIP_RENDER_WAIT_SECONDS)",
            event="clips_rendering",
            clips=len(rendering),
        )
        return self.record.state

    def _never_rendered(self, clip: Mapping[str, Any]) -> dict[str, Any]:
        """The copy entry of a clip OpusClip did not finish rendering within the wait: not copied,
        why, and where OpusClip shows it (its preview, else its export link)."""
        link = clip.get("uriForPreview") or clip.get("uriForExport")
        self.log.warning(
            f"a clip of {self.obj.uri} was still rendering {self._render_wait:.0f}s after OpusClip completed "
            "the project; concluded without it (its OpusClip link is in the manifest)",
            event="clip_not_copied",
            reason="still-rendering",
        )
        return {
            "copied": False,
            "reason": "still-rendering",
            "error": f"OpusClip was still rendering this clip {self._render_wait:.0f}s after the project completed "
            "(CLIP_RENDER_WAIT_SECONDS); it was not copied: open it in OpusClip",
            "opusLink": link if isinstance(link, str) else None,
        }

    def _bring_clips_back(self, clips: list[Mapping[str, Any]], rendering: frozenset[str] = frozenset()) -> None:
        rec = self.record
        copies = rec.copied
        transcript_available = None
        if self.settings.copy_clips:
            plan = plan_copies(self.svc, rec, clips, self.log)
            transcript_available = plan.transcript_available
            for index, clip in enumerate(clips):
                ident = manifest.clip_id(clip, index)
                if ident in rendering:
                    copies = {**copies, ident: self._never_rendered(clip)}
                elif not copies.get(ident, {}).get("copied"):
                    # A new dict each time: the saved record keeps the old one, and the lease
                    # renewer may be serialising that record at this very moment.
                    copies = {**copies, ident: self._copy(clip, index, plan)}
                    # Noted with the record's next write, or now if a second has passed (Cloud Storage's
                    # write rate on it): a takeover finds a copy the record missed by its marks.
                    self.held.checkpoint(copied=copies)
        concluded_at = now_rfc3339()
        doc = manifest.manifest(
            self.obj,
            rec.upload_id or "",
            rec.project_id or "",
            self.stage,
            concluded_at,
            clips,
            copies,
            rec.duration_seconds,
            rec.credits,
            transcript_available,
        )
        manifest_uri = self._write_manifest(doc)
        plan_at_clips_ready(self.svc, rec, doc)  # before the record says clips-ready: never lost
        self._publish(states.CLIPS_READY, len(clips), manifest_uri)
        self.held.release(
            state=states.CLIPS_READY,
            copied=copies,
            stage=self.stage,
            clip_count=len(clips),
            manifest_uri=manifest_uri,
            concluded_at=concluded_at,
            **self._not_failed,
        )
        self.svc.status.show(
            self.obj,
            states.CLIPS_READY,
            upload_id=rec.upload_id,
            project_id=rec.project_id,
            extra={"opus-stage": self.stage, "opus-clip-count": str(len(clips)), "opus-clips": manifest_uri},
        )
        copied = sum(1 for c in copies.values() if c.get("copied"))
        self.log.info(
            f"{len(clips)} clips of {self.obj.uri} are ready ({copied} copied): {manifest_uri}",
            event="clips_ready",
            clips=len(clips),
            copied=copied,
            bytes=sum(int(c.get("size", 0)) for c in copies.values() if c.get("copied")),
            seconds_since_upload=_seconds_since(rec.uploaded_at),
        )
        after_clips_ready(self.svc, self.record)  # its status shown, and carried out if approved

    def _copy(self, clip: Mapping[str, Any], index: int, plan: CopyPlan) -> dict[str, Any]:
        """Copy one selected clip (its HD file, else its preview), retrying a transient failure, with
        its poster and captions; a clip that never copies is noted, not fatal."""
        if (skipped := plan.skipped[index]) is not None:
            return {"copied": False, "error": skipped}
        source = manifest.copy_source(clip)
        if source is None:
            return {"copied": False, "error": "OpusClip gave neither uriForExport nor uriForPreview for this clip"}
        url, quality = source
        bucket = self.svc.storage.bucket(self.settings.output_bucket)
        name = manifest.clip_object_name(self.obj, clip, index)
        marks = {
            COPY_MARK_PROJECT: self.record.project_id or "",
            COPY_MARK_CLIP: manifest.clip_id(clip, index),
            COPY_MARK_QUALITY: quality,
        }
        self._time_left()  # no copy is started without time left for it
        try:
            copied = self._kept(bucket, name, marks) or self._fetch(url, quality, bucket, name, marks)
        except (PermanentError, TransientError) as error:
            self._time_left()  # a copy cut short by the budget is made on the next try, not given up
            self.log.warning(
                f"a clip of {self.obj.uri} was not copied: {error}; its OpusClip link stays in the manifest",
                event="clip_not_copied",
                reason=error.reason,
            )
            return {"copied": False, "error": str(error)}
        return {
            **copied.to_manifest(),
            "quality": quality,
            **self._copy_thumbnail(clip, index),
            **write_captions(self.svc, self.obj, clip, index, plan, self.log),
        }

    def _kept(self, bucket: storage.Bucket, name: str, marks: Mapping[str, str]) -> Copied | None:
        """A takeover's copy made by the conclusion that died, found by its marks (``kept_copy``);
        None for any other conclusion, whose record names every copy it made."""
        if not self._taking_over or (kept := kept_copy(bucket.blob(name), marks)) is None:
            return None
        self.log.info(f"a clip was copied already to {kept.gcs_uri}", event="clip_kept", bytes=kept.size)
        return kept

    def _fetch(self, url: str, quality: str, bucket: storage.Bucket, name: str, marks: Mapping[str, str]) -> Copied:
        """The clip copied from OpusClip to ``name`` and stamped with ``marks``, a transient failure
        retried (a fresh blob per attempt: its reload pins it to the generation it found)."""
        copied = retried(
            lambda: copy_clip(
                self.svc.opus.http,
                url,
                self.settings.clip_url_hosts,
                bucket.blob(name),
                deadline=self._time_left(),
                clock=self.svc.clock,
                marks=marks,
            ),
            COPY_ATTEMPTS,
            self.svc.sleep,
        )
        self.log.info(f"copied a clip to {copied.gcs_uri}", event="clip_copied", bytes=copied.size, quality=quality)
        return copied

    def _copy_thumbnail(self, clip: Mapping[str, Any], index: int) -> dict[str, Any]:
        """The clip's poster for the page, from the allowed hosts only; without it the page shows
        the player alone (a poster is never worth a retry or a failed conclusion)."""
        url = clip.get("uriForThumbnail")
        if not isinstance(url, str) or not url:
            return {}
        blob = self.svc.storage.bucket(self.settings.output_bucket).blob(
            manifest.thumbnail_object_name(self.obj, clip, index)
        )
        try:
            copied = copy_clip(
                self.svc.opus.http,
                url,
                self.settings.clip_url_hosts,
                blob,
                content_type="image/jpeg",
                deadline=self._time_left(),
                clock=self.svc.clock,
            )
        except DeadlineReachedError:
            raise  # the conclusion's time is up: put off, and the poster fetched with the clip next time
        except (PermanentError, TransientError) as exc:
            self.log.info(f"no poster for a clip of {self.obj.uri}: {exc}", event="thumbnail_not_copied")
            return {}
        return {THUMBNAIL_KEY: copied.gcs_uri}

    def _write_manifest(self, doc: dict[str, Any]) -> str:
        name = manifest.manifest_name(self.obj)
        blob = self.svc.storage.bucket(self.settings.output_bucket).blob(name)
        blob.upload_from_string(json.dumps(doc, indent=2, ensure_ascii=False), content_type="application/json")
        self._write_page(doc)
        return f"gs://{self.settings.output_bucket}/{name}"

    def _write_page(self, doc: Mapping[str, Any], failure: str | None = None) -> None:
        """``index.html`` beside the manifest: the clips to look at, or why there are none."""
        write_page(self.svc.storage.bucket(self.settings.output_bucket), self.obj, render_page(doc, failure=failure))

    # -- STALLED ----------------------------------------------------------------------------

    def _stalled(self) -> None:
        self._fail(
            PermanentError(
                f"OpusClip's project {self.record.project_id} stayed stalled for {_grace(self.svc):.0f}s; "
                f"`opus-pipeline retry {self.obj.uri}` looks at it again (and follows it if it moved on); "
                "`--new-project` creates a new project from the same upload while OpusClip still has it",
                reason="project-stalled",
            )
        )

    def _fail(self, exc: PermanentError) -> None:
        rec = self.record
        doc = manifest.manifest(self.obj, rec.upload_id or "", rec.project_id or "", self.stage, now_rfc3339(), [], {})
        self._write_page(doc, failure=f"{exc.reason}: {exc}")
        self._publish(states.FAILED, 0, None, reason=exc.reason)
        record_failure(
            self.held, self.svc.status, exc, self.log, stage=self.stage, concluded_at=now_rfc3339(), **self._not_failed
        )

    # -- telling other systems --------------------------------------------------------------

    def _publish(self, status: str, clip_count: int, manifest_uri: str | None, reason: str | None = None) -> None:
        """At least once: published before the record says concluded, so a crash in between
        publishes again rather than never (subscribers key on ``projectId``)."""
        rec = self.record
        result = ClipResult(
            rec.source,
            rec.upload_id or "",
            rec.project_id or "",
            status,
            clip_count,
            manifest_uri,
            reason,
            rec.duration_seconds,
            rec.credits,
        )
        self.svc.publisher.publish(self.settings.clip_results_topic, result, "the clip result")


def _put_off_until(since: float, failures: int) -> float:
    """When a conclusion that failed ``failures`` times in a row, the last at ``since``, is tried again."""
    return since + states.next_check_seconds(failures, first=FAILED_CONCLUSION_SECONDS)


def _seconds_since(rfc3339: str | None) -> float | None:
    """For the upload-to-clips-ready distribution metric."""
    if not rfc3339:
        return None
    return round((datetime.now(UTC) - datetime.fromisoformat(rfc3339)).total_seconds(), 1)
