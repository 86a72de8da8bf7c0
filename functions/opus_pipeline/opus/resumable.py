"""The XML resumable-upload session OpusClip hands out, kept as a position and a protocol.

As google-resumable-media's ``ResumableUpload``: ``ResumableSession`` knows where the upload
stands (``committed``) and whether that is known (``invalid`` after an unanswered request, until
``recover``); ``interpret`` reads an answer and ``put_length`` plans a request without I/O; only
``put``, ``put_stream`` and ``recover`` (and ``start``) touch the network. That library cannot
adopt a session started by a bare ``x-goog-resumable: start`` POST through its public API and does
not overlap reading with sending, so this small module is ours. Session URLs are credentials: no message here has one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import requests

from opus_pipeline import http_policy
from opus_pipeline.errors import PermanentError, RetryableStatusError, SessionExpiredError, TransientError

_RANGE = re.compile(r"^bytes=0-(\d+)$")
PEER = "OpusClip's upload storage"

# One request per attempt, not one per chunk: every request costs a turnaround (the storage commits
# and answers 308 before the next may start), 30 ms on a 100 MiB/s link is a 3 MiB gap. The first
# request of an invocation, sent before any throughput is known, is FIRST_PUT_CHUNKS chunks (64 MiB
# by default: about 0.6 s at 100 MiB/s, so its extra turnaround costs ~5% of that request and
# nothing measurable of a long video; 64 s at 1 MiB/s, well inside the attempt's deadline). Each
# later one is as long as the measured throughput sends in PUT_SECONDS or in what is left of the
# attempt, whichever is less: an interrupted request, or a crash, re-sends at most that much (the
# storage may keep part of it or none), and 10 s against a 30 ms turnaround costs 0.3%.
FIRST_PUT_CHUNKS = 4
PUT_SECONDS = 10.0


@dataclass(frozen=True)
class Progress:
    """Where a session stands: bytes persisted, and whether the upload is complete."""

    committed: int
    complete: bool


def committed_bytes(range_header: str | None) -> int:
    """Bytes persisted according to a 308's ``Range: bytes=0-N`` header (absent: none)."""
    if not range_header:
        return 0
    match = _RANGE.match(range_header.strip())
    if not match:
        raise TransientError(f"the upload session answered an unreadable Range header {range_header!r}")
    return int(match.group(1)) + 1


def interpret(status: int, headers: Mapping[str, str], total: int, action: str) -> Progress:
    """What an answer of the session to an upload request or a status query means.

    200/201: complete. 308: ``Range`` says what is kept (also fewer bytes than sent). 404/410:
    the session is gone, a new one is needed. 408/429/5xx: try again. Anything else: refused.
    """
    if status in (200, 201):
        return Progress(committed=total, complete=True)
    if status == 308:
        return Progress(committed=committed_bytes(headers.get("Range")), complete=False)
    if status in (404, 410):
        raise SessionExpiredError(f"the upload session expired or is unknown ({status} on {action})")
    if http_policy.is_retryable(status):
        raise RetryableStatusError(
            f"the upload session answered {status} on {action}",
            retry_after=http_policy.retry_after_seconds(headers.get("Retry-After")),
        )
    raise PermanentError(f"OpusClip's storage refused the {action} with HTTP {status}", reason=f"upload-http-{status}")


def put_length(start: int, total: int, chunk: int, rate: float | None, seconds_left: float) -> int:
    """Bytes of the next request from byte ``start``: whole chunks (a non-final request must be a
    multiple of 256 KiB, and chunks are), as many as ``rate`` bytes/s send in the smaller of
    ``PUT_SECONDS`` and ``seconds_left`` (``FIRST_PUT_CHUNKS`` while no rate is known), at least one
    chunk and at most the rest of the upload."""
    remaining = total - start
    if rate is None:
        chunks = FIRST_PUT_CHUNKS
    else:
        budget = rate * max(0.0, min(PUT_SECONDS, seconds_left))
        if budget >= remaining:
            return remaining
        chunks = max(1, math.floor(budget / chunk))
    return min(remaining, chunks * chunk)


class StreamBody:
    """A request body of exactly ``length`` bytes, handed to the socket view by view as they come.

    ``len`` gives requests the Content-Length (the session needs the exact range, not chunked
    framing); iterating it gives urllib3 the views to ``sendall`` one after the other, so nothing
    is copied or joined. Too few bytes from ``views`` is an error, not a short request."""

    def __init__(self, views: Iterable[memoryview], length: int) -> None:
        self._views = views
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[memoryview]:
        sent = 0
        for view in self._views:
            sent += len(view)
            if sent > self._length:
                raise ValueError(f"the body got {sent} bytes for a request of {self._length}")
            yield view
            if sent == self._length:
                return
        raise TransientError(f"the source ended {self._length - sent} bytes before the request's end")


def start(http: requests.Session, upload_url: str) -> str:
    """Open a session at the upload-link URL; return its ``Location`` (a credential)."""
    response = http_policy.send(
        http,
        "POST",
        upload_url,
        peer=PEER,
        data=b"",
        headers={"x-goog-resumable": "start", "Content-Length": "0"},
    )
    if response.status_code in (200, 201) and response.headers.get("Location"):
        return response.headers["Location"]
    if http_policy.is_retryable(response.status_code):
        raise RetryableStatusError(f"starting the upload session answered {response.status_code}")
    raise PermanentError(
        f"starting the upload session answered HTTP {response.status_code} without a Location",
        reason="upload-start-refused",
    )


class ResumableSession:
    """An open session for a ``total``-byte upload at ``url`` (a credential: never log it).

    ``committed`` is the byte the next request starts at. After a request whose answer was lost
    or refused, ``invalid`` is set: the session may have kept more or fewer bytes than known, so
    ``recover`` asks it before anything else is sent.
    """

    def __init__(self, http: requests.Session, url: str, total: int, committed: int = 0, invalid: bool = False):
        self._http = http
        self.url = url
        self.total = total
        self.committed = committed
        self.complete = False
        self.invalid = invalid

    def __repr__(self) -> str:
        return f"ResumableSession(total={self.total}, committed={self.committed}, invalid={self.invalid})"

    def mark_unknown(self) -> None:
        """Something between us and the session failed (not its answer): what it kept is unknown
        until ``recover`` asks."""
        self.invalid = True

    def _send(self, data: bytes | StreamBody, headers: dict[str, str], action: str) -> Progress:
        self.mark_unknown()  # until an answer says otherwise
        response = http_policy.send(
            self._http,
            "PUT",
            self.url,
            timeout=http_policy.TRANSFER_TIMEOUT,
            peer=PEER,
            allowed_redirect=308,
            data=data,
            headers=headers,
        )
        progress = interpret(response.status_code, response.headers, self.total, action)
        self.committed, self.complete, self.invalid = progress.committed, progress.complete, False
        return progress

    def put(self, data: memoryview) -> Progress:
        """Send ``data``, already in memory, as the bytes at ``committed`` in one request."""
        return self.put_stream((data,), len(data))

    def put_stream(self, views: Iterable[memoryview], length: int) -> Progress:
        """Send the ``length`` bytes at ``committed`` in one request, its body drawn from ``views``
        while it is sent; the answer says how many were kept (all of them, or fewer)."""
        end = self.committed + length - 1
        headers = {
            "Content-Range": f"bytes {self.committed}-{end}/{self.total}",
            "Content-Type": "application/octet-stream",
        }
        return self._send(StreamBody(views, length), headers, "upload request")

    def recover(self) -> Progress:
        """Ask the session what it has persisted (empty PUT, ``bytes */TOTAL``)."""
        return self._send(b"", {"Content-Range": f"bytes */{self.total}", "Content-Length": "0"}, "status query")
