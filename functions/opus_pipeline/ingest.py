"""Use case: a video landed in the source bucket → its bytes stream into OpusClip → hand-over.

Composed from the ledger (exactly-once claim, lease, resume point), the OpusClip client, the
resumable session protocol and the prefetching source reader. See ``states.py`` for the states.
"""

from __future__ import annotations

import random
import uuid

from . import logs, resumable, states
from .errors import (
    InProgressError,
    PermanentError,
    SessionExpiredError,
    SupersededError,
    TransientError,
)
from .events import StorageObject, skip_reason
from .failures import record_failure
from .ledger import ConflictError, HeldRecord, Stored, VideoRecord, now_rfc3339
from .preferences import parse_metadata
from .runtime import Services
from .source import Prefetcher, SourceObject
from .upload_hosts import check_upload_url

PROGRESS_LOG_SECONDS = 5.0
MAX_SESSION_RENEWALS = 2


class DeadlineReachedError(TransientError):
    reason = "deadline"


def handle_finalized(obj: StorageObject, services: Services) -> str:
    """Process one finalize event; return the video's state. Raises ``TransientError`` to retry."""
    skip = skip_reason(obj, services.settings.source_prefix, services.settings.state_bucket)
    if skip:
        logs.info(f"skipped gs://{obj.bucket}/{obj.name}: {skip.reason}", labels=obj.labels(), event="video_skipped")
        if skip.show:
            services.status.show(obj.to_message(), states.SKIPPED, error=skip.reason)
        return states.SKIPPED
    return _Ingest(obj, services).run()


class _Ingest:
    """One invocation's work on one video; holds the lease while it runs."""

    def __init__(self, obj: StorageObject, services: Services) -> None:
        self.obj = obj
        self.svc = services
        self.settings = services.settings
        self.ledger = services.ledger
        self.status = services.status
        self.me = uuid.uuid4().hex
        self.started = services.clock()
        self.deadline = self.started + self.settings.upload_deadline_seconds
        self.labels = obj.labels()
        self.held: HeldRecord | None = None
        self.duplicate = False

    # -- lease and record -------------------------------------------------------------------

    def _lease_until(self) -> float:
        return self.svc.wall() + self.settings.lease_seconds

    def _claim(self) -> Stored:
        """Create the record or take over its lease; ``self.duplicate`` when nothing is left to do."""
        for _ in range(5):
            stored = self.ledger.read(self.obj)
            try:
                if stored is None:
                    record = VideoRecord.for_object(self.obj).replace(
                        lease_owner=self.me, lease_expires=self._lease_until()
                    )
                    return self.ledger.create(record)
                rec = stored.record
                step = states.ingest_step(rec.state, rec.lease_owner, rec.lease_expires, self.me, self.svc.wall())
                if step is states.IngestStep.NOTHING:
                    logs.info(
                        f"duplicate event for gs://{self.obj.bucket}/{self.obj.name}: already {rec.state}",
                        labels={**self.labels, "uploadId": rec.upload_id},
                        event="duplicate_event",
                    )
                    self.duplicate = True
                    return stored
                if step is states.IngestStep.BUSY:
                    raise InProgressError(
                        "another invocation is streaming this video; this delivery will be retried and "
                        "takes over if that one stops heartbeating"
                    )
                return self.ledger.write(stored, rec.replace(lease_owner=self.me, lease_expires=self._lease_until()))
            except ConflictError:
                continue
        raise InProgressError("the state record kept changing while this invocation tried to claim it")

    def _heartbeat(self, committed: int) -> None:
        self._save(committed=committed, lease_expires=self._lease_until())

    def _save(self, **changes) -> None:
        assert self.held is not None
        self.held.save(**changes)

    @property
    def record(self) -> VideoRecord:
        assert self.held is not None
        return self.held.record

    # -- the flow ---------------------------------------------------------------------------

    def run(self) -> str:
        self.held = HeldRecord(self.ledger, self._claim())
        if self.duplicate:
            return self.record.state
        try:
            if self.record.state == states.RECEIVED:
                self._validate()
            if self.record.state in (states.RECEIVED, states.UPLOADING):
                self._upload()
            self._hand_over()
        except PermanentError as exc:
            self._fail(exc)
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

    def _validate(self) -> None:
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
        self._save(preferences=prefs.to_message())

    # -- uploading --------------------------------------------------------------------------

    def _open_session(self) -> None:
        """New upload link and session, recorded before any byte is sent."""
        link = self.svc.opus.create_upload_link()
        if self.obj.size > link.remaining:
            raise PermanentError(
                f"OpusClip's upload quota has {max(link.remaining, 0)} bytes left, the video needs "
                f"{self.obj.size}; free space or upgrade, then retry",
                reason="quota",
            )
        hosts = self.settings.upload_url_hosts
        check_upload_url(link.url, hosts, "upload-link url")
        session_url = resumable.start(self.svc.opus.http, link.url)
        check_upload_url(session_url, hosts, "upload session Location")
        self._save(
            state=states.UPLOADING,
            upload_id=link.upload_id,
            session_url=session_url,
            committed=0,
            read_generation=self.obj.generation,
        )
        self.labels["uploadId"] = link.upload_id
        self.status.show(self.record.source, states.UPLOADING, upload_id=link.upload_id, background=True)
        logs.info(
            f"streaming gs://{self.obj.bucket}/{self.obj.name} ({self.obj.size} bytes) into OpusClip",
            labels=self.labels,
            event="upload_started",
            bytes=self.obj.size,
        )

    def _upload(self) -> None:
        offset: int | None = None  # unknown: ask the session where it stands
        if self.record.session_url:
            self.labels["uploadId"] = self.record.upload_id
        else:
            self._open_session()
            offset = 0
        streaming_since = self.svc.clock()
        renewals = failures = 0
        while True:
            try:
                if offset is None:
                    progress = resumable.query(self.svc.opus.http, self.record.session_url, self.obj.size)
                    if not progress.complete:
                        logs.info(
                            f"resuming the upload at byte {progress.committed} of {self.obj.size}",
                            labels=self.labels,
                            event="upload_resumed",
                            bytes=progress.committed,
                        )
                else:
                    progress = self._stream(offset)
                if progress.complete:
                    break
                if offset is None or progress.committed > offset:
                    failures = 0
                offset = progress.committed
            except SessionExpiredError:
                renewals += 1
                if renewals > MAX_SESSION_RENEWALS:
                    raise TransientError("the OpusClip upload session keeps expiring") from None
                logs.warning("the upload session expired; starting a new one", labels=self.labels)
                self._open_session()
                offset = 0
            except (DeadlineReachedError, InProgressError):
                raise
            except TransientError as exc:
                failures += 1
                delay = states.backoff_seconds(failures, exc.retry_after, random.uniform(0.5, 1))
                if self.svc.clock() + delay > self.deadline:
                    raise DeadlineReachedError(
                        f"{exc}; gave up for this attempt at byte {self.record.committed}, the retry resumes there"
                    ) from None
                logs.warning(f"{exc}; asking the session where it stands in {delay:.1f}s", labels=self.labels)
                self._heartbeat(self.record.committed)  # keep the lease through the wait
                self.svc.sleep(delay)
                offset = None
        seconds = self.svc.clock() - streaming_since
        self._save(state=states.UPLOADED, committed=self.obj.size, session_url=None, uploaded_at=now_rfc3339())
        self.status.show(self.record.source, states.UPLOADED, upload_id=self.record.upload_id, background=True)
        logs.info(
            f"uploaded gs://{self.obj.bucket}/{self.obj.name}: {self.obj.size} bytes in {seconds:.1f}s",
            labels=self.labels,
            event="video_uploaded",
            bytes=self.obj.size,
            seconds=round(seconds, 3),
        )

    def _stream(self, offset: int) -> resumable.Progress:
        """Send ``[offset, size)`` chunk by chunk until done or the session kept fewer bytes."""
        source = SourceObject(self.svc.storage, self.record.source, self.record.read_generation or self.obj.generation)
        chunk = self.settings.upload_chunk_size
        prefetcher = Prefetcher(source.read_into, offset, self.obj.size, chunk)
        last_beat = last_log = self.svc.clock()
        try:
            for chunk_offset, view in prefetcher:
                progress = resumable.put_chunk(
                    self.svc.opus.http, self.record.session_url, view, chunk_offset, self.obj.size
                )
                if progress.complete or progress.committed != chunk_offset + len(view):
                    return progress
                now = self.svc.clock()
                repinned = source.generation != self.record.read_generation
                if repinned or now - last_beat >= self.settings.lease_seconds / 3:
                    self._save(
                        committed=progress.committed,
                        read_generation=source.generation,
                        lease_expires=self._lease_until(),
                    )
                    last_beat = now
                if now - last_log >= PROGRESS_LOG_SECONDS:
                    logs.info(
                        f"streamed {progress.committed} of {self.obj.size} bytes",
                        labels=self.labels,
                        event="upload_progress",
                        bytes=progress.committed,
                    )
                    last_log = now
                if now > self.deadline:
                    self._heartbeat(progress.committed)
                    raise DeadlineReachedError(
                        f"the attempt's time is up at byte {progress.committed}; the retry resumes there"
                    )
        finally:
            prefetcher.close()
        raise TransientError("the source ended before the session confirmed the last byte")

    # -- hand-over and endings --------------------------------------------------------------

    def _hand_over(self) -> None:
        rec = self.record
        request = rec.clip_request()
        try:
            future = self.svc.publisher.publish(
                self.settings.clip_requests_topic, request.encode(), **request.attributes()
            )
            message_id = future.result(timeout=60)
        except Exception as exc:
            raise TransientError(f"publishing the clip request failed ({type(exc).__name__})") from None
        self.held.release(state=states.QUEUED, message_id=message_id)
        self.status.show(rec.source, states.QUEUED, upload_id=rec.upload_id)
        logs.info(
            f"queued gs://{self.obj.bucket}/{self.obj.name} for clip-project creation",
            labels=self.labels,
            event="clip_request_published",
        )

    def _fail(self, exc: PermanentError) -> None:
        record_failure(self.held, self.status, exc, self.labels)

    def _supersede(self, exc: SupersededError) -> None:
        self.held.settle(states.SUPERSEDED, exc)
        logs.warning(
            f"{exc}; the newer upload is processed on its own",
            labels=self.labels,
            event="video_superseded",
            reason=exc.reason,
        )

    def _release(self) -> None:
        """Give up the lease so the platform's retry can resume at once."""
        try:
            self.held.release()
        except Exception as exc:  # the retry still resumes once the lease expires
            logs.warning(f"could not release the lease ({type(exc).__name__})", labels=self.labels)
