"""The index of running projects: one empty object per project created and not concluded.

It keeps the sweeper's listing proportional to the projects in flight, not to every video
the pipeline ever saw.
"""

from __future__ import annotations

import contextlib

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline import logs
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import object_from_key

OPEN_PREFIX = "open/"


def open_marker_path(obj: StorageObject) -> str:
    return f"{OPEN_PREFIX}{obj.key}"


class OpenProjects:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._bucket = client.bucket(bucket)

    def mark_open(self, obj: StorageObject) -> None:
        self._bucket.blob(open_marker_path(obj)).upload_from_string(b"", content_type="text/plain")

    def mark_concluded(self, obj: StorageObject) -> None:
        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(open_marker_path(obj)).delete()

    def running(self) -> list[StorageObject]:
        """The videos whose project runs, oldest marker first (the sweeper's order). A marker that
        names no video (nothing of the pipeline writes one) is skipped with a log line, never fatal:
        one stray object must not stop every sweep."""
        markers = sorted(self._bucket.list_blobs(prefix=OPEN_PREFIX), key=lambda b: (b.time_created, b.name))
        found = []
        for blob in markers:
            try:
                found.append(object_from_key(blob.name[len(OPEN_PREFIX) :]))
            except ValueError:
                logs.warning(
                    f"sweep: skipped the marker {blob.name!r}, which names no video; delete it",
                    event="bad_open_marker",
                )
        return found
