"""Copy one clip file from OpusClip's media host into the output bucket, in bounded memory.

The body is read in pieces and written through the storage library's own ``BlobWriter``
(``blob.open("wb")``, a resumable upload of ``COPY_CHUNK`` bytes at a time), so memory stays at
one chunk whatever the clip's size. The MD5 of what was read is compared with the one Cloud
Storage computed for what it stored: a copy is byte-exact or it is not counted.

Cloud Storage failing once every byte was read (the upload's last request answered 503 or cut
after it landed, retries given up) is not a reason to fetch the clip from OpusClip again: the
object is looked at, and if it holds what was read, the copy is done. Any storage failure is a
``TransientError``, never an exception that would undo the conclusion's recorded copies.

A copy is given its ``marks`` (which project and clip it is, and its quality) as custom metadata
only once it checked out, by a metadata patch: an object with the marks is a whole, checked copy
of that clip (``kept_copy``), whatever the state record managed to note before a crash. A copy
cut short, unchecked or not matching carries none, and is made again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from opus_pipeline import http_policy
from opus_pipeline.domain.url_policy import check_url
from opus_pipeline.errors import PermanentError, TransientError

COPY_CHUNK = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
READ_PIECE = 1024 * 1024
PEER = "OpusClip's media host"
# The whole copy of one file, however slowly the host sends it (each read is bounded by the transfer
# timeout, their sum by this): a trickling host costs one clip this long, not the conclusion's life.
COPY_DEADLINE_SECONDS = 300.0
# What the storage library raises when Cloud Storage fails a write it could not retry to the end
# (``gcs/cas.py``'s list is the same family; this module may not import that adapter).
STORAGE_FAILURES = (gexc.GoogleAPIError, DataCorruption, InvalidResponse, ConnectionError)


@dataclass(frozen=True)
class Copied:
    gcs_uri: str
    size: int
    md5_hash: str

    def to_manifest(self) -> dict[str, object]:
        return {"copied": True, "gcsUri": self.gcs_uri, "size": self.size, "md5Hash": self.md5_hash}


def copy_clip(
    http: requests.Session,
    url: str,
    allowed_hosts: tuple[str, ...],
    blob: storage.Blob,
    content_type: str = "video/mp4",
    deadline: float = COPY_DEADLINE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    marks: Mapping[str, str] | None = None,
) -> Copied:
    """Stream ``url`` into ``blob``, then stamp it with ``marks`` once it checked out;
    ``TransientError`` to try again, ``PermanentError`` if never. The same for a clip's poster
    image (``content_type`` ``image/jpeg``). A copy still reading after ``deadline`` seconds is given
    up (``TransientError``). ``blob`` should be a fresh one per attempt: its reload pins it to the
    generation it found."""
    check_url(url, allowed_hosts, "clip file URL", setting="OPUS_CLIP_URL_HOSTS")
    started = clock()
    response = http_policy.send(http, "GET", url, timeout=http_policy.TRANSFER_TIMEOUT, peer=PEER, stream=True)
    with response:
        if response.status_code != 200:
            if http_policy.is_retryable(response.status_code) or response.status_code in (403, 404):
                # 403/404 from a CDN right at COMPLETE: the file may not be published yet.
                raise TransientError(f"{PEER} answered HTTP {response.status_code} for a clip file")
            raise PermanentError(f"{PEER} refused a clip file with HTTP {response.status_code}", reason="clip-refused")
        digest = hashlib.md5()
        size, read_all = 0, False

        def overdue() -> TransientError:
            return TransientError(f"{PEER} took longer than {deadline:.0f}s to send a clip file; the copy was given up")

        try:
            with (
                blob.open("wb", chunk_size=COPY_CHUNK, content_type=content_type) as out,
                # raised inside the upload, a deadline overrun cancels the partial upload
                http_policy.ReadDeadline(response, started + deadline, overdue, clock) as within,
            ):
                for piece in within.pieces(READ_PIECE):
                    digest.update(piece)
                    out.write(piece)
                    size += len(piece)
                read_all = True
        except (requests.RequestException, *STORAGE_FAILURES) as exc:
            if not read_all:  # from the media host or from Cloud Storage: either way, fetch it again
                raise TransientError(f"copying a clip into {_uri(blob)} failed ({type(exc).__name__})") from None
            # every byte was read: the object may hold them although its last answer was lost
    md5 = base64.b64encode(digest.digest()).decode()
    try:
        blob.reload()
    except STORAGE_FAILURES as exc:
        raise TransientError(f"Cloud Storage could not show the copy {_uri(blob)} ({type(exc).__name__})") from None
    if blob.md5_hash != md5 or int(blob.size or -1) != size:
        raise TransientError(f"the copy of a clip in {_uri(blob)} does not match what was read")
    if marks:
        _mark(blob, marks)
    return Copied(_uri(blob), size, md5)


def _mark(blob: storage.Blob, marks: Mapping[str, str]) -> None:
    """The checked copy's marks; without them (Cloud Storage refused the patch) the copy still
    counts, and only a takeover would make it again."""
    blob.metadata = dict(marks)
    with contextlib.suppress(*STORAGE_FAILURES):
        blob.patch()


def kept_copy(blob: storage.Blob, marks: Mapping[str, str]) -> Copied | None:
    """The copy an earlier conclusion made of this very clip, if ``blob`` exists with ``marks``.

    The conclusion notes its copies in the state record with its next write (one write a second
    per object), so a takeover after a crash may find a clip copied that the record does not
    name: fetching it again from OpusClip would cost the bytes twice. Only ``copy_clip`` writes
    the marks, after the copy checked out, so an object carrying them is whole and checked. Any
    doubt (storage trouble, other marks) answers ``None``: copy again."""
    try:  # a blob of its own: ``blob`` stays unpinned to the generation found, for the copy to come
        found = blob.bucket.get_blob(blob.name)
    except STORAGE_FAILURES:
        return None
    if found is None or not found.md5_hash:
        return None
    metadata = found.metadata or {}
    if any(metadata.get(key) != value for key, value in marks.items()):
        return None
    return Copied(_uri(found), int(found.size or 0), found.md5_hash)


def _uri(blob: storage.Blob) -> str:
    return f"gs://{blob.bucket.name}/{blob.name}"
