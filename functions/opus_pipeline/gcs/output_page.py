"""The clips page ``index.html`` beside a video's manifest in ``OUTPUT_BUCKET``, written whole.

One writer for the conclusion (the clips, or why there are none) and for publishing (the posts
added to the page): the page is never cached, since every later write replaces it.
"""

from __future__ import annotations

from google.cloud import storage

from opus_pipeline.domain import manifest
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.gcs.cas import STORAGE_TRANSIENT, storage_trouble


def write_page(output: storage.Bucket, source: StorageObject, html: str) -> None:
    """Replace the page of ``source``; storage trouble is transient (the caller's retry writes it again)."""
    blob = output.blob(manifest.page_name(source))
    blob.cache_control = "no-cache"  # a later page replaces this one; nobody should see the old
    try:
        blob.upload_from_string(html, content_type="text/html; charset=utf-8")
    except STORAGE_TRANSIENT as exc:
        raise storage_trouble(exc, f"write {blob.name}") from None
