"""Reading the source object: generation-pinned ranges, one range read ahead of the sender.

At most two chunk buffers exist per upload, allocated once and reused by every stream of it, so
memory does not grow with the video's size nor with its interruptions.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import google.auth
import requests
import urllib3
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage

from opus_pipeline import http_policy
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.errors import SupersededError, TransientError
from opus_pipeline.retry import retried

READ_ATTEMPTS = 4  # per range, before the failure is the upload's (about 4 s of waiting at most)


def same_bytes(expected: StorageObject, live: storage.Blob) -> bool:
    """Whether ``live`` holds the bytes the event announced (size and md5, else crc32c)."""
    if int(live.size or -1) != expected.size:
        return False
    if expected.md5_hash and live.md5_hash:
        return expected.md5_hash == live.md5_hash
    if expected.crc32c and live.crc32c:
        return expected.crc32c == live.crc32c
    return False


READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def read_session() -> requests.Session:
    """The session source ranges are read through, built from public ``google.auth``.

    The same credentials the storage client finds (Application Default Credentials, narrowed to
    reading), or none under ``STORAGE_EMULATOR_HOST``, as the storage client itself does there: a
    session of its own keeps the reads off the client's private transport.
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return AuthorizedSession(AnonymousCredentials())
    credentials, _ = google.auth.default(scopes=[READ_SCOPE])
    return AuthorizedSession(credentials)


# urllib3's ``readinto`` reads into a temporary bytes object first: pieces keep that copy small.
READ_PIECE = 1024 * 1024


class SourceObject:
    """The uploaded version of an object, read by ranges pinned to its generation.

    If the pinned generation disappears, reading continues on the live generation when that
    holds the same bytes (a metadata rewrite or storage-class change); otherwise the video is
    superseded by a newer upload.

    Ranges are fetched through ``session`` (``read_session()``: the same credentials as the client,
    built once per instance) and read with ``readinto`` straight into the chunk buffer. The
    library's downloader hands the body over 8 KiB at a time through Python, which competes for
    the GIL with the sending thread; measured here, reading into the buffer takes a third of the
    CPU time.
    """

    def __init__(
        self, client: storage.Client, session: requests.Session, source: StorageObject, generation: int
    ) -> None:
        self._session = session
        self._bucket = client.bucket(source.bucket)
        self._source = source
        self.generation = generation
        self._media_url: str | None = None

    def _describe(self) -> str:
        return f"{self._source.uri} generation {self._source.generation}"

    def _pinned_url(self) -> str:
        if self._media_url is None:
            blob = self._bucket.get_blob(self._source.name, generation=self.generation)
            if blob is None:
                self._repin()
                return self._pinned_url()
            parts = urlsplit(blob.media_link)
            query = dict(parse_qsl(parts.query))
            query.update({"alt": "media", "generation": str(self.generation)})
            self._media_url = urlunsplit(parts._replace(query=urlencode(query)))
        return self._media_url

    def _repin(self) -> None:
        live = self._bucket.get_blob(self._source.name)
        if live is None or not same_bytes(self._source, live):
            raise SupersededError(f"{self._describe()} was replaced or deleted while it was being read")
        self.generation = int(live.generation)
        self._media_url = None

    def read_into(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the bytes at ``offset``. A range Cloud Storage fails (503, 429, a cut
        or short answer) is read again here, a moment later: failing it would interrupt the upload
        request it feeds, and that request would be sent again."""
        retried(lambda: self._read_pinned(offset, view), READ_ATTEMPTS, time.sleep, cap=2.0)

    def _read_pinned(self, offset: int, view: memoryview) -> None:
        for _ in range(3):
            end = offset + len(view) - 1
            headers = {"Range": f"bytes={offset}-{end}", "Accept-Encoding": "gzip"}
            try:
                with self._session.get(
                    self._pinned_url(), headers=headers, stream=True, timeout=http_policy.TRANSFER_TIMEOUT
                ) as r:
                    if r.status_code == 404:
                        self._repin()
                        continue
                    if r.status_code not in (200, 206) or (r.status_code == 200 and offset):
                        raise TransientError(f"reading {self._describe()} answered HTTP {r.status_code}")
                    filled = 0
                    while filled < len(view):
                        count = r.raw.readinto(view[filled : filled + READ_PIECE])
                        if not count:
                            break
                        filled += count
            # urllib3's own errors too: ``r.raw.readinto`` raises them (an answer cut part way is its
            # ``ProtocolError``), and one escaping into the upload request's body would fail that
            # request as if its own connection had broken.
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise TransientError(f"reading {self._describe()} failed ({type(exc).__name__})") from None
            if filled != len(view):
                raise TransientError(f"short read of {self._describe()} at byte {offset}")
            return
        raise TransientError(f"{self._describe()} kept changing generation while being read")

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``start..end`` inclusive: what ``media_probe.RangedReader`` reads a header through."""
        buffer = bytearray(end - start + 1)
        self.read_into(start, memoryview(buffer))
        return bytes(buffer)


class Prefetcher:
    """Yields ``(offset, view)`` chunks of ``[start, total)``, reading the next while one is used.

    The view yielded last stays valid until the next one is asked for; then its buffer goes back
    to the reader thread. Errors of the reader are raised in the consumer.

    The same two buffers serve every stream of the prefetcher: ``restart`` (after an interrupted
    request, at the offset the session confirmed) and ``close`` first wait for the reader thread
    to end, so no reader still writes a buffer a new one is handed, and no third buffer is ever
    allocated. A reader stuck in a read ends with that read, which the transfer timeout bounds.
    """

    def __init__(self, read_into: Callable[[int, memoryview], None], start: int, total: int, chunk_size: int) -> None:
        self._read_into = read_into
        self._total, self._chunk = total, chunk_size
        self.buffers = tuple(memoryview(bytearray(min(chunk_size, max(total, 1)))) for _ in range(2))
        self._thread: threading.Thread | None = None
        self._begin(start)

    def _begin(self, start: int) -> None:
        self._free: queue.Queue[memoryview] = queue.Queue()
        for buffer in self.buffers:
            self._free.put(buffer)
        self._ready: queue.Queue[tuple[int, memoryview] | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(start, self._free, self._ready, self._stop), name="source-prefetch", daemon=True
        )
        self._thread.start()

    def _run(
        self,
        start: int,
        free: queue.Queue[memoryview],
        ready: queue.Queue[tuple[int, memoryview] | BaseException | None],
        stop: threading.Event,
    ) -> None:
        try:
            for offset in range(start, self._total, self._chunk):
                buffer = _next_free(free, stop)
                if buffer is None:
                    return
                view = buffer[: min(self._chunk, self._total - offset)]
                self._read_into(offset, view)
                ready.put((offset, view))
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(exc)

    def __iter__(self) -> Iterator[tuple[int, memoryview]]:
        ready, free = self._ready, self._free  # this stream's: a restart gives the next stream its own
        held: memoryview | None = None
        while True:
            item = ready.get()
            if held is not None:
                free.put(memoryview(held.obj))
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            held = item[1]
            yield item

    def restart(self, start: int) -> Iterator[tuple[int, memoryview]]:
        """Stop the current stream and read ``[start, total)`` into the same two buffers."""
        self.close()
        self._begin(start)
        return iter(self)

    def close(self) -> None:
        """Stop reading, once the read in flight (if any) has ended."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def _next_free(free: queue.Queue[memoryview], stop: threading.Event) -> memoryview | None:
    while not stop.is_set():
        try:
            return free.get(timeout=0.2)
        except queue.Empty:
            continue
    return None
