"""Use case: a video landed in the source bucket → its bytes stream into OpusClip → hand-over.

Composed from the claim protocol (exactly-once claim, lease, resume point), the OpusClip client,
the resumable session protocol and the prefetching source reader. Before any byte, once: the
metadata is validated, the duration probed from the container (``domain/media_probe.py``) and the
credits it will cost checked against this month's (``usecases/credits.py``: it waits if they do not
fit, and the sweeper's ingest request brings it back). See ``domain/states.py`` for the states.
"""

from __future__ import annotations

from collections.abc import Iterator

from opus_pipeline import logs
from opus_pipeline.domain import credits, states
from opus_pipeline.domain.credits import WAITING_FOR_SLOT
from opus_pipeline.domain.events import StorageObject, foreign_bucket, name_problem, skip_reason
from opus_pipeline.domain.media_probe import RangedReader, probe_duration
from opus_pipeline.domain.messages import IngestRequest
from opus_pipeline.domain.preferences import Preferences, effective, parse_metadata
from opus_pipeline.domain.rate_window import UPLOAD_LINK_SHARE
from opus_pipeline.domain.record import VideoRecord, now_rfc3339
from opus_pipeline.domain.url_policy import check_url
from opus_pipeline.errors import (
    DeadlineReachedError,
    InProgressError,
    OpusApiError,
    PermanentError,
    SessionExpiredError,
    SupersededError,
    TransientError,
)
from opus_pipeline.gcs.ledger import record_path
from opus_pipeline.gcs.sessions import KeptSession, UploadSessions
from opus_pipeline.gcs.source import Prefetcher, SourceObject
from opus_pipeline.opus.client import MONTHLY_CAP_REASON as MONTHLY_CAP
from opus_pipeline.opus.resumable import ResumableSession, put_length, start
from opus_pipeline.retry import Backoff
from opus_pipeline.runtime import Services
from opus_pipeline.usecases import credits as credit_queue
from opus_pipeline.usecases.admit import admit_next, show_waiting
from opus_pipeline.usecases.failures import record_failure
from opus_pipeline.usecases.leased import LeasedUseCase
from opus_pipeline.usecases.publish import choice_of, with_accounts

PROGRESS_LOG_SECONDS = 5.0
MAX_SESSION_RENEWALS = 2


class _Link:
    """What one invocation knows of the way to OpusClip: the source, its two-buffer prefetcher
    (reused by every stream, so memory stays at two chunks across interruptions), the throughput
    measured by the last request (None until one is done), and when progress was last logged
    and recorded."""

    def __init__(self, source: SourceObject, total: int, chunk: int, now: float) -> None:
        self.source, self.total, self.chunk = source, total, chunk
        self.rate: float | None = None
        self.last_log = self.last_save = now
        self._prefetcher: Prefetcher | None = None

    def restart(self, start: int) -> Iterator[tuple[int, memoryview]]:
        """The chunks from ``start``, read ahead into the same two buffers as every stream before."""
        if self._prefetcher is None:
            self._prefetcher = Prefetcher(self.source.read_into, start, self.total, self.chunk)
            return iter(self._prefetcher)
        return self._prefetcher.restart(start)

    def measured(self, length: int, seconds: float) -> None:
        self.rate = length / seconds if seconds > 0 else float("inf")

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()


def handle_finalized(obj: StorageObject, services: Services) -> str:
    """Process one finalize event; return the video's state. Raises ``TransientError`` to retry."""
    refused = _refused(obj, services)
    if refused:
        return refused
    skip = skip_reason(obj, services.settings.source_prefix, services.settings.state_bucket)
    if skip:
        logs.info(f"skipped gs://{obj.bucket}/{obj.name}: {skip.reason}", labels=obj.labels(), event="video_skipped")
        if skip.show:
            services.status.show(obj, states.SKIPPED, error=skip.reason)
        return states.SKIPPED
    return _Ingest(obj, services).run()


def _refused(obj: StorageObject, services: Services) -> str | None:
    """Before anything else: an event of another bucket is not ours to touch (nor its object), and
    a name no state record can be written for fails for good at once, not after a day of retries."""
    labels = obj.labels()
    if why := foreign_bucket(obj.bucket, services.settings.source_bucket):
        logs.warning(
            f"refused an event for gs://{obj.bucket}: {why}; check the trigger", labels=labels, event="bad_event"
        )
        return states.SKIPPED
    if why := name_problem(obj.name, [record_path(obj)]):
        logs.error(f"{obj.uri} failed: {why}", labels=labels, event="video_failed", reason="bad-name")
        services.status.show(obj, states.FAILED, error=why)
        return states.FAILED
    return None


def handle_ingest_request(request: IngestRequest, services: Services) -> str:
    """The sweeper admitted a video that waited for credits: upload it now. Only a video the ledger
    holds as waiting for credits is touched; any other request is logged and acknowledged."""
    stored = services.ledger.read(request.source)
    record = stored.record if stored else None
    if record is None or record.state != states.WAITING or record.waiting_for != credits.WAITING_FOR_CREDITS:
        logs.info(
            f"ignored an ingest request for {request.source.uri}: "
            + (f"it is {record.state}, not waiting for credits" if record else "no video of that generation is known"),
            labels=request.source.labels(),
            event="stale_ingest_request",
        )
        return record.state if record else states.SKIPPED
    return _Ingest(record.source, services, admitted=True).run()


class _Ingest(LeasedUseCase[states.IngestStep]):
    """One invocation's work on one video; holds the lease while it runs."""

    rule = staticmethod(states.ingest_step)

    def __init__(self, obj: StorageObject, services: Services, admitted: bool = False) -> None:
        super().__init__(obj, services, logs.Logger(obj.labels()), services.settings.lease_seconds)
        self.status = services.status
        self.sessions = UploadSessions(services.storage, services.settings.state_bucket)
        self.deadline = services.clock() + self.settings.upload_deadline_seconds
        self.admitted = admitted  # the sweeper's ingest request for a video that waited for credits

    def decide(self, record: VideoRecord) -> states.IngestStep:
        admitted = self.admitted and record.waiting_for == credits.WAITING_FOR_CREDITS and not record.upload_complete
        return states.ingest_step(
            record.state, record.lease_owner, record.lease_expires, self.lease.owner, self.svc.wall(), admitted
        )

    # -- the story of a video ---------------------------------------------------------------

    def run(self) -> str:
        step = self.claim(lambda: VideoRecord(self.obj))
        self.log.bind(uploadId=self.record.upload_id)
        if step is states.IngestStep.NOTHING:
            self.log.info(f"duplicate event for {self.obj.uri}: already {self.record.state}", event="duplicate_event")
            return self.record.state
        if step is states.IngestStep.BUSY:
            raise InProgressError(
                "another invocation is streaming this video; this delivery will be retried and "
                "takes over if that one stops heartbeating"
            )
        try:
            with self.held.keep_alive(on_lost=self._lease_trouble):
                if step is states.IngestStep.UPLOAD:
                    if not self._may_upload():
                        return self.record.state
                    self._upload()
                self._hand_over()
        except OpusApiError as exc:
            if exc.reason != MONTHLY_CAP:
                record_failure(self.held, self.status, exc, self.log)
                self._forget_session()
            else:  # on upload-links or api-usage: the video waits for the month's credits, as at creation
                self.held.save()  # the probe's estimate, noted only, is what it waits with
                why = f"OpusClip's monthly cap is reached until {exc.reset_at}"
                credit_queue.wait(self.svc, self.held, self.log, why, reset_at=exc.reset_at)
        except PermanentError as exc:
            record_failure(self.held, self.status, exc, self.log)
            self._forget_session()
        except SupersededError as exc:
            self._supersede(exc)
            self._forget_session()
        except InProgressError:
            raise
        except BaseException:
            self._release()
            raise
        finally:
            self.status.wait(self.obj)
        return self.record.state

    def _may_upload(self) -> bool:
        """Before any byte, once: the checks, the probe, and whether this month's credits suffice
        (a resumed one passed them already; one admitted from the credit queue must hold its reservation)."""
        if self.record.state == states.WAITING:  # an ingest request: only what the credit book admitted goes
            return self._admitted()
        if self.record.state != states.RECEIVED:
            return True
        prefs = self._validate()
        publish = choice_of(self.svc, self.obj)  # its syntax: before any call
        estimate = self._probe(prefs)  # a file that is not a video costs no OpusClip call either
        self._check_brand_template(prefs)
        self.held.checkpoint(publish=with_accounts(self.svc, publish))  # its accounts: before any byte
        if credit_queue.ask(self.svc, self.obj.key, estimate):
            return True
        credit_queue.wait(self.svc, self.held, self.log, f"its {estimate} credits do not fit this month")
        return False

    def _admitted(self) -> bool:
        """The same credit gate as a first upload: an ingest request (the sweeper's, or anyone's who may
        publish one) uploads a waiting video only if its estimate is reserved in the book or fits now."""
        estimate = self.record.credits or 0
        if credit_queue.ask(self.svc, self.obj.key, estimate):
            return True
        credit_queue.wait(self.svc, self.held, self.log, f"its {estimate} credits are not reserved and do not fit")
        return False

    def _probe(self, prefs: Preferences) -> int:
        """The duration from the container header (a few ranged reads of the pinned generation), the
        credits it will cost, and OpusClip's limits on both, before any byte is sent."""
        source = SourceObject(self.svc.storage, self.svc.source_reads, self.obj, self.obj.generation)
        reader = RangedReader(source.read_range, self.obj.size)
        seconds = probe_duration(reader, name=self.obj.uri)
        estimate = credits.estimate(seconds, prefs.range)
        self.held.checkpoint(duration_seconds=round(seconds, 3), credits=estimate)  # a crash probes again
        extra = {"opus-duration": str(round(seconds, 3)), "opus-credits": str(estimate)}
        self.status.show(self.obj, states.RECEIVED, extra=extra, background=True)
        self.log.info(
            f"{self.obj.uri} lasts {seconds:.1f} s: its project costs about {estimate} credits",
            event="video_probed",
            seconds=round(seconds, 3),
            credits=estimate,
            bytes=reader.bytes_read,
            requests=reader.requests,
        )
        credits.check_video(seconds, prefs.range, self.settings.max_video_seconds)
        return estimate

    def _validate(self) -> Preferences:
        """The checks that need no call: size and preferences; the preferences the project will have."""
        size, limit = self.obj.size, self.settings.max_video_bytes
        if self.obj.content_encoding.lower() not in ("", "identity"):
            # Its stored bytes are the compressed ones, and those are what a ranged read returns:
            # OpusClip would receive gzip data as the video.
            raise PermanentError(
                f"the object is stored with contentEncoding {self.obj.content_encoding!r}, so its bytes are "
                "not the video; upload it again without compression (no `-Z`/`--gzip-local-all` or `-z` "
                "option of `gcloud storage cp`)",
                reason="gzip-encoded",
            )
        if size == 0:
            raise PermanentError("the object is empty (0 bytes); upload the video again", reason="empty")
        if size > limit:
            raise PermanentError(
                f"the video is {size} bytes, over the limit of {limit} bytes (MAX_VIDEO_BYTES); "
                "trim or compress it and upload again",
                reason="too-big",
            )
        prefs = parse_metadata(self.obj.metadata)
        project_prefs = effective(prefs, self.settings.default_preferences, self.obj.name)
        self.held.checkpoint(preferences=prefs.to_message())  # written with the session, or now
        return project_prefs

    def _check_brand_template(self, prefs: Preferences) -> None:
        """A workspace's own template id is checked against its list before any byte is sent; OpusClip's
        presets (``preset-…``) are not listed, and where the list is not open to the workspace the id
        goes unchecked."""
        template = prefs.brandTemplateId
        if template is None or template.startswith("preset-"):
            return
        known = self.svc.opus.brand_template_ids()
        if known is None:
            self.log.info(
                f"OpusClip's brand-template list is not available to this workspace (an enterprise feature); "
                f"brand template {template!r} is used unchecked",
                event="brand_template_unchecked",
            )
        elif template not in known:
            raise PermanentError(
                f"brand template {template!r} is not one of the {len(known)} brand templates of this OpusClip "
                "workspace; fix opus-brand-template-id (or OPUS_DEFAULT_BRAND_TEMPLATE_ID) or use a preset-… one",
                reason="unknown-brand-template",
            )

    def _upload(self) -> None:
        """Stream every byte into one session, resuming it across failures and retries."""
        kept = self._kept_session()
        session = self._resume(kept) if kept else self._open_session()
        streaming_since = self.svc.clock()
        source = SourceObject(
            self.svc.storage, self.svc.source_reads, self.obj, self.record.read_generation or self.obj.generation
        )
        link = _Link(source, self.obj.size, self.settings.upload_chunk_size, streaming_since)
        renewals, backoff = 0, Backoff()
        try:
            while not session.complete:
                before = session.committed
                try:
                    if session.invalid:
                        self._recover(session)
                    else:
                        self._stream(session, link)
                except SessionExpiredError:
                    renewals += 1
                    if renewals > MAX_SESSION_RENEWALS:
                        raise TransientError("the OpusClip upload session keeps expiring") from None
                    self.log.warning("the upload session expired; starting a new one")
                    session = self._open_session()
                    backoff.restart()  # a new session owes nothing to the old one's failures
                except (DeadlineReachedError, InProgressError):
                    raise
                except TransientError as exc:
                    if session.committed > before:
                        backoff.restart()  # it moved on: its failures start over
                    session.mark_unknown()
                    self._wait_before_retry(exc, backoff.next_wait(exc), session)
        finally:
            link.close()
        self._uploaded(self.svc.clock() - streaming_since)

    def _wait_before_retry(self, exc: TransientError, delay: float, session: ResumableSession) -> None:
        if self.svc.clock() + delay > self.deadline:
            self.held.renew(committed=session.committed)
            raise DeadlineReachedError(
                f"{exc}; gave up for this attempt at byte {session.committed}, the retry resumes there"
            ) from None
        self.log.warning(f"{exc}; asking the session where it stands in {delay:.1f}s")
        self.svc.sleep(delay)

    # -- the session ------------------------------------------------------------------------

    def _open_session(self) -> ResumableSession:
        """New upload link and session: the session kept (``gcs/sessions.py``) before any byte is sent,
        the record's ``uploading`` noted to ride on its next write, or to be written by the lease's
        keeper within the second (Cloud Storage's write rate on the record: the claim has just
        written it, and a short video is handed over within that second). A crash before that write
        finds the session kept all the same (``_kept_session``)."""
        link = self.svc.opus.create_upload_link(self._link_share())
        if link.remaining is None:
            self.log.info("OpusClip did not say how much upload quota is left; uploading anyway")
        elif self.obj.size > link.remaining:
            raise PermanentError(
                f"OpusClip's upload quota has {max(link.remaining, 0)} bytes left, the video needs "
                f"{self.obj.size}; free space or upgrade, then retry",
                reason="quota",
            )
        hosts = self.settings.upload_url_hosts
        check_url(link.url, hosts, "upload-link url")
        session_url = start(self.svc.opus.http, link.url)
        check_url(session_url, hosts, "upload session Location")
        self.sessions.keep(self.obj, session_url, link.upload_id)
        self.held.checkpoint(
            state=states.UPLOADING,
            upload_id=link.upload_id,
            committed=0,
            read_generation=self.obj.generation,
        )
        self.log.bind(uploadId=link.upload_id)
        self.status.show(self.obj, states.UPLOADING, upload_id=link.upload_id, background=True)
        self.log.info(
            f"streaming {self.obj.uri} ({self.obj.size} bytes) into OpusClip",
            event="upload_started",
            bytes=self.obj.size,
        )
        return ResumableSession(self.svc.opus.http, session_url, self.obj.size)

    def _link_share(self) -> float:
        """How much of OpusClip's request budget this upload link may take. Once a slot's worth of
        videos waits uploaded for a project slot, this one would only wait behind them, and its link
        is a call the projects' turnovers (creation, the look, clips, transcript) need a minute later:
        links then take at most ``UPLOAD_LINK_SHARE`` of the window. Otherwise, the whole budget."""
        waiting = len(self.svc.admission.read().waiting)
        return UPLOAD_LINK_SHARE if waiting >= self.settings.max_parallel_projects else 1.0

    def _kept_session(self) -> KeptSession | None:
        """The session of the upload under way, kept apart from the record (``gcs/sessions.py``): the
        record says ``uploading``, or still ``received`` when the invocation that opened the session
        died before that rode on a write."""
        if self.record.state not in (states.UPLOADING, states.RECEIVED):
            return None
        return self.sessions.find(self.obj)

    def _resume(self, kept: KeptSession) -> ResumableSession:
        """The kept session, whose position only it knows for sure. It names its upload, which the
        record may not yet: a session opened again after one expired, or the first, whose ``uploading``
        had not ridden on a write when its invocation died."""
        if self.record.upload_id != kept.upload_id:
            self.held.checkpoint(state=states.UPLOADING, upload_id=kept.upload_id, committed=0)
            self.log.bind(uploadId=kept.upload_id)
        return ResumableSession(self.svc.opus.http, kept.url, self.obj.size, self.record.committed, invalid=True)

    def _forget_session(self) -> None:
        """No session URL outlives its upload; one left behind expires with the lifecycle rule."""
        try:
            self.sessions.forget(self.obj)
        except Exception as exc:  # the upload's outcome is recorded already; this is tidying up
            self.log.warning(f"could not delete the kept upload session ({type(exc).__name__}); it expires in a week")

    def _recover(self, session: ResumableSession) -> None:
        session.recover()
        if not session.complete:
            self.log.info(
                f"resuming the upload at byte {session.committed} of {self.obj.size}",
                event="upload_resumed",
                bytes=session.committed,
            )

    def _stream(self, session: ResumableSession, link: _Link) -> None:
        """Send from ``committed`` in as few requests as the deadline allows, until done or the
        session kept fewer bytes than sent (then the caller streams again from what it kept)."""
        chunks = link.restart(session.committed)
        while not session.complete:
            now = self.svc.clock()
            if now >= self.deadline:
                self.held.renew(committed=session.committed)
                raise DeadlineReachedError(
                    f"the attempt's time is up at byte {session.committed}; the retry resumes there"
                )
            start = session.committed
            length = put_length(start, self.obj.size, link.chunk, link.rate, self.deadline - now)
            session.put_stream(self._sent(chunks, start, link), length)
            link.measured(length, self.svc.clock() - now)
            self._confirmed(session, link)
            if not session.complete and session.committed != start + length:
                return

    def _sent(self, chunks: Iterator[tuple[int, memoryview]], start: int, link: _Link) -> Iterator[memoryview]:
        """The request's body, chunk by chunk; logs the bytes handed to the socket every few seconds
        (within one request only the sender knows them; the session confirms at its end)."""
        for offset, view in chunks:
            now = self.svc.clock()
            if now - link.last_log >= PROGRESS_LOG_SECONDS:
                self.log.info(
                    f"sent {offset} of {self.obj.size} bytes ({start} confirmed by OpusClip)",
                    event="upload_progress",
                    bytes=offset,
                )
                link.last_log = now
            yield view

    def _confirmed(self, session: ResumableSession, link: _Link) -> None:
        """Note what the session confirmed and the generation read every third of a lease, and a
        re-pinned generation when it changes. Each rides on the next write when the record was written
        within the second (Cloud Storage's write rate on it): a crash loses only what the session's
        status query gives back, and a takeover that finds the recorded generation gone re-pins by the
        same bytes check (``SourceObject``), so the new pin need not be written at once."""
        now = self.svc.clock()
        generation, pinned = link.source.generation, self.record.read_generation
        if generation != pinned or now - link.last_save >= self.settings.lease_seconds / 3:
            self.held.checkpoint(committed=session.committed, read_generation=generation)
            link.last_save = now

    def _uploaded(self, seconds: float) -> None:
        # Written with the hand-over's ``queued`` unless a second has passed (Cloud Storage's write rate on
        # the record): a crash before that write finds the session complete and ends here again.
        self.held.checkpoint(state=states.UPLOADED, committed=self.obj.size, uploaded_at=now_rfc3339())
        self.status.show(self.obj, states.UPLOADED, upload_id=self.record.upload_id, background=True)
        self.log.info(
            f"uploaded {self.obj.uri}: {self.obj.size} bytes in {seconds:.1f}s",
            event="video_uploaded",
            bytes=self.obj.size,
            seconds=round(seconds, 3),
        )

    # -- hand-over and endings --------------------------------------------------------------

    def _hand_over(self) -> None:
        """Hand the uploaded video to project creation: its clip request when a project slot is free
        for it, else a place in the slot queue (``_line_up``). The free slot is taken here, not only
        seen: ingests of a folder that all see the same free slot would each publish a clip request,
        and all but one would be refused a slot, claim the record and write it ``waiting``, two more
        writes at once on a record ingest has just written (Cloud Storage allows about one a second),
        ahead of the videos admitted. Project creation finds the slot its own; the sweeper leaves it
        alone while the video is not created yet (``ADMIT_GRACE_SECONDS``).

        Either hand-over is recorded first (``queued`` or ``waiting``, the lease still ours) by a fresh CAS:
        that write is what makes one clip request per upload more than luck. An invocation whose
        lease lapsed and was taken over loses that CAS and publishes nothing, and a later delivery
        finds the record handed over and does nothing (``states.ingest_step``) unless its holder
        died between the write and the publish. After the publish the hand-over is done and the
        lease is left to lapse, not released: project creation takes a handed-over record whoever
        holds it, and a release would be one more write competing with its claim under Cloud
        Storage's write rate on the record. A duplicate event meanwhile meets the lease (and is
        redelivered) or a record that moved on."""
        if self.record.state == states.WAITING or not self.svc.admission.take(self.obj.key, self.svc.wall()):
            self._line_up()
            return
        self.held.save(state=states.QUEUED)
        self._forget_session()
        self.status.show(self.obj, states.QUEUED, upload_id=self.record.upload_id, background=True)
        request = self.record.clip_request()
        message_id = self.svc.publisher.publish(self.settings.clip_requests_topic, request, "the clip request")
        self.log.info(
            f"queued {self.obj.uri} for clip-project creation", event="clip_request_published", messageId=message_id
        )

    def _line_up(self) -> None:
        """No project slot is free: the video waits in the slot queue without a clip request, to be
        admitted (its request published) when a slot frees. A clip request now would only be
        claimed, refused a slot and recorded ``waiting`` by project creation: two more writes of
        the record (Cloud Storage allows about one a second) and a delivery ahead of every admitted
        video's in a burst. The record is written first (``waiting``, the lease still ours: a crash
        before the queue entry is a hand-over the next delivery finishes), then the entry; a slot
        freed in between is taken up at once (``admit_next``)."""
        self.held.save(state=states.WAITING, waiting_for=WAITING_FOR_SLOT)
        self._forget_session()
        position = self.svc.admission.enqueue(self.obj.key, self.svc.wall())
        admit_next(self.svc)
        show_waiting(self.svc, self.obj, self.record.upload_id, position, self.log)

    def _supersede(self, exc: SupersededError) -> None:
        self.held.settle(states.SUPERSEDED, exc)
        self.log.warning(
            f"{exc}; the newer upload is processed on its own", event="video_superseded", reason=exc.reason
        )

    def _lease_trouble(self, exc: Exception) -> None:
        self.log.warning(f"could not renew the lease ({type(exc).__name__}); the resume point stays recorded")

    def _release(self) -> None:
        """Give up the lease so the platform's retry can resume at once. A hand-over that failed
        keeps its holder named, lapsed: that says the clip request is still to be published (or the
        video still to be lined up for a slot)."""
        try:
            if self.record.state in (states.QUEUED, states.WAITING) and self.record.upload_complete:
                self.held.save(lease_expires=0.0)
            else:
                self.held.release()
        except Exception as exc:  # the retry still resumes once the lease expires
            self.log.warning(f"could not release the lease ({type(exc).__name__})")
