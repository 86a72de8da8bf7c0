"""The status people see: best-effort ``opus-*`` custom metadata on the source object.

The state record stays the truth; a failure to write this mirror is logged and ignored.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import storage

from . import logs

MAX_ERROR_CHARS = 1000


class StatusMirror:
    def __init__(self, client: storage.Client) -> None:
        self._client = client

    def show(
        self,
        source: dict,
        status: str,
        *,
        upload_id: str | None = None,
        project_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Set ``opus-status`` (and the ids, and ``opus-error`` or its removal) on the object.

        The precondition on the event's generation keeps a newer upload of the same name from
        being stamped with this one's status (real GCS keeps the generation on a metadata patch).
        """
        blob = self._client.bucket(source["bucket"]).blob(source["name"])
        metadata: dict[str, str | None] = {
            "opus-status": status,
            "opus-error": error[:MAX_ERROR_CHARS] if error else None,
        }
        if upload_id:
            metadata["opus-upload-id"] = upload_id
        if project_id:
            metadata["opus-project-id"] = project_id
        blob.metadata = metadata
        try:
            blob.patch(if_generation_match=int(source["generation"]))
        except (gexc.GoogleAPICallError, ValueError) as exc:
            logs.warning(
                f"could not show status {status!r} on the object ({type(exc).__name__}); "
                "the state record is unaffected",
                labels={"bucket": source["bucket"], "object": source["name"]},
            )
