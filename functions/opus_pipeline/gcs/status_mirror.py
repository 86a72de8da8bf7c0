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
    """Writes each object's statuses in the order they are shown, the latest winning.

    Cloud Storage allows about one write a second to one object, and a metadata patch is a write:
    a video's statuses come faster than that (received, uploading, uploaded, queued within a second
    for a short video). So each object has at most one patch in flight, from a thread of its own;
    statuses shown meanwhile are merged into the next patch (later keys winning), so none of their
    keys is lost and intermediate statuses may never appear. Objects do not wait for each other:
    one process serves many videos at once.
    """

    def __init__(self, client: storage.Client, enabled: bool = True) -> None:
        self._client = client
        self._enabled = enabled
        self._lock = threading.Lock()
        self._next: dict[str, tuple[StorageObject, str, dict[str, str | None]]] = {}  # key → next patch
        self._writers: dict[str, threading.Thread] = {}  # key → the thread patching it

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
        write); otherwise this returns once the object shows this status (or a later one).
        """
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
        with self._lock:
            waiting = self._next.get(source.key)
            merged = {**waiting[2], **metadata} if waiting else metadata
            self._next[source.key] = (source, status, merged)
            if source.key not in self._writers:
                writer = threading.Thread(target=self._write, args=(source.key,), name="status-mirror", daemon=True)
                self._writers[source.key] = writer
                writer.start()
        if not background:
            self.wait(source)

    def wait(self, source: StorageObject | None = None) -> None:
        """Until ``source``'s statuses (every object's, without one) are written."""
        while True:
            with self._lock:
                writers = [w for k, w in self._writers.items() if source is None or k == source.key]
            if not writers:
                return
            for writer in writers:
                writer.join()

    def _write(self, key: str) -> None:
        while True:
            with self._lock:
                if key not in self._next:
                    del self._writers[key]
                    return
                source, status, metadata = self._next.pop(key)
            self._patch(source, status, metadata)

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
