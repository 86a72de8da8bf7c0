"""The one policy for every outgoing HTTP call: timeouts, redirects, retryable statuses, backoff.

Modelled on google-cloud-storage's ``retry.py`` and httpx's ``Timeout``: the OpusClip API, the
upload session and clip downloads all go through ``send``, so a status is retryable (or a
redirect refused) the same way everywhere, and a transport error never carries a URL (which may
be a credential) into a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
import urllib3

from opus_pipeline.errors import AnswerLostError, RefusedHostError, TransientError

CONNECT_TIMEOUT = 10.0
API_TIMEOUT = (CONNECT_TIMEOUT, 60.0)  # JSON calls answer quickly or not at all
TRANSFER_TIMEOUT = (CONNECT_TIMEOUT, 120.0)  # one chunk or one media read on a slow link

# A JSON answer is read whole into memory: no answer of OpusClip's comes near this (a page of 100
# clips is a few hundred KiB), and a bigger one, or one that trickles in for longer than the
# deadline, fails the call instead of the instance (the read timeout bounds each read, not the sum).
MAX_JSON_BYTES = 4 * 1024 * 1024
JSON_DEADLINE_SECONDS = 120.0
JSON_READ_PIECE = 64 * 1024

# As google-cloud-storage's retry.py: 501 (Not Implemented) and other 5xx are not transient.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe_transport_error(exc: BaseException, peer: str = "OpusClip") -> str:
    """A secret-free description of a requests/urllib3 failure (their text embeds the URL)."""
    return f"network error talking to {peer} ({type(exc).__name__})"


def may_have_been_sent(exc: requests.RequestException) -> bool:
    """Whether the server may have received the request: only a connection never made (refused,
    unresolved, timed out connecting) or a refused URL proves it did not."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return False
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        return not isinstance(getattr(cause, "reason", cause), urllib3.exceptions.NewConnectionError)
    return True


def send(
    http: requests.Session,
    method: str,
    url: str,
    *,
    timeout: tuple[float, float] = API_TIMEOUT,
    peer: str = "OpusClip",
    allowed_redirect: int | None = None,
    **kwargs,
) -> requests.Response:
    """One request that never follows a redirect: a 3xx (other than ``allowed_redirect``, the
    resumable protocol's 308) is refused, so no byte or key is ever sent to a host nobody listed."""
    try:
        response = http.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        lost = AnswerLostError if may_have_been_sent(exc) else TransientError
        raise lost(describe_transport_error(exc, peer)) from None
    if 300 <= response.status_code < 400 and response.status_code != allowed_redirect:
        response.close()
        raise RefusedHostError(
            f"{peer} answered a redirect (HTTP {response.status_code}); redirects are never followed, "
            "so nothing was sent elsewhere. Report it if OpusClip really moved its endpoints."
        )
    return response


def read_bounded(
    response: requests.Response,
    peer: str = "OpusClip",
    max_bytes: int = MAX_JSON_BYTES,
    deadline: float = JSON_DEADLINE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The body of a response sent with ``stream=True``, read within ``max_bytes`` and ``deadline``
    seconds, else ``AnswerLostError`` (the connection is closed, nothing more is read: the request was
    sent and answered, so what it did is not known from here). The response
    keeps what was read, so ``.json()`` and ``.text`` answer from it as usual."""
    started, body = clock(), bytearray()
    with response:
        try:
            for piece in response.iter_content(JSON_READ_PIECE):
                body += piece
                if len(body) > max_bytes:
                    raise AnswerLostError(f"{peer} answered with more than {max_bytes} bytes; the answer was dropped")
                if clock() - started > deadline:
                    raise AnswerLostError(f"{peer} took longer than {deadline:.0f}s to answer; the answer was dropped")
        except requests.RequestException as exc:
            raise AnswerLostError(describe_transport_error(exc, peer)) from None
    # Where requests itself keeps a body once read (``Response.content``); it has no public setter,
    # and the callers' error handling reads ``.text``/``.json()`` from the one response.
    response._content = bytes(body)  # noqa: SLF001
    return response._content  # noqa: SLF001
