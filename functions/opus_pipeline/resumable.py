"""The XML resumable-upload session OpusClip hands out: start, put a chunk, query. Nothing else.

google-resumable-media cannot adopt a session started by a bare ``x-goog-resumable: start`` POST
through its public API, and it does not overlap reading with sending, so this small protocol
module is ours. Session URLs are credentials: no message raised here contains one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from .errors import (
    PermanentError,
    SessionExpiredError,
    TransientError,
    describe_transport_error,
)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RANGE = re.compile(r"^bytes=0-(\d+)$")


@dataclass(frozen=True)
class Progress:
    """Where a session stands: bytes persisted, and whether the upload is complete."""

    committed: int
    complete: bool


class RetryableStatusError(TransientError):
    """The session answered 408/429/5xx."""

    reason = "upload-retryable"


def committed_bytes(range_header: str | None) -> int:
    """Bytes persisted according to a 308's ``Range: bytes=0-N`` header (absent: none)."""
    if not range_header:
        return 0
    match = _RANGE.match(range_header.strip())
    if not match:
        raise TransientError(f"the upload session answered an unreadable Range header {range_header!r}")
    return int(match.group(1)) + 1


def retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _request(http: requests.Session, method: str, url: str, **kwargs) -> requests.Response:
    try:
        return http.request(method, url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
    except requests.RequestException as exc:
        raise TransientError(describe_transport_error(exc)) from None


def _progress(response: requests.Response, total: int, action: str) -> Progress:
    status = response.status_code
    if status in (200, 201):
        return Progress(committed=total, complete=True)
    if status == 308:
        return Progress(committed=committed_bytes(response.headers.get("Range")), complete=False)
    if status in (404, 410):
        raise SessionExpiredError(f"the upload session expired or is unknown ({status} on {action})")
    if status in RETRYABLE_STATUSES:
        raise RetryableStatusError(
            f"the upload session answered {status} on {action}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    raise PermanentError(f"OpusClip's storage refused the {action} with HTTP {status}", reason=f"upload-http-{status}")


def start(http: requests.Session, upload_url: str) -> str:
    """Open a session at the upload-link URL; return its ``Location`` (a credential)."""
    response = _request(
        http, "POST", upload_url, data=b"", headers={"x-goog-resumable": "start", "Content-Length": "0"}
    )
    if response.status_code in (200, 201) and response.headers.get("Location"):
        return response.headers["Location"]
    if response.status_code in RETRYABLE_STATUSES:
        raise RetryableStatusError(f"starting the upload session answered {response.status_code}")
    raise PermanentError(
        f"starting the upload session answered HTTP {response.status_code} without a Location",
        reason="upload-start-refused",
    )


def put_chunk(http: requests.Session, session_url: str, data: memoryview, offset: int, total: int) -> Progress:
    """PUT ``data`` at ``offset`` of a ``total``-byte upload; the answer says what was kept."""
    end = offset + len(data) - 1
    headers = {"Content-Range": f"bytes {offset}-{end}/{total}", "Content-Type": "application/octet-stream"}
    response = _request(http, "PUT", session_url, data=data, headers=headers)
    return _progress(response, total, "chunk upload")


def query(http: requests.Session, session_url: str, total: int) -> Progress:
    """Ask the session how many bytes it has persisted (empty PUT, ``bytes */TOTAL``)."""
    headers = {"Content-Range": f"bytes */{total}", "Content-Length": "0"}
    response = _request(http, "PUT", session_url, data=b"", headers=headers)
    return _progress(response, total, "status query")
