"""Where an upload's session URL is kept while the upload runs: ``sessions/<video key>`` in
``STATE_BUCKET``, apart from the state record.

The session URL is a credential (whoever has it can write the upload), and a state record is
read by every function and kept in non-current versions for days. This object is read and
written by ingest alone: infra/iam.tf grants the other functions' accounts, the public webhook
receiver's included, nothing under ``sessions/`` (an IAM condition on the object name), and
ingest deletes it as soon as the upload is complete or has ended; a lifecycle rule removes any
left behind once the session could no longer be used anyway (a week). It names its upload too, so
that a session opened by an invocation that died before its record said ``uploading`` (that write
rides on the record's next one) is still resumed, not opened anew.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline.domain.events import StorageObject
from opus_pipeline.gcs.cas import STORAGE_TRANSIENT, storage_trouble

SESSIONS_PREFIX = "sessions/"


def session_path(obj: StorageObject) -> str:
    return f"{SESSIONS_PREFIX}{obj.key}"


@dataclass(frozen=True)
class KeptSession:
    url: str  # the session URL: a credential, never logged
    upload_id: str  # OpusClip's upload id of the link the session was opened from


class UploadSessions:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)

    def keep(self, obj: StorageObject, session_url: str, upload_id: str) -> None:
        """Remember ``obj``'s session (replacing an older one) before its first byte is sent."""
        body = json.dumps({"sessionUrl": session_url, "uploadId": upload_id})
        try:
            self._bucket.blob(session_path(obj)).upload_from_string(body, content_type="application/json")
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, "keep the upload session") from None

    def find(self, obj: StorageObject) -> KeptSession | None:
        """``obj``'s session, if one was kept (one kept in another form is not: a new one is opened)."""
        try:
            raw = self._bucket.blob(session_path(obj)).download_as_bytes()
        except gexc.NotFound:
            return None
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, "read the upload session") from None
        try:
            doc = json.loads(raw)
            return KeptSession(str(doc["sessionUrl"]), str(doc["uploadId"]))
        except (ValueError, TypeError, KeyError):
            return None

    def forget(self, obj: StorageObject) -> None:
        """Delete ``obj``'s session: the upload is complete, or the video ended."""
        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(session_path(obj)).delete()
