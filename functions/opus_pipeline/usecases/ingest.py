"""Use case: a video landed in the source bucket → its bytes stream into OpusClip → hand-over.

Composed from the claim protocol (exactly-once claim, lease, resume point), the OpusClip client,
the resumable session protocol and the prefetching source reader. Before any byte, once: the
metadata is validated, the duration probed from the container (``domain/media_probe.py``) and the
credits it will cost checked against this month's (``usecases/credits.py``: it waits if they do not
fit, and the sweeper's ingest request brings it back). See ``domain/states.py`` for the states.
"""

from __future__ import annotations

import random

from opus_pipeline import http_policy, logs
from opus_pipeline.domain import credits, states
from opus_pipeline.domain.events import StorageObject, skip_reason
from opus_pipeline.domain.media_probe import RangedReader, probe_duration
from opus_pipeline.domain.messages import IngestRequest
from opus_pipeline.domain.preferences import Preferences, parse_metadata
from opus_pipeline.domain.record import VideoRecord, now_rfc3339
from opus_pipeline.domain.url_policy import check_url
from opus_pipeline.errors import (
    DeadlineReachedError,
    InProgressError,
    PermanentError,
    SessionExpiredError,
    SupersededError,
    TransientError,
)
from opus_pipeline.gcs.source import Prefetcher, SourceObject
from opus_pipeline.opus.resumable import ResumableSession, start
from opus_pipeline.runtime import Services
from opus_pipeline.usecases import credits as credit_queue
from opus_pipeline.usecases.failures import record_failure
from opus_pipeline.usecases.leased import LeasedUseCase

PROGRESS_LOG_SECONDS = 5.0
MAX_SESSION_RENEWALS = 2


def handle_finalized(obj: StorageObject, services: Services) -> str:
    """Process one finalize event; return the video's state. Raises ``TransientError`` to retry."""
    skip = skip_reason(obj, services.settings.source_prefix, services.settings.state_bucket)
    if skip:
        logs.info(f"skipped gs://{obj.bucket}/{obj.name}: {skip.reason}", labels=obj.labels(), event="video_skipped")
        if skip.show:
            services.status.show(obj, states.SKIPPED, error=skip.reason)
        return states.SKIPPED
    return _Ingest(obj, services).run()


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
        except PermanentError as exc:
            record_failure(self.held, self.status, exc, self.log)
        except SupersededError as exc:
            self._supersede(exc)
        except InProgressError:
            raise
        except BaseException:
            self._release()
            raise
        finally:
            self.status.wait()
        return self.record.state

    def _may_upload(self) -> bool:
        """Before any byte, once: the checks, the probe, and whether this month's credits suffice
        (a video admitted from the credit queue, or resumed, passed them already)."""
        if self.record.state != states.RECEIVED:
            return True
        estimate = self._probe(self._validate())
        if credit_queue.ask(self.svc, self.obj.key, estimate):
            return True
        credit_queue.wait(self.svc, self.held, self.log, f"its {estimate} credits do not fit this month")
        return False

    def _probe(self, prefs: Preferences) -> int:
        """The duration from the container header (a few ranged reads of the pinned generation), the
        credits it will cost, and OpusClip's limits on both, before any byte is sent."""
        source = SourceObject(self.svc.storage, self.obj, self.obj.generation)
        reader = RangedReader(source.read_range, self.obj.size)
        seconds = probe_duration(reader, name=self.obj.uri)
        estimate = credits.estimate(seconds, prefs.range)
        self.held.save(duration_seconds=round(seconds, 3), credits=estimate)
        extra = {"opus-duration": str(round(seconds, 3)), "opus-credits": str(estimate)}
        self.status.show(self.obj, states.RECEIVED, extra=extra, background=True)
        self.log.info(
            f"{self.obj.uri} lasts {seconds:.1f} s: its project costs about {estimate} credits",
            event="video_probed",
            seconds=round(seconds, 3),
            credits=estimate,
            bytes=reader.bytes_read,
        )
        credits.check_video(seconds, prefs.range, self.settings.max_video_seconds)
        return estimate

    def _validate(self) -> Preferences:
        size, limit = self.obj.size, self.settings.max_video_bytes
        if size == 0:
            raise PermanentError("the object is empty (0 bytes); upload the video again", reason="empty")
        if size > limit:
            raise PermanentError(
                f"the video is {size} bytes, over the limit of {limit} bytes (MAX_VIDEO_BYTES); "
                "trim or compress it and upload again",
                reason="too-big",
            )
        prefs = parse_metadata(self.obj.metadata)
        self.held.save(preferences=prefs.to_message())
        return prefs

    def _upload(self) -> None:
        """Stream every byte into one session, resuming it across failures and retries."""
        session = self._resume() if self.record.session_url else self._open_session()
        streaming_since = self.svc.clock()
        renewals = failures = 0
        while not session.complete:
            before = session.committed
            try:
                if session.invalid:
                    self._recover(session)
                else:
                    self._stream(session)
            except SessionExpiredError:
                renewals += 1
                if renewals > MAX_SESSION_RENEWALS:
                    raise TransientError("the OpusClip upload session keeps expiring") from None
                self.log.warning("the upload session expired; starting a new one")
                session = self._open_session()
            except (DeadlineReachedError, InProgressError):
                raise
            except TransientError as exc:
                failures = 1 if session.committed > before else failures + 1
                session.mark_unknown()
                self._wait_before_retry(exc, failures, session)
        self._uploaded(self.svc.clock() - streaming_since)

    def _wait_before_retry(self, exc: TransientError, failures: int, session: ResumableSession) -> None:
        delay = http_policy.backoff_seconds(failures, exc.retry_after, random.uniform(0.5, 1))
        if self.svc.clock() + delay > self.deadline:
            self.held.renew(committed=session.committed)
            raise DeadlineReachedError(
                f"{exc}; gave up for this attempt at byte {session.committed}, the retry resumes there"
            ) from None
        self.log.warning(f"{exc}; asking the session where it stands in {delay:.1f}s")
        self.svc.sleep(delay)

    # -- the session ------------------------------------------------------------------------

    def _open_session(self) -> ResumableSession:
        """New upload link and session, recorded before any byte is sent."""
        link = self.svc.opus.create_upload_link()
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
        self.held.save(
            state=states.UPLOADING,
            upload_id=link.upload_id,
            session_url=session_url,
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

    def _resume(self) -> ResumableSession:
        """The recorded session, whose position only it knows for sure."""
        session_url = self.record.session_url or ""
        return ResumableSession(self.svc.opus.http, session_url, self.obj.size, self.record.committed, invalid=True)

    def _recover(self, session: ResumableSession) -> None:
        session.recover()
        if not session.complete:
            self.log.info(
                f"resuming the upload at byte {session.committed} of {self.obj.size}",
                event="upload_resumed",
                bytes=session.committed,
            )

    def _stream(self, session: ResumableSession) -> None:
        """Send from ``committed`` chunk by chunk until done or the session kept fewer bytes."""
        source = SourceObject(self.svc.storage, self.obj, self.record.read_generation or self.obj.generation)
        prefetcher = Prefetcher(source.read_into, session.committed, self.obj.size, self.settings.upload_chunk_size)
        last_save = last_log = self.svc.clock()
        try:
            for chunk_offset, view in prefetcher:
                session.put(view)
                if session.complete or session.committed != chunk_offset + len(view):
                    return
                now = self.svc.clock()
                if (
                    source.generation != self.record.read_generation
                    or now - last_save >= self.settings.lease_seconds / 3
                ):
                    self.held.renew(committed=session.committed, read_generation=source.generation)
                    last_save = now
                if now - last_log >= PROGRESS_LOG_SECONDS:
                    self.log.info(
                        f"streamed {session.committed} of {self.obj.size} bytes",
                        event="upload_progress",
                        bytes=session.committed,
                    )
                    last_log = now
                if now > self.deadline:
                    self.held.renew(committed=session.committed)
                    raise DeadlineReachedError(
                        f"the attempt's time is up at byte {session.committed}; the retry resumes there"
                    )
        finally:
            prefetcher.close()
        raise TransientError("the source ended before the session confirmed the last byte")

    def _uploaded(self, seconds: float) -> None:
        self.held.save(state=states.UPLOADED, committed=self.obj.size, session_url=None, uploaded_at=now_rfc3339())
        self.status.show(self.obj, states.UPLOADED, upload_id=self.record.upload_id, background=True)
        self.log.info(
            f"uploaded {self.obj.uri}: {self.obj.size} bytes in {seconds:.1f}s",
            event="video_uploaded",
            bytes=self.obj.size,
            seconds=round(seconds, 3),
        )

    # -- hand-over and endings --------------------------------------------------------------

    def _hand_over(self) -> None:
        request = self.record.clip_request()
        message_id = self.svc.publisher.publish(self.settings.clip_requests_topic, request, "the clip request")
        self.held.release(state=states.QUEUED, message_id=message_id)
        self.status.show(self.obj, states.QUEUED, upload_id=self.record.upload_id)
        self.log.info(f"queued {self.obj.uri} for clip-project creation", event="clip_request_published")

    def _supersede(self, exc: SupersededError) -> None:
        self.held.settle(states.SUPERSEDED, exc)
        self.log.warning(
            f"{exc}; the newer upload is processed on its own", event="video_superseded", reason=exc.reason
        )

    def _lease_trouble(self, exc: Exception) -> None:
        self.log.warning(f"could not renew the lease ({type(exc).__name__}); the resume point stays recorded")

    def _release(self) -> None:
        """Give up the lease so the platform's retry can resume at once."""
        try:
            self.held.release()
        except Exception as exc:  # the retry still resumes once the lease expires
            self.log.warning(f"could not release the lease ({type(exc).__name__})")
