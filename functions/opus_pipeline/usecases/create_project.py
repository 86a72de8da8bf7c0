"""Use case: a clip request arrived → exactly one OpusClip clip project for its upload.

Once per upload: the video's state record is claimed ``creating`` by compare-and-swap before
OpusClip is called, and the project id is recorded right after it answers. A first create call is
claimed and marked sent in that one write, once its credits and its slot are settled (read first,
written last): each write of a record is one of the few a second Cloud Storage allows it, on the
way from a freed slot (or a video's upload) to its project.

The create call spends credits and OpusClip offers no idempotency key, so it is never sent again
blind (``domain/creation.py``): the record says "sent" (``create_sent_at``, by compare-and-swap)
before the call, and a 2xx is recorded before anything else is done. An answer that does not say what
OpusClip did (lost, a 5xx, a 2xx without a readable id) leaves the creation ambiguous; every later
delivery (and a webhook for the video) looks in OpusClip's project list first and adopts the project
found. Only when nothing is found after a grace period is the video created again, a bounded number
of times. Every attempt and its outcome is logged (``event=create_attempt`` / ``create_outcome``).

Nothing in the message is trusted but the key it names: anyone who may publish to the topic can
send one, and the ``uploadId`` is no secret (it is on the object's metadata). A request is acted on
only for a video of ``SOURCE_BUCKET`` whose record ingest (or ``retry``) wrote after its upload
completed, whose upload id it repeats; the project is then made from the record's own source,
upload id and preferences. Anything else is acknowledged and refused without calling OpusClip.

OpusClip's monthly cap at creation sends the uploaded video back to wait for credits; its project is
then made from the same upload. Should OpusClip refuse that upload afterwards as it refuses one it
does not know (``domain/credits.refusal``: inferred, OpusClip documents no upload lifetime), the video
is uploaded again, once, keeping its admission; refused so again, it fails (``upload-gone``).
"""

from __future__ import annotations

from typing import Any, cast

from opus_pipeline import logs
from opus_pipeline.domain import creation, states
from opus_pipeline.domain.credits import (
    UPLOAD_GONE,
    WAITING_FOR_CREDITS,
    WAITING_FOR_SLOT,
    Refusal,
    estimate,
    refusal,
)
from opus_pipeline.domain.events import foreign_bucket, name_problem
from opus_pipeline.domain.messages import ClipRequest, IngestRequest
from opus_pipeline.domain.preferences import Preferences, effective
from opus_pipeline.domain.project_request import build_command, check_command
from opus_pipeline.domain.record import PROJECT_STORY_RESET, Stored, VideoRecord
from opus_pipeline.domain.webhook import registered_url
from opus_pipeline.errors import (
    AmbiguousCreateError,
    AnswerLostError,
    ClaimLostError,
    ConcurrentCapError,
    InProgressError,
    OpusApiError,
    PermanentError,
    PipelineError,
    RateLimitedError,
    TransientError,
    UnknownVideoError,
)
from opus_pipeline.gcs.claims import HeldRecord
from opus_pipeline.gcs.ledger import record_path
from opus_pipeline.opus.client import MONTHLY_CAP_REASON, PROJECT_LIST_PAGE_SIZE
from opus_pipeline.runtime import Services
from opus_pipeline.usecases import credits as credit_queue
from opus_pipeline.usecases.admit import free_slot, show_waiting
from opus_pipeline.usecases.failures import record_failure
from opus_pipeline.usecases.leased import LeasedUseCase

SHORT_RETRY_AFTER_SECONDS = 10.0
CAP_RETRY_SECONDS = 60.0  # a 429 for the in-flight cap without Retry-After: try that video again after this
CREATE_LEASE_SECONDS = 120.0
# A request for a video still ``uploaded`` and leased (its ingest not yet at the hand-over, which
# records ``queued`` before it publishes) waits a moment rather than a Pub/Sub redelivery's backoff.
HAND_OVER_WAIT_SECONDS = 0.25
HAND_OVER_WAITS = 8
REFUSED = "refused"  # what a refused request returns: no record was read or written for it
_HANDED_OVER = (states.QUEUED, states.WAITING)  # a first call's record, before creation claims it


class _CreateProject(LeasedUseCase[states.ProjectStep]):
    rule = staticmethod(states.project_step)

    def __init__(self, request: ClipRequest, services: Services, adopt_only: bool = False) -> None:
        log = logs.Logger({**request.source.labels(), "uploadId": request.upload_id})
        super().__init__(request.source, services, log, CREATE_LEASE_SECONDS)
        self.request = request
        self.adopt_only = adopt_only  # a webhook's look: a project exists, so never create one
        self._outcome_unknown = False  # a create call was sent and what it did is not known
        self._attempts = 0  # create calls sent for the upload, as the record will say
        self._first_call = False  # claiming a first call and marking it sent in one write
        self._sent_by_claim = False  # that claim recorded the coming call as sent

    def decide(self, record: VideoRecord) -> states.ProjectStep:
        if record.upload_id != self.request.upload_id:
            return states.ProjectStep.STALE
        if self.adopt_only and (record.state != states.CREATING or record.create_sent_at is None):
            return states.ProjectStep.NOTHING  # no longer in doubt (a redelivery moved it on): not a webhook's
        if self._first_call and record.create_sent_at is not None:
            return states.ProjectStep.BUSY  # another delivery sent one since it was read: redelivered, it looks
        return super().decide(record)

    # -- the story of a clip request ----------------------------------------------------------

    def run(self) -> str:
        why = foreign_bucket(self.obj.bucket, self.settings.source_bucket) or name_problem(
            self.obj.name, [record_path(self.obj)]
        )
        if why:
            return self._refuse(why)
        try:
            step = self._take_up()
        except UnknownVideoError:
            return self._refuse(
                "the pipeline has no record of this video (a forged message, or its record was deleted); "
                f"if the video is real, copy {self.obj.uri} onto itself to ingest it again"
            )
        if step is not states.ProjectStep.CREATE:
            return self._not_ours(step)
        self.obj = self.record.source  # from here on, the record's word, not the message's
        self._outcome_unknown = self.record.create_sent_at is not None
        self._attempts = self.record.create_attempts
        try:
            if self._outcome_unknown:  # an earlier create call may have made the project
                settled = self._reconcile()
                if settled is not None:
                    return settled
            if not self._credits_reserved():
                self._hold()
                return self._wait_for_credits()
            grant = self.svc.admission.request(self.obj.key, self.svc.wall())
            if not grant.granted:
                self._hold()
                return self._wait(grant.position)
            command = self._command()
            if not self.held.leased():
                self._claim_first_call()
            with self.held.keep_alive():
                project = self._call_opus(command)
        except ClaimLostError as lost:  # another delivery's record now: nothing (nor the slot) is ours to undo
            return self._not_ours(cast(states.ProjectStep, lost.step))
        except AmbiguousCreateError as exc:
            return self._ambiguous(exc)
        except ConcurrentCapError as exc:
            return self._wait_for_cap(exc)
        except OpusApiError as exc:
            return self._refused_by_opus(exc)
        except PermanentError as exc:
            return self._fail(exc)
        except BaseException:
            self._give_back()
            raise
        return self._created(project)

    def _take_up(self) -> states.ProjectStep:
        """The record as read, not claimed yet, when this is a first call for a handed-over video
        (``queued``, or ``waiting`` and admitted): ``_claim_first_call`` claims it with the call.
        Anything else (an unanswered call, a takeover, a request ahead of ingest) is claimed now."""
        stored = self.svc.ledger.read(self.obj)
        if stored is None:
            raise UnknownVideoError(f"the pipeline has no record of {self.obj.uri}")
        step = self.decide(stored.record)
        rec = stored.record
        if step is states.ProjectStep.CREATE and rec.state in _HANDED_OVER and rec.create_sent_at is None:
            self.held = HeldRecord(self.svc.ledger, stored, self.lease)
            return step
        return self._claim_once_handed_over()

    def _hold(self) -> None:
        """Claim the record now, before any other write of it, if it was only read so far."""
        if not self.held.leased():
            step = self._claim_once_handed_over()
            if step is not states.ProjectStep.CREATE:
                raise ClaimLostError(step)

    def _claim_first_call(self) -> None:
        """Claim ``creating`` and mark the coming call sent, in one write; ``ClaimLostError`` when another
        delivery claimed the record since it was read."""
        now = self.svc.wall()
        self._first_call = True
        try:
            step = self.claim(
                None,
                state=states.CREATING,
                create_sent_at=now,
                create_since=self.record.create_since or now,
                create_attempts=self._attempts + 1,
            )
        finally:
            self._first_call = False
        if step is not states.ProjectStep.CREATE:
            raise ClaimLostError(step)
        self._sent_by_claim = True

    def _claim_once_handed_over(self) -> states.ProjectStep:
        """Claim ``creating``; a request that overtook ingest's ``queued`` write waits for it a
        moment (``HAND_OVER_WAITS``) rather than a Pub/Sub redelivery's backoff."""
        step = self.claim(None, state=states.CREATING)
        for _ in range(HAND_OVER_WAITS):
            if step is not states.ProjectStep.BUSY or self.record.state != states.UPLOADED:
                break
            self.svc.sleep(HAND_OVER_WAIT_SECONDS)
            step = self.claim(None, state=states.CREATING)
        return step

    # -- its endings ------------------------------------------------------------------------------

    def _refuse(self, why: str) -> str:
        """Acknowledged: a redelivery cannot make it acceptable, and OpusClip is never called for it."""
        self.log.warning(
            f"refused a clip request for {self.obj.key}: {why}; nothing was sent to OpusClip",
            event="clip_request_refused",
        )
        return REFUSED

    def _not_ours(self, step: states.ProjectStep) -> str:
        """A stale or duplicate request is acknowledged; a busy one is redelivered."""
        rec = self.record
        if step is states.ProjectStep.BUSY:
            raise InProgressError("another delivery is creating this project; Pub/Sub will redeliver")
        if step is states.ProjectStep.STALE:
            self.log.warning(
                f"ignored a clip request for upload {self.request.upload_id}: the video's current upload "
                f"is {rec.upload_id}",
                event="stale_clip_request",
            )
        else:
            if rec.state == states.PROJECT_CREATED:  # the creating delivery may have died before marking it
                self.svc.open_projects.mark_open(rec.source)
            self.log.info(
                f"duplicate clip request: the video is already {rec.state}"
                + (f" (project {rec.project_id})" if rec.project_id else ""),
                event="duplicate_clip_request",
                projectId=rec.project_id,
            )
        return rec.state

    def _created(self, project: dict, outcome: str = "created") -> str:
        """The project is recorded first, before anything else is called: should anything after fail,
        the redelivery finds the video ``project-created`` (and marks it open again), never one to create."""
        project_id = project["id"]
        self.held.release(
            state=states.PROJECT_CREATED,
            project_id=project_id,
            **{**PROJECT_STORY_RESET, "stage": project.get("stage") if isinstance(project.get("stage"), str) else None},
            reason=None,
            error=None,
            checks=0,
            next_check=self.svc.wall() + states.next_check_seconds(1),
            copied={},
            clip_count=None,
            manifest_uri=None,
            concluded_at=None,
            upload_waited=False,
            create_sent_at=None,
        )
        self.log.bind(projectId=project_id)
        self._log_outcome(outcome, projectId=project_id)
        self.svc.open_projects.mark_open(self.obj)  # the sweeper follows it from now on
        try:
            credit_queue.settle(self.svc, self.obj.key, created=True, credits=self.record.credits)
        except PipelineError as exc:  # OpusClip's numbers unreadable now: the sweeper settles it (_settle_ended)
            self.log.warning(f"the credit book is settled later: {exc}", event="settle_later", reason=exc.reason)
        self.svc.status.show(
            self.obj,
            states.PROJECT_CREATED,
            upload_id=self.record.upload_id,
            project_id=project_id,
            extra={"opus-stage": str(self.record.stage or "")},
        )
        self.log.info(
            f"{'adopted' if outcome == 'adopted' else 'created'} OpusClip project {project_id} for {self.obj.uri}",
            event="project_created",
            stage=self.record.stage,
        )
        return states.PROJECT_CREATED

    # -- a creation that may have happened ---------------------------------------------------------

    def _log_outcome(self, outcome: str, **fields: Any) -> None:
        """One line per create attempt's outcome, with the video's labels: what the dashboard's
        projects-per-video tile and its alert count (``infra/monitoring.tf``)."""
        level = self.log.info if outcome in ("created", "adopted", "not-sent", "refused") else self.log.warning
        level(
            f"create attempt {self.record.create_attempts} for {self.obj.uri}: {outcome}",
            event="create_outcome",
            outcome=outcome,
            attempt=self.record.create_attempts,
            **fields,
        )

    def _sought(self) -> creation.Sought:
        rec = self.record
        title = self._command()["uploadedVideoAttr"].get("title")
        return creation.Sought(rec.upload_id or "", title, rec.create_since or rec.create_sent_at or 0.0)

    def _reconcile(self) -> str | None:
        """An earlier create call's outcome is unknown: look for its project in OpusClip's list and
        adopt it; else wait out the grace, create again (None: go on), or give up."""
        rec, sought = self.record, self._sought()
        found, projects, complete = self._look_for(sought)
        if projects:
            return self._adopt(projects)
        grace = self.settings.create_grace_seconds
        now = self.svc.wall()
        decided = creation.decide(found, rec.create_attempts, rec.create_sent_at or 0.0, now, grace, complete)
        if decided is creation.Next.CREATE and self.adopt_only:
            decided = creation.Next.WAIT
        if decided is creation.Next.CREATE:
            self.log.warning(
                f"no project of upload {rec.upload_id} in OpusClip's project list {grace:.0f}s "
                f"after create attempt {rec.create_attempts}: creating it again",
                event="create_reconciled",
                found=found.value,
            )
            return None
        if decided is creation.Next.WAIT:  # still ``creating`` and sent (``_give_back``): looked at again
            raise InProgressError(
                f"the outcome of create attempt {rec.create_attempts} is unknown and OpusClip does not list a "
                "project of this upload yet; looking again later",
                reason="create-ambiguous",
            )
        several = " (several projects of its title may be it)" if found is creation.Found.SEVERAL else ""
        return self._fail(
            PermanentError(
                f"OpusClip may have made a project of upload {rec.upload_id} without saying so{several}: "
                f"{rec.create_attempts} create calls went unanswered and its project list shows none that is "
                f"surely this video's. Look in OpusClip's dashboard for a project titled {sought.title!r} "
                "before `opus-pipeline retry --new-project`, which creates another (and spends credits)",
                reason=creation.UNCONFIRMED,
            )
        )

    def _look_for(self, sought: creation.Sought) -> tuple[creation.Found, list[dict[str, Any]], bool]:
        """The upload's project in OpusClip's project list, page by page (newest first) until a page
        reaches back past the first attempt (``creation.listing_complete``), at most
        ``MAX_LIST_PAGES``; and whether the look reached that far. A list OpusClip refuses to show
        (a 4xx) is no answer about the project: the video waits, nothing is created or failed."""
        listed: list[dict[str, Any]] = []
        complete = False
        try:
            for page in range(creation.MAX_LIST_PAGES):
                items = self.svc.opus.my_projects(page)
                listed.extend(items)
                complete = creation.listing_complete(items, PROJECT_LIST_PAGE_SIZE, sought.since)
                if complete:
                    break
        except OpusApiError as exc:
            raise InProgressError(
                f"OpusClip refused its project list ({exc}); the outcome of create attempt "
                f"{self.record.create_attempts} stays unknown and is looked for again later",
                reason="create-ambiguous",
            ) from None
        found, projects = creation.find_project(listed, sought)
        return found, [dict(p) for p in projects], complete

    def _adopt(self, projects: list[dict[str, Any]]) -> str:
        """The project found is adopted (the oldest, should OpusClip have made several of the upload:
        each other one is logged as a project of the video, so the two-projects alert fires)."""
        first, *others = projects
        for other in others:
            self._log_outcome("duplicate", projectId=creation.project_id_of(other))
        return self._created({**first, "id": creation.project_id_of(first) or ""}, outcome="adopted")

    def _ambiguous(self, exc: AmbiguousCreateError) -> str:
        """The create call may have made the project: the record stays ``creating`` and sent, the lease
        is given up and the request redelivered; the next delivery looks in the project list first."""
        self._log_outcome("ambiguous", reason=exc.reason, why=str(exc))
        self._give_back()
        raise InProgressError(f"{exc}; the project list is looked at before any other create call", reason=exc.reason)

    def _wait_for_cap(self, exc: ConcurrentCapError) -> str:
        """OpusClip's in-flight cap is full after all (another tool shares the key): queue again."""
        not_before = self.svc.wall() + (exc.retry_after or CAP_RETRY_SECONDS)
        self.svc.admission.requeue(self.obj.key, self.svc.wall(), not_before)
        self.log.warning(
            f"{exc}: another tool shares the key's slots; waiting again", event="rate_limited", reason=exc.reason
        )
        return self._wait(1)

    def _refused_by_opus(self, exc: OpusApiError) -> str:
        """OpusClip refused the project: its monthly cap (wait for credits), an upload it no longer
        has after such a wait (send it again, once), or anything else (fail as it said)."""
        if exc.reason == MONTHLY_CAP_REASON:
            return self._wait_for_month(exc)
        rec = self.record
        decided = refusal(exc.status, rec.upload_waited, rec.reuploads)
        if decided is Refusal.UPLOAD_AGAIN:
            return self._upload_again(exc)
        if decided is Refusal.GONE_AGAIN:
            return self._gone_again(exc)
        return self._fail(exc)

    def _gone_again(self, exc: OpusApiError) -> str:
        """Refused so again after the video was sent again: it fails for good, OpusClip's answer in its
        words. Its upload is recorded as not at OpusClip (no committed bytes), so ``opus-pipeline retry``
        sends the object anew (a new generation, a new record) rather than ask for the same upload."""
        why = PermanentError(
            f"{exc}. OpusClip seemed no longer to have the video's upload after a monthly-cap wait, so the "
            "video was uploaded again, and OpusClip refused the new upload too: its answer may be about "
            "something else than the upload. `opus-pipeline retry` sends the video anew",
            reason=UPLOAD_GONE,
        )
        return self._fail(why, committed=0)

    def _upload_again(self, exc: OpusApiError) -> str:
        """OpusClip no longer has the upload the video kept over a monthly-cap wait: upload it again
        under a new link, keeping its admission (its credits stay reserved). The record waits for
        credits with its upload cleared, what ingest acts on for the sweeper's ingest request, and
        that same request is published now. The lease stays ours until the request is out: an ingest
        taking it up at once meets the lease (and is redelivered), never a record still ``creating``,
        and neither this slot's release nor this status can land after the new upload's. Should either
        fail, the video joins the credit queue instead, and the sweeper hands it back."""
        gone = self.record.upload_id
        self.held.save(
            state=states.WAITING,
            waiting_for=WAITING_FOR_CREDITS,
            upload_id=None,
            committed=0,
            uploaded_at=None,
            reset_at=None,
            upload_waited=False,
            reuploads=self.record.reuploads + 1,
        )
        self.log.warning(
            f"OpusClip no longer has upload {gone} of {self.obj.uri}, kept over a monthly-cap wait (it refused "
            f"the project: {exc}); uploading the video again under a new upload link, once",
            event="upload_gone",
            reuploads=self.record.reuploads,
        )
        self.svc.status.show(self.obj, states.WAITING, extra={"opus-waiting-for": WAITING_FOR_CREDITS})
        try:
            free_slot(self.svc, self.obj.key)
            topic = self.settings.ingest_requests_topic
            self.svc.publisher.publish(topic, IngestRequest(self.obj), "the ingest request")
        except TransientError as trouble:
            why = f"its new upload could not be asked for ({trouble}); the sweeper hands it back"
            return credit_queue.wait(self.svc, self.held, self.log, why)
        self.held.release()
        return states.WAITING

    def _credits_reserved(self) -> bool:
        """The same credit gate as a first upload (``credits.ask``): a video ingest admitted holds its
        reservation already (a read of the book); one sent again by ``opus-pipeline retry`` after its
        reservation was given up, or named by a forged request, asks for its estimate anew. OpusClip
        refusing the usage lookup is not a refusal of the project (its monthly cap aside): tried again."""
        rec = self.record
        try:
            return credit_queue.ask(
                self.svc, self.obj.key, rec.credits if rec.credits is not None else estimate(0, None)
            )
        except OpusApiError as exc:
            if exc.reason == MONTHLY_CAP_REASON:
                raise
            raise TransientError(f"the credit gate could not ask OpusClip's usage: {exc}", reason=exc.reason) from None

    def _wait_for_credits(self) -> str:
        why = f"its {self.record.credits} credits are not reserved and do not fit this month"
        return credit_queue.wait(self.svc, self.held, self.log, why)

    def _wait_for_month(self, exc: OpusApiError) -> str:
        """OpusClip's monthly cap after all (a shared workspace, a low estimate): the upload waits for
        credits until ``reset_at``, then its project is created from the same upload."""
        try:
            self._hold()
        except ClaimLostError as lost:
            return self._not_ours(cast(states.ProjectStep, lost.step))
        free_slot(self.svc, self.obj.key)
        why = f"OpusClip's monthly cap is reached until {exc.reset_at}"
        return credit_queue.wait(self.svc, self.held, self.log, why, reset_at=exc.reset_at)

    def _fail(self, exc: PermanentError, **changes: Any) -> str:
        """Recorded first (with ``changes``): should freeing the slot fail, the redelivery finds the
        video failed and calls OpusClip no more (the sweeper reclaims the slot)."""
        try:
            self._hold()
        except ClaimLostError as lost:
            return self._not_ours(cast(states.ProjectStep, lost.step))
        reset_at = exc.reset_at if isinstance(exc, OpusApiError) else None
        record_failure(self.held, self.svc.status, exc, self.log, reset_at=reset_at, **changes)
        free_slot(self.svc, self.obj.key)
        return states.FAILED

    def _give_back(self) -> None:
        """A transient failure: the record is queued again and the slot freed for the redelivery. A
        create call whose outcome is unknown keeps the record ``creating`` (and sent) instead. A record
        only read (a first call, not claimed yet) is left as it is, and so is the slot: another
        delivery may hold both; the redelivery asks again, and the sweeper reclaims a slot nobody holds."""
        if not self.held.leased():
            return
        if self._outcome_unknown:
            self.held.release()
        else:
            self.held.release(state=states.QUEUED)
        free_slot(self.svc, self.obj.key)

    def _wait(self, position: int) -> str:
        """No free project slot: acknowledge, and be admitted when one frees (see ``admit``)."""
        self.held.release(state=states.WAITING, waiting_for=WAITING_FOR_SLOT)
        return show_waiting(self.svc, self.obj, self.record.upload_id, position, self.log)

    def _command(self) -> dict[str, Any]:
        settings, rec = self.settings, self.record
        prefs = effective(Preferences.from_message(rec.preferences), settings.default_preferences, self.obj.name)
        hook = settings.webhook_url and registered_url(settings.webhook_url, settings.webhook_token or "", self.obj.key)
        command = build_command(rec.upload_id or "", prefs, settings.notify_email, hook or None)
        check_command(command)
        return command

    def _call_opus(self, command: dict[str, Any]) -> dict:
        try:
            return self._send(command)
        except ConcurrentCapError:
            raise  # the slots are all taken: waiting in the queue is cheaper than sleeping here
        except RateLimitedError as exc:
            if exc.retry_after is None or exc.retry_after > SHORT_RETRY_AFTER_SECONDS:
                raise
            self.log.warning(f"{exc}; retrying in {exc.retry_after:.0f}s", event="rate_limited", reason=exc.reason)
            self.svc.sleep(exc.retry_after)
            return self._send(command)

    def _send(self, command: dict[str, Any]) -> dict:
        """One create call: "sent" is recorded durably first; an answer that proves nothing was made
        (a 4xx, a 429, a connection never made) takes the mark back with the record's next write."""
        rec, now = self.record, self.svc.wall()
        if self._outcome_unknown:
            # counted with the projects of the video (``infra/monitoring.tf``): the unanswered call may
            # have made one that OpusClip does not list, and this one makes another
            self._log_outcome("unconfirmed")
        self._attempts += 1
        if self._sent_by_claim:
            self._sent_by_claim = False  # the claim recorded this call as sent
        else:
            self.held.save(create_sent_at=now, create_since=rec.create_since or now, create_attempts=self._attempts)
        self._outcome_unknown = True
        self.log.info(
            f"create attempt {self.record.create_attempts} for {self.obj.uri} (upload {rec.upload_id})",
            event="create_attempt",
            attempt=self.record.create_attempts,
        )
        try:
            return self.svc.opus.create_clip_project(command, rec.upload_id or "")
        except (AmbiguousCreateError, AnswerLostError):
            raise
        except (TransientError, OpusApiError) as exc:
            self._log_outcome("not-sent" if isinstance(exc, TransientError) else "refused", reason=exc.reason)
            self._attempts -= 1
            self.held.checkpoint(create_sent_at=None, create_attempts=self._attempts)
            self._outcome_unknown = False
            raise


def handle_clip_request(request: ClipRequest, services: Services) -> str:
    """Create the project for ``request`` unless one exists; raises ``TransientError`` to be redelivered."""
    return _CreateProject(request, services).run()


def is_ambiguous(record: VideoRecord, now: float) -> bool:
    """Whether the video's creation is ambiguous: a create call was sent, what it did is unknown, and
    no delivery is at it now."""
    return record.state == states.CREATING and record.create_sent_at is not None and not record.lease_live(now)


def resolve_ambiguous(stored: Stored, services: Services) -> None:
    """A webhook for a video whose creation is ambiguous: OpusClip made a project of it, so the project
    list is looked at now, once (under the video's lease, never creating anything) rather than on the
    clip request's next redelivery. Found nothing, or could not look: the redelivery looks again."""
    rec = stored.record
    if not rec.upload_id:
        return
    try:
        _CreateProject(rec.clip_request(), services, adopt_only=True).run()
    except TransientError as exc:
        logs.info(
            f"webhook: the project of {rec.source.uri} is not adopted yet ({exc}); its clip request looks again",
            labels=rec.source.labels(),
            event="create_reconciled",
        )
