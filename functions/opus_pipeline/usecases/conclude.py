"""Use case: a project may have ended → ask OpusClip → bring the clips back, or fail the video.

Both the webhook receiver and the sweeper end here; neither trusts anything but OpusClip's own
answer to ``GET /api/clip-projects/{id}``. A running project only has its stage noted. An ended
one is claimed ``concluding`` by compare-and-swap, so a second webhook, a webhook racing the
sweeper or a redelivered sweep find it taken (or done) and write nothing. A takeover after a
crash skips the clips already copied (the record keeps each copy as it is made). The project slot
is given up as soon as OpusClip says the project is COMPLETE with every clip rendered: OpusClip no
longer counts it against the plan's parallel projects, so the next video starts while these clips
are copied.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from opus_pipeline import http_policy, logs
from opus_pipeline.domain import manifest, states, webhook
from opus_pipeline.domain.clips_page import THUMBNAIL_KEY, render_page
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.messages import ClipResult
from opus_pipeline.domain.record import Stored, now_rfc3339
from opus_pipeline.errors import OpusApiError, PermanentError, TransientError
from opus_pipeline.opus.clip_download import copy_clip
from opus_pipeline.runtime import Services
from opus_pipeline.usecases.admit import free_slot, hand_slot_to_sweeper
from opus_pipeline.usecases.create_project import is_ambiguous, resolve_ambiguous
from opus_pipeline.usecases.failures import record_failure
from opus_pipeline.usecases.leased import LeasedUseCase

CONCLUDE_LEASE_SECONDS = 120.0
COPY_ATTEMPTS = 3
RENDER_RECHECK_SECONDS = 60.0  # a clip still rendering at COMPLETE: when the sweeper looks again
# A short project can end before its creation is recorded (that write may be throttled); the one
# webhook OpusClip sends waits that long for it instead of being ignored until the next sweep.
CREATION_WAIT_SECONDS = 0.5
CREATION_WAITS = 10


def check_project(stored: Stored, services: Services, trigger: str, reschedule: bool = True) -> str:
    """Look at the project of ``stored``'s video once; conclude it if it ended. Returns the state.
    Only the sweeper's looks (``reschedule``) note the stage and put the next one off."""
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
        return _Conclusion(rec.source, services, "GONE", log, trigger, failure=gone).run()
    stage = project["stage"]
    if stage == "STALLED" and not states.stall_over(rec.stalled_since, services.wall(), _grace(services)):
        return _watch_stall(stored, services, log)
    if stage not in states.TERMINAL_STAGES:
        if reschedule:
            _note_stage(stored, stage, services, log)
        return rec.state
    return _Conclusion(rec.source, services, stage, log, trigger).run()


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
    """The HTTP status to answer OpusClip's call; ``TransientError`` when OpusClip could not be
    asked (the sweeper looks later anyway). The URL's token is judged before ``read_body`` is
    called. Unknown, concluded or just-looked-at videos get 200, and so does a look that can never
    succeed (logged): OpusClip has nothing to retry."""
    settings = services.settings
    verdict = webhook.judge_url(settings.webhook_token, query)
    if verdict.status is None:
        verdict = webhook.judge_body(settings.opus_api_key, headers, read_body(), settings.webhook_require_signature)
    if verdict.status is not None:
        logs.warning(f"refused a webhook call: {verdict.why}", event="webhook_refused", status=verdict.status)
        return verdict.status
    key = query[webhook.VIDEO_PARAM]
    stored = services.ledger.read_key(key)
    for _ in range(CREATION_WAITS):
        if stored is None or stored.record.state != states.CREATING:
            break
        if is_ambiguous(stored.record, services.wall()):  # OpusClip calls for a project it made: adopt it
            resolve_ambiguous(stored, services)
            stored = services.ledger.read_key(key)
            break
        services.sleep(CREATION_WAIT_SECONDS)
        stored = services.ledger.read_key(key)
    if stored is None:
        logs.info(f"webhook for an unknown video {key!r}; nothing to do", event="conclusion_ignored")
        return 200
    reserved = _reserve_look(stored, services)
    if reserved is None:
        logs.info(
            f"webhook: {key!r} was looked at less than {webhook.LOOK_INTERVAL_SECONDS:.0f}s ago or is being "
            "concluded; the sweeper looks later",
            event="conclusion_ignored",
        )
        return 200
    try:
        check_project(reserved, services, "webhook", reschedule=False)
    except PermanentError as exc:  # a refused key, a refused redirect, a record gone meanwhile
        logs.error(
            f"webhook: {key!r} could not be looked at: {exc}; answered 200, since OpusClip's retry could not "
            "succeed either (the sweeper looks again)",
            event="webhook_error",
            reason=exc.reason,
        )
    return 200


def _reserve_look(stored: Stored, services: Services) -> Stored | None:
    """The record after noting that a webhook call asks OpusClip now, or ``None`` when it must not:
    asked less than a minute ago, or a live conclusion holds the record (a write would take its
    compare-and-swap from under it). One write per look, never per call; the sweeper's schedule
    stays as it was. A record with no running project needs no look, hence no write."""
    rec, now = stored.record, services.wall()
    if rec.state not in states.OPEN_STATES or not rec.project_id:
        return stored
    if rec.lease_live(now) or not webhook.look_due(rec.webhook_looked_at, now):
        return None
    return services.ledger.update(stored, webhook_looked_at=now)  # None: a call at the same moment won


def _note_stage(stored: Stored, stage: str, services: Services, log: logs.Logger) -> None:
    """Remember the stage and when to look again; show it on the object when it changed."""
    rec = stored.record
    checks = rec.checks + 1
    next_check = services.wall() + states.next_check_seconds(checks)
    moved_on = {"stalled_since": None} if rec.stalled_since is not None else {}  # a stall ended
    if services.ledger.update(stored, stage=stage, checks=checks, next_check=next_check, **moved_on) is None:
        return  # someone else moved the record on meanwhile; their word wins
    if stage != rec.stage:
        services.status.show(
            rec.source, rec.state, upload_id=rec.upload_id, project_id=rec.project_id, extra={"opus-stage": stage}
        )
        log.info(f"project {rec.project_id} is at stage {stage}", event="project_stage", stage=stage)


class _Conclusion(LeasedUseCase[states.ConcludeStep]):
    rule = staticmethod(states.conclude_step)

    def __init__(
        self,
        obj: StorageObject,
        services: Services,
        stage: str,
        log: logs.Logger,
        trigger: str,
        failure: PermanentError | None = None,
    ) -> None:
        super().__init__(obj, services, log, CONCLUDE_LEASE_SECONDS)
        self.failure = failure
        self.stage = stage
        self.trigger = trigger
        self._slot_freed = False

    def run(self) -> str:
        step = self.claim(None, state=states.CONCLUDING)
        if step is not states.ConcludeStep.CONCLUDE:
            why = "being concluded by another invocation" if step is states.ConcludeStep.BUSY else self.record.state
            self.log.info(f"{self.trigger}: {self.obj.uri} is {why}; nothing to do", event="conclusion_ignored")
            return self.record.state
        try:
            with self.held.keep_alive():
                if self.failure is not None:
                    self._fail(self.failure)
                elif self.stage == "COMPLETE":
                    clips = manifest.best_first(self.svc.opus.all_clips(self.record.project_id or ""))
                    if rendering := manifest.still_rendering(clips):
                        return self._wait_for_renders(rendering)
                    self._free_slot()
                    self._bring_clips_back(clips)
                else:
                    self._stalled()
        except BaseException:
            if self.record.state == states.CONCLUDING:  # undo only what is not concluded yet
                self.held.release(state=states.PROJECT_CREATED)
            raise
        self.svc.open_projects.mark_concluded(self.obj)
        self._free_slot()
        return self.record.state

    def _free_slot(self) -> None:
        """Once: the next waiting video starts now, not on the next scheduled sweep: admitted here by
        the sweeper, or at once by a sweep the public receiver (which publishes no clip request) ticks."""
        if self._slot_freed:
            return
        if self.trigger == "webhook":
            hand_slot_to_sweeper(self.svc, self.obj.key)
        else:
            free_slot(self.svc, self.obj.key)
        self._slot_freed = True

    # -- COMPLETE ---------------------------------------------------------------------------

    def _wait_for_renders(self, rendering: list[str]) -> str:
        """Not concluded yet: a file still being made is not copied; the sweeper looks again."""
        self.held.release(
            state=states.PROJECT_CREATED,
            stage=self.stage,
            checks=self.record.checks + 1,
            next_check=self.svc.wall() + RENDER_RECHECK_SECONDS,
        )
        self.log.info(
            f"project {self.record.project_id} is COMPLETE but {len(rendering)} of its clips are still rendering "
            f"({', '.join(rendering)}); looking again in {RENDER_RECHECK_SECONDS:.0f}s",
            event="clips_rendering",
            clips=len(rendering),
        )
        return self.record.state

    def _bring_clips_back(self, clips: list[Mapping[str, Any]]) -> None:
        rec = self.record
        copies = rec.copied
        if self.settings.copy_clips:
            for index, clip in enumerate(clips):
                ident = manifest.clip_id(clip, index)
                if not copies.get(ident, {}).get("copied"):
                    # A new dict each time: the saved record keeps the old one, and the lease
                    # renewer may be serialising that record at this very moment.
                    copies = {**copies, ident: self._copy(clip, index)}
                    self.held.save(copied=copies)
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
        )
        manifest_uri = self._write_manifest(doc)
        self._publish(states.CLIPS_READY, len(clips), manifest_uri)
        self.held.release(
            state=states.CLIPS_READY,
            stage=self.stage,
            clip_count=len(clips),
            manifest_uri=manifest_uri,
            concluded_at=concluded_at,
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

    def _copy(self, clip: dict[str, Any], index: int) -> dict[str, Any]:
        """Copy one clip, retrying a transient failure; a clip that never copies is noted, not fatal."""
        url = clip.get("uriForExport")
        if not isinstance(url, str) or not url:
            return {"copied": False, "error": "OpusClip gave no uriForExport for this clip"}
        blob = self.svc.storage.bucket(self.settings.output_bucket).blob(
            manifest.clip_object_name(self.obj, clip, index)
        )
        error: PermanentError | TransientError | None = None
        for attempt in range(1, COPY_ATTEMPTS + 1):
            try:
                copied = copy_clip(self.svc.opus.http, url, self.settings.clip_url_hosts, blob)
            except PermanentError as exc:
                error = exc
                break
            except TransientError as exc:
                error = exc
                if attempt < COPY_ATTEMPTS:
                    self.svc.sleep(http_policy.backoff_seconds(attempt, exc.retry_after, random.uniform(0.5, 1)))
                continue
            self.log.info(f"copied a clip to {copied.gcs_uri}", event="clip_copied", bytes=copied.size)
            return {**copied.to_manifest(), **self._copy_thumbnail(clip, index)}
        self.log.warning(
            f"a clip of {self.obj.uri} was not copied: {error}; its uriForExport stays in the manifest",
            event="clip_not_copied",
            reason=error.reason if error else None,
        )
        return {"copied": False, "error": str(error)}

    def _copy_thumbnail(self, clip: dict[str, Any], index: int) -> dict[str, Any]:
        """The clip's poster for the page, from the allowed hosts only; without it the page shows
        the player alone (a poster is never worth a retry or a failed conclusion)."""
        url = clip.get("uriForThumbnail")
        if not isinstance(url, str) or not url:
            return {}
        blob = self.svc.storage.bucket(self.settings.output_bucket).blob(
            manifest.thumbnail_object_name(self.obj, clip, index)
        )
        try:
            copied = copy_clip(self.svc.opus.http, url, self.settings.clip_url_hosts, blob, content_type="image/jpeg")
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
        blob = self.svc.storage.bucket(self.settings.output_bucket).blob(manifest.page_name(self.obj))
        blob.cache_control = "no-cache"  # a retry's page replaces this one; nobody should see the old
        blob.upload_from_string(render_page(doc, failure=failure), content_type="text/html; charset=utf-8")

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
        record_failure(self.held, self.svc.status, exc, self.log, stage=self.stage, concluded_at=now_rfc3339())

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


def _seconds_since(rfc3339: str | None) -> float | None:
    """For the upload-to-clips-ready distribution metric."""
    if not rfc3339:
        return None
    return round((datetime.now(UTC) - datetime.fromisoformat(rfc3339)).total_seconds(), 1)
