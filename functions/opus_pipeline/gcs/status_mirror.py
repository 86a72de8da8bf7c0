"""The status people see: best-effort ``opus-*`` custom metadata on the source object.

The state record stays the truth; a failure to write this mirror is logged and ignored.
``STATUS_METADATA=false`` turns the mirror off (objects under a hold, or buckets whose
metadata-update notifications feed other systems).
"""

from __future__ import annotations

import threading

from google.cloud import storage

from opus_pipeline import logs
from opus_pipeline.domain.events import StorageObject

MAX_ERROR_CHARS = 1000


class StatusMirror:
    """Writes statuses in the order they are shown; one may run in the background meanwhile."""

    def __init__(self, client: storage.Client, enabled: bool = True) -> None:
        self._client = client
        self._enabled = enabled
        self._pending: threading.Thread | None = None

    def show(
        self,
        source: StorageObject,
        status: str,
        *,
        upload_id: str | None = None,
        project_id: str | None = None,
        error: str | None = None,
        extra: dict[str, str] | None = None,
        background: bool = False,
    ) -> None:
        """Set ``opus-status`` (and the ids, ``extra`` keys, and ``opus-error`` or its removal).

        ``background`` lets the caller go on (the first bytes need not wait for a metadata
        write); the next ``show`` or ``wait`` waits for it, so statuses never land out of order.
        """
        self.wait()
        if not self._enabled:
            return
        metadata: dict[str, str | None] = {
            "opus-status": status,
            "opus-error": error[:MAX_ERROR_CHARS] if error else None,
            **(extra or {}),
        }
        if upload_id:
            metadata["opus-upload-id"] = upload_id
        if project_id:
            metadata["opus-project-id"] = project_id
        args = (source, status, metadata)
        if background:
            self._pending = threading.Thread(target=self._patch, args=args, name="status-mirror", daemon=True)
            self._pending.start()
        else:
            self._patch(*args)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.join()
            self._pending = None

    def _patch(self, source: StorageObject, status: str, metadata: dict[str, str | None]) -> None:
        """The precondition on the event's generation keeps a newer upload of the same name from
        being stamped with this one's status (real GCS keeps the generation on a metadata patch)."""
        blob = self._client.bucket(source.bucket).blob(source.name)
        blob.metadata = metadata
        try:
            blob.patch(if_generation_match=source.generation)
        except Exception as exc:  # best effort whatever went wrong (API errors, retries given up, auth)
            logs.warning(
                f"could not show status {status!r} on the object ({type(exc).__name__}); "
                "the state record is unaffected",
                labels=source.labels(),
            )
