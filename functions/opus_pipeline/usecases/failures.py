"""The one way a video fails for good: the record, the status people see, one ERROR line.

Ingest, project creation and the conclusion all end a video here, so a failure always reads the
same in the record, in the object's ``opus-error`` and in the logs (where the ``video_failed``
metric counts it by reason).
"""

from __future__ import annotations

from typing import Any

from opus_pipeline import logs
from opus_pipeline.domain import states
from opus_pipeline.errors import PermanentError
from opus_pipeline.gcs.claims import HeldRecord
from opus_pipeline.gcs.status_mirror import StatusMirror


def record_failure(
    held: HeldRecord, mirror: StatusMirror, exc: PermanentError, log: logs.Logger, **changes: Any
) -> None:
    """Settle the record as ``failed`` for ``exc``, show it on the object, say what to do."""
    held.settle(states.FAILED, exc, **changes)
    source = held.record.source
    mirror.show(source, states.FAILED, upload_id=held.record.upload_id, error=str(exc))
    log.error(
        f"{source.uri} failed: {exc}. When the cause is fixed, run `opus-pipeline retry {source.uri}`.",
        event="video_failed",
        reason=exc.reason,
    )
