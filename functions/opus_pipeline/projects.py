"""Use case: a clip request arrived → exactly one OpusClip clip project for its upload.

Once per upload: the video's state record is claimed ``creating`` by compare-and-swap before
OpusClip is called, and the project id is recorded right after it answers.

The one window that remains: if this process dies after OpusClip created the project and before
the ``project-created`` write lands (a few milliseconds), the redelivered message finds the
record ``creating`` with a lease that expires, and creates a second project. OpusClip's API
offers no idempotency key and no lookup by upload id that would close it. The same holds when
the request timed out after OpusClip accepted it. The window is kept small by doing nothing
between the call and the write, and by holding the lease for the whole call.
"""

from __future__ import annotations

import uuid

from . import logs, states
from .clip_command import build_command, check_command
from .errors import InProgressError, PermanentError
from .events import StorageObject
from .failures import record_failure
from .ledger import ConflictError, HeldRecord, VideoRecord
from .messages import ClipRequest
from .opus_api import OpusApiError, RateLimitedError
from .runtime import Services

SHORT_RETRY_AFTER_SECONDS = 10.0
CREATE_LEASE_SECONDS = 120.0


def _source_object(request: ClipRequest) -> StorageObject:
    src = request.source
    return StorageObject(
        bucket=src["bucket"],
        name=src["name"],
        generation=int(src["generation"]),
        size=int(src["size"]),
        content_type=src.get("contentType") or "",
        md5_hash=src.get("md5Hash"),
    )


class _CreateProject:
    def __init__(self, request: ClipRequest, services: Services) -> None:
        self.request = request
        self.svc = services
        self.obj = _source_object(request)
        self.ledger = services.ledger
        self.me = uuid.uuid4().hex
        self.labels = {**self.obj.labels(), "uploadId": request.upload_id}
        self.held: HeldRecord | None = None

    @property
    def record(self) -> VideoRecord:
        assert self.held is not None
        return self.held.record

    def _claim(self) -> bool:
        """Claim ``creating``; False when there is nothing to do."""
        for _ in range(5):
            stored = self.ledger.read(self.obj)
            if stored is None:  # a replayed message whose record has expired: start a new one
                record = VideoRecord.for_object(self.obj).replace(
                    state=states.QUEUED,
                    upload_id=self.request.upload_id,
                    committed=self.obj.size,
                    preferences=self.request.preferences.to_message(),
                )
                try:
                    stored = self.ledger.create(record)
                except ConflictError:
                    continue
            self.held, rec = HeldRecord(self.ledger, stored), stored.record
            if rec.upload_id != self.request.upload_id:
                logs.warning(
                    f"ignored a clip request for upload {self.request.upload_id}: the video's current upload "
                    f"is {rec.upload_id}",
                    labels=self.labels,
                    event="stale_clip_request",
                )
                return False
            step = states.project_step(rec.state, rec.lease_owner, rec.lease_expires, self.me, self.svc.wall())
            if step is states.ProjectStep.NOTHING:
                logs.info(
                    f"duplicate clip request: the video is already {rec.state}"
                    + (f" (project {rec.project_id})" if rec.project_id else ""),
                    labels={**self.labels, "projectId": rec.project_id},
                    event="duplicate_clip_request",
                )
                return False
            if step is states.ProjectStep.BUSY:
                raise InProgressError("another delivery is creating this project; Pub/Sub will redeliver")
            claimed = rec.replace(
                state=states.CREATING, lease_owner=self.me, lease_expires=self.svc.wall() + CREATE_LEASE_SECONDS
            )
            try:
                self.held = HeldRecord(self.ledger, self.ledger.write(stored, claimed))
                return True
            except ConflictError:
                continue
        raise InProgressError("the video's record kept changing while claiming project creation")

    def run(self) -> str:
        if not self._claim():
            return self.record.state
        try:
            project = self._call_opus()
        except PermanentError as exc:
            self._fail(exc)
            return states.FAILED
        except BaseException:
            self.held.release(state=states.QUEUED)
            raise
        project_id = str(project.get("id") or project.get("projectId") or "")
        self.held.release(
            state=states.PROJECT_CREATED, project_id=project_id, stage=project.get("stage"), reason=None, error=None
        )
        self.svc.status.show(
            self.record.source, states.PROJECT_CREATED, upload_id=self.request.upload_id, project_id=project_id
        )
        logs.info(
            f"created OpusClip project {project_id} for gs://{self.obj.bucket}/{self.obj.name}",
            labels={**self.labels, "projectId": project_id},
            event="project_created",
            stage=project.get("stage"),
        )
        return states.PROJECT_CREATED

    def _call_opus(self) -> dict:
        settings = self.svc.settings
        prefs = self.request.preferences.over(settings.default_preferences)
        command = build_command(self.request.upload_id, prefs, settings.notify_email, settings.webhook_url)
        check_command(command)
        try:
            return self.svc.opus.create_clip_project(command, self.request.upload_id)
        except RateLimitedError as exc:
            if exc.retry_after is None or exc.retry_after > SHORT_RETRY_AFTER_SECONDS:
                raise
            logs.warning(f"{exc}; retrying in {exc.retry_after:.0f}s", labels=self.labels, event="rate_limited")
            self.svc.sleep(exc.retry_after)
            return self.svc.opus.create_clip_project(command, self.request.upload_id)

    def _fail(self, exc: PermanentError) -> None:
        reset_at = exc.reset_at if isinstance(exc, OpusApiError) else None
        record_failure(self.held, self.svc.status, exc, self.labels, reset_at=reset_at)


def handle_clip_request(request: ClipRequest, services: Services) -> str:
    """Create the project for ``request`` unless one exists; raises ``TransientError`` to be redelivered."""
    return _CreateProject(request, services).run()
