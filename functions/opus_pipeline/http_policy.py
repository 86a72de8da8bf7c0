"""The one policy for every outgoing HTTP call: timeouts, redirects, retryable statuses, backoff.

Modelled on google-cloud-storage's ``retry.py`` and httpx's ``Timeout``: the OpusClip API, the
upload session and clip downloads all go through ``send``, so a status is retryable (or a
redirect refused) the same way everywhere, and a transport error never carries a URL (which may
be a credential) into a message.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
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


# A Retry-After past this is not believed (an hour: no answer of OpusClip's waits longer, and a
# video requeued "not before" an epoch in milliseconds or ``inf`` would wait for ever): taken as absent.
RETRY_AFTER_MAX_SECONDS = 3600.0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None
    when absent, unreadable, not finite or over ``RETRY_AFTER_MAX_SECONDS``."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = max(0.0, float(text))
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return seconds if seconds <= RETRY_AFTER_MAX_SECONDS else None


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


class ReadDeadline:
    """A total deadline on reading one streamed answer, held even while a read is blocked.

    The read timeout bounds each socket read, not their sum, and ``iter_content`` hands back a piece
    of a ``Content-Length`` body only once the piece is full: a host sending a byte just inside the
    read timeout keeps one piece, and any clock check after it, waiting for hours. So a timer shuts
    the connection's socket down when the deadline passes, which wakes a blocked read at once
    (``Response.close`` would not: it waits for the read to release its buffer). Whatever the read
    then raises, or the short body it then ends with, becomes ``overdue()``: the caller's own
    deadline error, so a deadline overrun reads the same however the host behaved.

    ``ends_at`` is on ``clock``'s scale; the timer waits what is left of it when entered.
    """

    def __init__(
        self,
        response: requests.Response,
        ends_at: float,
        overdue: Callable[[], Exception],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._response, self._ends_at, self._overdue, self._clock = response, ends_at, overdue, clock
        self._passed = threading.Event()
        self._lock = threading.Lock()  # no cut once the reading is over: the connection may be reused
        self._over = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> ReadDeadline:
        self._timer = threading.Timer(max(0.0, self._ends_at - self._clock()), self._cut)
        self._timer.daemon = True  # never keeps a finished instance alive
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._over = True
        if self._timer is not None:
            self._timer.cancel()

    def _cut(self) -> None:
        with self._lock:
            if self._over:
                return
            self._passed.set()
            raw = self._response.raw
            # Either call fails (RuntimeError, ValueError) once the body was read and the
            # connection released or closed: then there is no read left to stop.
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                if hasattr(raw, "shutdown"):  # urllib3 >= 2.3 kept the socket even where http.client let go
                    raw.shutdown()
                elif (sock := getattr(getattr(raw, "connection", None), "sock", None)) is not None:
                    sock.shutdown(socket.SHUT_RDWR)  # older urllib3: the connection it keeps while streaming

    def check(self) -> None:
        """``overdue()`` once the deadline passed, by the timer or by ``clock``."""
        if self._passed.is_set() or self._clock() > self._ends_at:
            raise self._overdue()

    def pieces(self, size: int) -> Iterator[bytes]:
        """``response.iter_content(size)``, ended by ``overdue()`` once the deadline passed, mid-read too."""
        try:
            for piece in self._response.iter_content(size):
                self.check()
                yield piece
        except Exception:
            # a read stopped by the cut fails in whatever way the transport reads a closed socket
            if self._passed.is_set():
                raise self._overdue() from None
            raise
        self.check()  # a body without a length ends quietly, and short, at the cut


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

    def overdue() -> AnswerLostError:
        return AnswerLostError(f"{peer} took longer than {deadline:.0f}s to answer; the answer was dropped")

    with response, ReadDeadline(response, started + deadline, overdue, clock) as within:
        try:
            for piece in within.pieces(JSON_READ_PIECE):
                body += piece
                if len(body) > max_bytes:
                    raise AnswerLostError(f"{peer} answered with more than {max_bytes} bytes; the answer was dropped")
        except requests.RequestException as exc:
            raise AnswerLostError(describe_transport_error(exc, peer)) from None
    # Where requests itself keeps a body once read (``Response.content``); it has no public setter,
    # and the callers' error handling reads ``.text``/``.json()`` from the one response.
    response._content = bytes(body)  # noqa: SLF001
    return response._content  # noqa: SLF001
