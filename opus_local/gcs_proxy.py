"""A fault-injecting HTTP proxy in front of the storage emulator.

fake-gcs-server answers every call and never refuses a write, while real Cloud Storage limits the
rate of change requests to one object ("1 write per second", with short bursts tolerated) and
answers 429, and now and then a 503 or a dropped connection. This proxy sits between
google-cloud-storage clients and fake-gcs-server (point ``STORAGE_EMULATOR_HOST`` at ``.url``) and
adds those behaviours, so the pipeline's retries and its contention on shared state objects meet
them locally:

* transparent forwarding of every method, path, query, header and body, streamed in pieces of
  ``PIECE`` bytes both ways (a source video may be GiBs), over keep-alive client connections. The
  only rewrite is of absolute URLs naming the upstream (a resumable session's ``Location``, an
  object resource's ``selfLink``/``mediaLink``), which would otherwise send the client around the
  proxy: the pipeline reads a video through its ``mediaLink``;
* a per-object write limit, a token bucket per (bucket, object name), answered as Cloud Storage
  answers it (429 ``rateLimitExceeded``) without forwarding; see ``classify`` for what a write is;
* seeded fault injection on any call: a 503 ``backendError``, a 429 ``rateLimitExceeded``, a
  connection closed before forwarding, or one closed part way through the answer's body;
* counters, and a control API under ``/__proxy/`` so that another process (a function under
  functions-framework, a soak driver) can read and change them at run time.

In a test, ``with GcsProxy(upstream) as proxy:``; on its own,
``python -m opus_local.gcs_proxy --upstream http://127.0.0.1:PORT --port N``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from email.message import Message
from http.client import HTTPConnection, HTTPException, HTTPResponse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import requests

from . import emulators

log = logging.getLogger("opus_local.gcs_proxy")

# Bodies are copied through one buffer of this size, so a transfer holds at most this much.
PIECE = 64 * 1024
# How much of a request body may be read ahead to find the object it names (the JSON metadata
# part of a multipart upload, a resumable session's or a metadata insert's object resource).
PEEK_LIMIT = 64 * 1024
# JSON API answers larger than this are passed on unchanged instead of having URLs rewritten.
REWRITE_LIMIT = 16 * 1024 * 1024
MAX_LINE = 65536
MAX_CONTROL_BODY = 1024 * 1024
MAX_SESSIONS = 4096  # resumable sessions remembered (upload_id → object), oldest forgotten first
CONTROL_PREFIX = "/__proxy/"
FAULT_HEADER = "X-Gcs-Proxy-Fault"  # on the proxy's own answers: which cause produced them
READ_METHODS = frozenset({"GET", "HEAD"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization"}
    | {"te", "trailer", "transfer-encoding", "upgrade"}
)
STAT_KEYS = (
    "connections",  # client connections accepted
    "calls",  # requests received (the control API's excluded)
    "forwarded",  # requests sent upstream
    "writes",  # object writes admitted by the write limit
    "write_limited",  # 429s answered because an object's write limit was reached
    "injected_429",
    "injected_503",
    "dropped",  # connections closed before forwarding
    "dropped_mid",  # connections closed part way through an answer
    "upstream_errors",  # 502s: the upstream could not be reached or broke off
    "precondition_failed",  # 412s from upstream: a compare-and-swap lost its race
)
_CONTENT_RANGE = re.compile(r"^bytes (?:\*|(\d+)-(\d+))/(\*|\d+)$")
_JSON_API = ("/storage/", "/upload/")
_NOT_XML_BUCKETS = frozenset({"", "storage", "upload", "download", "batch", "_internal", "__proxy"})
_OBJECT_SUBRESOURCES = frozenset({"copyTo", "rewriteTo", "compose", "acl"})


def gcs_error(code: int, message: str, reason: str, domain: str = "global") -> bytes:
    """The JSON API's error body, as google-cloud-storage and ``google.api_core`` parse it."""
    error = {"code": code, "message": message, "errors": [{"message": message, "domain": domain, "reason": reason}]}
    return json.dumps({"error": error}).encode()


def write_limit_message(bucket: str, name: str) -> str:
    return (
        f"The object {bucket}/{name} exceeded the rate limit for object mutation operations (create, update, and "
        "delete). Please reduce your request rate. See https://cloud.google.com/storage/docs/gcs429."
    )


INJECTED_429_MESSAGE = (
    "The service is currently receiving too many requests. Please reduce your request rate. "
    "See https://cloud.google.com/storage/docs/gcs429."
)


# --- what a call is ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as the proxy judges it.

    ``kind`` is ``read`` (GET, HEAD) or ``write`` (any other method) and is what fault filters
    match; ``write`` is the (bucket, object name) whose write limit the call spends, which only
    object mutations have; ``names`` are the object names the call touches (a list's ``prefix``
    for a list), which fault prefixes match.
    """

    kind: str
    bucket: str | None = None
    names: tuple[str, ...] = ()
    write: tuple[str, str] | None = None
    session_start: bool = False


def _object_from_body(peeked: bytes, content_type: str) -> str | None:
    """The ``name`` of the object resource at the start of a request body, if it is there."""
    doc: Any = None
    if content_type.lower().startswith("multipart/"):
        message = Message()
        message["content-type"] = content_type
        boundary = message.get_param("boundary")
        if not isinstance(boundary, str):
            return None
        delimiter = b"--" + boundary.encode()
        parts = peeked.split(delimiter)
        if len(parts) < 3:  # the metadata part is not complete within what was read
            return None
        _, _, part = parts[1].partition(b"\r\n\r\n")
        with contextlib.suppress(ValueError):
            doc = json.loads(part)
    else:
        with contextlib.suppress(ValueError):
            doc = json.loads(peeked)
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None


def _is_final_chunk(content_range: str | None) -> bool:
    """Whether a resumable session's PUT finalises the upload.

    ``bytes a-b/*`` is an intermediate chunk of a stream whose size is not known yet; ``bytes
    a-b/T`` with ``b = T-1`` is the last chunk; ``bytes */T`` finalises an upload whose bytes are
    all sent (what ``blob.open("wb")`` sends after a last full chunk); no Content-Range at all is a
    whole upload in one PUT. ``bytes */*`` asks for the session's status and writes nothing.
    """
    if content_range is None:
        return True
    match = _CONTENT_RANGE.match(content_range.strip())
    if match is None:
        return False
    end, total = match.group(2), match.group(3)
    if total == "*":
        return False
    return end is None or int(end) + 1 == int(total)


def classify(
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    peek: Callable[[int], bytes],
    session: Callable[[str], tuple[str, str | None] | None],
) -> Call:
    """What a request reads or writes; ``peek(limit)`` reads ahead in its body when needed.

    A write is a mutation of one object, and spends that object's write limit:

    * a media, multipart or metadata-only insert (``POST /upload/storage/v1/b/B/o``,
      ``POST /storage/v1/b/B/o``), the name in the ``name`` parameter or the JSON metadata;
    * an update (``PATCH``/``PUT /storage/v1/b/B/o/N``), a delete, an ACL change of an object;
    * the destination of ``copyTo``, ``compose`` and the first call of ``rewriteTo`` (a long
      rewrite continues with a ``rewriteToken``; the proxy cannot tell its last call in advance,
      so it counts the one that starts it); sources are only read;
    * the XML API's ``PUT``/``DELETE /B/N``;
    * the finalising PUT of a resumable session, and not its start nor its intermediate chunks.
      Cloud Storage creates the object when the session is finalised, which may be minutes after
      the session was opened, and a session opened but abandoned writes nothing; so the request
      that makes the new generation is the one that spends the limit, and the one a refusal
      answers (google-resumable-media then retries that chunk, as it would against GCS).

    A write whose object name cannot be found (a multipart upload whose metadata exceeds
    ``PEEK_LIMIT``; a resumable chunk of a session started elsewhere, without ``name`` in its URL)
    is not limited. Batch requests (``/batch/storage/v1``) are forwarded whole and never limited.
    A refused write spends nothing; an admitted one is spent whatever upstream answers (a 412 from
    ``ifGenerationMatch`` was still a change request), the stricter of the two readings.
    """
    kind = "read" if method in READ_METHODS else "write"
    seg = path.split("/")  # the raw path: an object name's slashes are still %2F
    first = query.get("name", [None])[0]

    def named(bucket: str, name: str | None, *, write: bool = True, start: bool = False) -> Call:
        names = (name,) if name is not None else ()
        counted = (bucket, name) if write and name is not None else None
        return Call(kind, bucket, names, counted, start)

    def body_name() -> str | None:
        return first or _object_from_body(peek(PEEK_LIMIT), headers.get("Content-Type", ""))

    # /upload/storage/v1/b/B/o
    if len(seg) == 7 and seg[1:4] == ["upload", "storage", "v1"] and seg[4] == "b" and seg[6] == "o":
        bucket = unquote(seg[5])
        upload_id = query.get("upload_id", [None])[0]
        if upload_id is not None:
            known = session(upload_id)
            name = known[1] if known else first
            return named(bucket, name, write=method == "PUT" and _is_final_chunk(headers.get("Content-Range")))
        if method == "POST":
            upload_type = query.get("uploadType", ["media"])[0]
            if upload_type == "resumable":
                return named(bucket, body_name(), write=False, start=True)
            return named(bucket, body_name() if upload_type == "multipart" else first)
        return Call(kind, bucket)
    # /download/storage/v1/b/B/o/N
    if len(seg) >= 8 and seg[1:4] == ["download", "storage", "v1"] and seg[4] == "b" and seg[6] == "o":
        return Call(kind, unquote(seg[5]), (unquote("/".join(seg[7:])),))
    # /storage/v1/b/B[/o[/N[/sub...]]]
    if len(seg) >= 5 and seg[1:3] == ["storage", "v1"] and seg[3] == "b":
        bucket = unquote(seg[4])
        if len(seg) == 5 or seg[5] != "o":
            return Call(kind, bucket)
        if len(seg) == 6:  # the bucket's objects: a list, or a metadata-only insert
            if method == "POST":
                return named(bucket, body_name())
            return Call(kind, bucket, (query.get("prefix", [""])[0],))
        sub = next((i for i in range(7, len(seg)) if seg[i] in _OBJECT_SUBRESOURCES), None)
        name = unquote("/".join(seg[6:sub]))
        if sub is None:
            return named(bucket, name, write=method in ("PATCH", "PUT", "DELETE"))
        rest = seg[sub:]
        if rest[0] in ("copyTo", "rewriteTo") and len(rest) >= 5 and rest[1] == "b" and rest[3] == "o":
            dest_bucket, dest = unquote(rest[2]), unquote("/".join(rest[4:]))
            counted = method == "POST" and not (rest[0] == "rewriteTo" and "rewriteToken" in query)
            return Call(kind, bucket, (name, dest), (dest_bucket, dest) if counted else None)
        if rest[0] == "compose":
            return named(bucket, name, write=method == "POST")
        return named(bucket, name, write=method not in READ_METHODS)  # acl
    if len(seg) >= 3 and seg[1] not in _NOT_XML_BUCKETS and seg[2]:  # the XML API: /B/N
        bucket, name = unquote(seg[1]), unquote("/".join(seg[2:]))
        if "upload_id" in query:
            return named(bucket, name, write=method == "PUT" and _is_final_chunk(headers.get("Content-Range")))
        if method == "POST" and headers.get("x-goog-resumable", "").lower() == "start":
            return named(bucket, name, write=False, start=True)
        return named(bucket, name, write=method in ("PUT", "DELETE"))
    if len(seg) >= 2 and seg[1] not in _NOT_XML_BUCKETS:
        return Call(kind, unquote(seg[1]), (query.get("prefix", [""])[0],))
    return Call(kind)


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Probabilities of faults injected on calls, and which calls they apply to.

    Each matching call draws one number from the proxy's seeded ``random.Random``, so the faults a
    sequence of calls meets is the same on every run with the same seed (calls that do not match
    draw nothing, so unrelated traffic does not shift the sequence; concurrent callers arrive in
    whatever order the scheduler gives). The four probabilities share that draw, so their sum is
    at most 1. ``p_drop`` closes the connection without answering and without forwarding;
    ``p_drop_mid`` forwards the call and closes the connection part way through the answer's body
    (after the headers, or half of a body up to one piece), so a write may have happened while
    its caller sees only a broken connection, as after a network failure.

    ``bucket``, ``prefix`` (of an object name, or of a list's ``prefix``) and ``kinds`` (``read``:
    GET/HEAD; ``write``: every other method) restrict the calls faults apply to; ``max_faults``
    stops injecting after that many, e.g. ``Faults(p_drop=1, max_faults=1)`` drops exactly the next
    call.
    """

    p_503: float = 0.0
    p_429: float = 0.0
    p_drop: float = 0.0
    p_drop_mid: float = 0.0
    bucket: str | None = None
    prefix: str | None = None
    kinds: tuple[str, ...] = ("read", "write")
    max_faults: int | None = None

    def __post_init__(self) -> None:
        probabilities = (self.p_503, self.p_429, self.p_drop, self.p_drop_mid)
        for value in probabilities:
            if not _number(value) or not 0 <= value <= 1:
                raise ValueError(f"a fault probability must be a number in [0, 1], not {value!r}")
        if sum(probabilities) > 1 + 1e-9:
            raise ValueError("the fault probabilities add up to more than 1")
        for value in (self.bucket, self.prefix):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"bucket and prefix are strings or null, not {value!r}")
        kinds = tuple(self.kinds)
        if not kinds or any(k not in ("read", "write") for k in kinds):
            raise ValueError(f"kinds are among 'read' and 'write', not {self.kinds!r}")
        object.__setattr__(self, "kinds", kinds)
        if self.max_faults is not None and not (_integer(self.max_faults) and self.max_faults >= 0):
            raise ValueError(f"max_faults is a count or null, not {self.max_faults!r}")

    def matches(self, call: Call) -> bool:
        if call.kind not in self.kinds:
            return False
        if self.bucket is not None and call.bucket != self.bucket:
            return False
        return self.prefix is None or any(n.startswith(self.prefix) for n in call.names)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["kinds"] = list(self.kinds)
        return doc

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` (wire names) applied; ValueError on an unknown name or bad value."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = dict(changes)
        if "kinds" in values:
            if isinstance(values["kinds"], str) or not isinstance(values["kinds"], list | tuple):
                raise ValueError("kinds is a list")
            values["kinds"] = tuple(values["kinds"])
        return replace(self, **values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _WriteLimiter:
    """A token bucket per (bucket, object): ``burst`` writes at once, refilled at ``rate`` a second.

    ``rate=None`` switches the limit off; ``rate=0`` never refills, which makes "the (burst+1)th
    write is refused" independent of timing in tests.
    """

    PRUNE_AT = 10_000

    def __init__(self, rate: float | None, burst: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def admit(self, key: tuple[str, str]) -> bool:
        if self.rate is None:
            return True
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        admitted = tokens >= 1
        self._buckets[key] = (tokens - 1 if admitted else tokens, now)
        if len(self._buckets) > self.PRUNE_AT:
            self._prune(now)
        return admitted

    def _prune(self, now: float) -> None:
        """Forget objects whose bucket has refilled: they behave as never seen."""
        assert self.rate is not None
        full = [k for k, (t, then) in self._buckets.items() if t + (now - then) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


# --- the HTTP side ----------------------------------------------------------------------------------


class _ClientGoneError(Exception):
    """The client's connection failed while its request body was being read."""


class _Body:
    """A request body read from the client in pieces (Content-Length or chunked); what ``peek``
    read ahead is replayed first by ``pieces``, so nothing is read twice or held whole."""

    def __init__(self, rfile: Any, headers: Mapping[str, str]) -> None:
        self._rfile = rfile
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        declared = headers.get("Content-Length")
        self.length: int | None = None
        if not self.chunked and declared is not None:
            if not declared.strip().isdigit():
                raise ValueError(f"bad Content-Length {declared!r}")
            self.length = int(declared)
        self._left = self.length or 0
        self._chunk_left = 0
        self._done = not self.chunked and self._left == 0
        self._peeked: list[bytes] = []
        self.held = 0  # the most bytes held at once, for the proxy's max_buffered statistic

    def _read(self, size: int) -> bytes:
        try:
            data = self._rfile.read(size)
        except OSError as exc:
            raise _ClientGoneError(str(exc)) from exc
        if not data:
            raise _ClientGoneError("the client closed its connection in the middle of a request body")
        return data

    def _readline(self) -> bytes:
        try:
            line = self._rfile.readline(MAX_LINE)
        except OSError as exc:
            raise _ClientGoneError(str(exc)) from exc
        if not line:
            raise _ClientGoneError("the client closed its connection in the middle of a chunked body")
        return line

    def _next(self) -> bytes:
        if self._done:
            return b""
        if not self.chunked:
            data = self._read(min(PIECE, self._left))
            self._left -= len(data)
            self._done = self._left == 0
            return data
        while self._chunk_left == 0:
            size_field = self._readline().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise _ClientGoneError(f"bad chunk size {size_field[:20]!r}") from None
            if size == 0:
                while self._readline() not in (b"\r\n", b"\n"):  # trailers: not forwarded
                    pass
                self._done = True
                return b""
            self._chunk_left = size
        data = self._read(min(PIECE, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._readline()  # the CRLF closing the chunk
        return data

    def peek(self, limit: int) -> bytes:
        while sum(map(len, self._peeked)) < limit:
            data = self._next()
            if not data:
                break
            self._peeked.append(data)
        self.held = max(self.held, sum(map(len, self._peeked)))
        return b"".join(self._peeked)

    def pieces(self) -> Iterator[bytes]:
        while self._peeked:
            yield self._peeked.pop(0)
        while data := self._next():
            self.held = max(self.held, len(data))
            yield data

    def drain(self) -> None:
        for _ in self.pieces():
            pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client library's requests session expects
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    timeout = 600  # an idle keep-alive connection, or a client stalled mid-body, is closed after this
    server: _Server
    upstream: HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.server.register(self)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def __getattr__(self, name: str) -> Any:
        """Every method (``do_GET``, ``do_PATCH``, ``do_ANYTHING``) is forwarded."""
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    # -- answers of the proxy's own --

    def _answer(self, status: int, body: bytes, cause: str | None = None, close: bool = False) -> None:
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if cause:
            self.send_header(FAULT_HEADER, cause)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close the connection without (finishing) an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- one request --

    def _handle(self) -> None:
        proxy = self.server.proxy
        parts = urlsplit(self.path)
        target = urlunsplit(("", "", parts.path, parts.query, "")) if parts.scheme else self.path
        if parts.path.startswith(CONTROL_PREFIX):
            self._control(parts.path)
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            body = _Body(self.rfile, self.headers)
        except ValueError as exc:
            self._answer(400, gcs_error(400, str(exc), "invalid"), close=True)
            self.close_connection = True
            return
        try:
            call = classify(self.command, parts.path, query, self.headers, body.peek, proxy.session)
            proxy._count("calls")
            fault = proxy._draw(call)
            log.debug("%s %s: %s, fault %s", self.command, target, call, fault)
            if fault == "drop":
                proxy._count("dropped")
                self._drop()
                return
            if fault in ("503", "429"):
                body.drain()
                if fault == "503":
                    proxy._count("injected_503")
                    self._answer(503, gcs_error(503, "Backend Error", "backendError"), "injected-503")
                else:
                    proxy._count("injected_429")
                    error = gcs_error(429, INJECTED_429_MESSAGE, "rateLimitExceeded", "usageLimits")
                    self._answer(429, error, "injected-429")
                return
            if call.write is not None and not proxy._admit(call.write):
                body.drain()
                proxy._count("write_limited")
                proxy._refused(call.write)
                message = write_limit_message(*call.write)
                self._answer(429, gcs_error(429, message, "rateLimitExceeded", "usageLimits"), "write-limit")
                return
            self._forward(target, parts.path, query, body, call, cut=fault == "drop_mid")
        except _ClientGoneError as exc:
            log.debug("client gone: %s", exc)
            self.close_connection = True
        finally:
            proxy._held(body.held)

    def _forward(
        self, target: str, path: str, query: Mapping[str, list[str]], body: _Body, call: Call, cut: bool
    ) -> None:
        proxy = self.server.proxy
        conn = HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout)
        self.upstream = conn
        try:
            try:
                if proxy.closing:
                    raise ConnectionError("the proxy is stopping")
                self._send_request(conn, target, body)
                response = conn.getresponse()
            except (OSError, HTTPException) as exc:
                proxy._count("upstream_errors")
                log.warning("upstream %s %s failed: %s", self.command, target, exc)
                self._answer(502, gcs_error(502, f"the proxy's upstream failed: {exc}", "backendError"), close=True)
                self.close_connection = True
                return
            proxy._count("forwarded")
            if response.status == 412:
                proxy._count("precondition_failed")
            if call.session_start:
                proxy._remember_session(response.getheader("Location"), call)
            self._relay(response, path, query, cut)
        finally:
            self.upstream = None
            conn.close()

    def _send_request(self, conn: HTTPConnection, target: str, body: _Body) -> None:
        named_hop = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
        has_host = False
        for key, value in self.headers.items():
            low = key.lower()
            if low in HOP_BY_HOP or low in named_hop or low in ("content-length", "expect"):
                continue  # Expect: http.server already answered 100 Continue
            has_host = has_host or low == "host"
            conn.putheader(key, value)
        if not has_host:
            conn.putheader("Host", f"{self.server.proxy.upstream_host}:{self.server.proxy.upstream_port}")
        if body.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body.length is not None:
            conn.putheader("Content-Length", str(body.length))
        conn.endheaders()
        for piece in body.pieces():
            if body.chunked:
                conn.send(b"%x\r\n" % len(piece))
                conn.send(piece)
                conn.send(b"\r\n")
            else:
                conn.send(piece)
        if body.chunked:
            conn.send(b"0\r\n\r\n")

    def _relay(self, response: HTTPResponse, path: str, query: Mapping[str, list[str]], cut: bool) -> None:
        proxy = self.server.proxy
        here = f"http://{self.headers.get('Host') or proxy.netloc}"
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        content_type = (response.getheader("Content-Type") or "").lower()
        rewrite = (
            not no_body
            and content_type.startswith("application/json")
            and path.startswith(_JSON_API)
            and "media" not in query.get("alt", [])
            and (response.length is None or response.length <= REWRITE_LIMIT)
        )
        headers = [
            (k, proxy.rewrite_text(v, here))
            for k, v in response.getheaders()
            if k.lower() not in HOP_BY_HOP and (k.lower() != "content-length" or no_body)
        ]
        prefix = b""
        if rewrite:
            try:
                prefix = response.read(REWRITE_LIMIT + 1)
            except (OSError, HTTPException) as exc:
                self._upstream_broke(exc, 0)
                return
            proxy._held(len(prefix))
            if len(prefix) <= REWRITE_LIMIT:  # all of it: rewrite, and say its new length
                data = self._rewrite_json(prefix, response.getheader("Content-Encoding"), here)
                self._start_answer(response, [*headers, ("Content-Length", str(len(data)))])
                self._write(data[: max(0, len(data) // 2)] if cut else data, cut)
                return
        if no_body:
            self._start_answer(response, headers)
            self._write(b"", cut)
            return
        if response.length is not None and not prefix:
            self._start_answer(response, [*headers, ("Content-Length", str(response.length))])
            self._copy(response, chunked=False, budget=min(PIECE, response.length // 2) if cut else None)
            return
        chunked = self.request_version == "HTTP/1.1"
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:  # an HTTP/1.0 client learns the end of the body from the end of the connection
            self.close_connection = True
            headers.append(("Connection", "close"))
        self._start_answer(response, headers)
        if prefix:
            self._send_piece(memoryview(prefix), chunked)
        self._copy(response, chunked=chunked, budget=PIECE // 2 if cut else None)

    def _upstream_broke(self, exc: Exception, sent: int) -> None:
        log.warning("upstream answer broke off after %d body bytes: %s", sent, exc)
        self.server.proxy._count("upstream_errors")
        self._drop()

    def _rewrite_json(self, data: bytes, encoding: str | None, here: str) -> bytes:
        proxy = self.server.proxy
        if encoding and encoding.lower() == "gzip":
            try:
                return gzip.compress(proxy.rewrite_bytes(gzip.decompress(data), here))
            except (OSError, EOFError):  # not gzip after all: pass it on as it came
                return data
        return proxy.rewrite_bytes(data, here)

    def _start_answer(self, response: HTTPResponse, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(response.status, response.reason)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()

    def _send_piece(self, piece: memoryview, chunked: bool) -> None:
        if chunked:
            self.wfile.write(b"%x\r\n" % len(piece))
            self.wfile.write(piece)
            self.wfile.write(b"\r\n")
        else:
            self.wfile.write(piece)

    def _write(self, data: bytes, cut: bool) -> None:
        self.wfile.write(data)
        if cut:
            self.server.proxy._count("dropped_mid")
            self._drop()

    def _copy(self, response: HTTPResponse, chunked: bool, budget: int | None) -> None:
        """Copy the answer's body through one ``PIECE`` buffer; with ``budget``, only that many
        bytes of it, then close the connection (the mid-body drop)."""
        buffer = memoryview(bytearray(PIECE))
        self.server.proxy._held(PIECE)
        sent = 0
        while budget is None or sent < budget:
            size = PIECE if budget is None else min(PIECE, budget - sent)
            try:
                count = response.readinto(buffer[:size])
            except (OSError, HTTPException) as exc:  # upstream broke off: so must the answer
                self._upstream_broke(exc, sent)
                return
            if not count:
                break
            self._send_piece(buffer[:count], chunked)  # an OSError here: the client went away
            sent += count
        if budget is not None:
            self.server.proxy._count("dropped_mid")
            self._drop()
        elif chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- the control API --

    def _control(self, path: str) -> None:
        proxy = self.server.proxy
        try:
            body = _Body(self.rfile, self.headers)
            raw = body.peek(MAX_CONTROL_BODY + 1)
            body.drain()
        except (ValueError, _ClientGoneError):
            self.close_connection = True
            return
        action = path[len(CONTROL_PREFIX) :]
        try:
            if len(raw) > MAX_CONTROL_BODY:
                raise ValueError("the body is too large")
            settings = json.loads(raw) if raw.strip() else {}
            if not isinstance(settings, dict):
                raise ValueError("the body is a JSON object")
            if (self.command, action) == ("GET", "stats"):
                answer: Any = proxy.stats()
            elif (self.command, action) == ("GET", "limited"):
                answer = proxy.limited()
            elif (self.command, action) == ("GET", "config"):
                answer = proxy.config()
            elif (self.command, action) == ("POST", "config"):
                answer = proxy.configure(**settings)
            elif (self.command, action) == ("POST", "reset"):
                proxy.reset()
                answer = proxy.stats()
            else:
                self._answer(404, json.dumps({"error": f"no {self.command} {path}"}).encode())
                return
        except (ValueError, TypeError) as exc:
            self._answer(400, json.dumps({"error": str(exc)}).encode())
            return
        self._answer(200, json.dumps(answer).encode())


class _Server(ThreadingHTTPServer):
    """Threaded, and keeps each connection's handler so that ``stop`` can end them all."""

    daemon_threads = False
    block_on_close = True  # server_close joins every handler thread
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: GcsProxy) -> None:
        self.proxy = proxy
        self._lock = threading.Lock()
        self._active: dict[Any, _Handler | None] = {}
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:  # before the thread starts, so that close_connections cannot miss it
            self._active[request] = None
        self.proxy._count("connections")
        super().process_request(request, client_address)

    def register(self, handler: _Handler) -> None:
        with self._lock:
            self._active[handler.request] = handler

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._active.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every client socket and every upstream socket in use: a blocked read or write in a
        handler thread then returns at once, and the thread ends."""
        with self._lock:
            active = list(self._active.items())
        for sock, handler in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            upstream = handler.upstream if handler else None
            if upstream is not None and upstream.sock is not None:
                with contextlib.suppress(OSError):
                    upstream.sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | _ClientGoneError):  # a client went away: theirs to notice
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.exception("the proxy failed on a request from %s", client_address)


# --- the proxy --------------------------------------------------------------------------------------


class GcsProxy:
    """The proxy, serving from a background thread of this process.

    ``upstream`` is fake-gcs-server's URL; ``upstream_external_url`` the origin it writes into its
    answers (its ``-external-url``) when that differs. ``write_rate`` writes a second per object
    (``None``: no limit) with bursts of ``write_burst``; ``faults`` what to inject, drawn from
    ``random.Random(seed)``. ``port=0`` takes a free port; ``url`` is known once started.
    """

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        host: str = "127.0.0.1",
        write_rate: float | None = 1.0,
        write_burst: float = 2,
        faults: Faults | None = None,
        seed: int = 0,
        upstream_timeout: float = 120.0,
        upstream_external_url: str | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the upstream is http://HOST:PORT, not {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self._origins = sorted({f"http://{parts.netloc}", (upstream_external_url or upstream).rstrip("/")})
        self.upstream_timeout = upstream_timeout
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._limited: Counter[str] = Counter()  # write-limited 429s by object, ``bucket/name``
        self._max_held = 0
        self._sessions: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._write_rate: float | None = None
        self._write_burst: float = 2
        self._faults = Faults()
        self._seed = 0
        self._injected = 0
        self._rng = random.Random(0)
        self._limiter = _WriteLimiter(None, 2)
        self.configure(write_rate=write_rate, write_burst=write_burst, faults=faults or Faults(), seed=seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.closing = False

    # -- lifecycle --

    def start(self) -> GcsProxy:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self.closing = False
        self._server = _Server((self._host, self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"gcs-proxy-{self._port}"
        )
        self._thread.daemon = True  # a proxy a test forgot to stop does not keep the interpreter alive
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end every open connection and its thread, close the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.closing = True
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> GcsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def netloc(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://{self.netloc}"

    # -- configuration and counters --

    def config(self) -> dict[str, Any]:
        with self._lock:
            return {
                "write_rate": self._write_rate,
                "write_burst": self._write_burst,
                "faults": self._faults.to_json(),
                "seed": self._seed,
            }

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings by their wire names (``write_rate``, ``write_burst``, ``seed``, ``faults``:
        a ``Faults`` to replace them, or a dict of the fault settings to change), all or nothing;
        ValueError on an unknown name or a bad value. Returns the whole configuration.

        Changing the write limit starts every object's bucket full; a new ``seed`` restarts the
        fault sequence and the ``max_faults`` count.
        """
        unknown = set(settings) - {"write_rate", "write_burst", "faults", "seed"}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        with self._lock:
            rate = settings.get("write_rate", self._write_rate)
            burst = settings.get("write_burst", self._write_burst)
            seed = settings.get("seed", self._seed)
            if rate is not None and not (_number(rate) and rate >= 0):
                raise ValueError(f"write_rate is a number ≥ 0 or null, not {rate!r}")
            if not (_number(burst) and burst >= 1):
                raise ValueError(f"write_burst is a number ≥ 1, not {burst!r}")
            if not _integer(seed):
                raise ValueError(f"seed is an integer, not {seed!r}")
            faults = settings.get("faults", self._faults)
            if isinstance(faults, Mapping):
                faults = self._faults.updated(faults)
            elif not isinstance(faults, Faults):
                raise ValueError("faults is an object of fault settings")
            if "write_rate" in settings or "write_burst" in settings:
                self._limiter = _WriteLimiter(rate, burst)
            self._write_rate, self._write_burst, self._faults = rate, burst, faults
            if "seed" in settings:
                self._seed, self._rng, self._injected = seed, random.Random(seed), 0
        return self.config()

    def reset(self) -> None:
        """Zero the counters, fill every write bucket, restart the fault sequence from the seed;
        the configuration stays."""
        with self._lock:
            self._stats.clear()
            self._limited.clear()
            self._max_held = 0
            self._limiter = _WriteLimiter(self._write_rate, self._write_burst)
            self._rng = random.Random(self._seed)
            self._injected = 0

    def stats(self) -> dict[str, int]:
        """The counters (``STAT_KEYS``) and ``max_buffered``: the most body bytes one request held at
        once, which stays at a piece or two however large the objects."""
        with self._lock:
            counts = {key: self._stats[key] for key in STAT_KEYS}
            counts["max_buffered"] = self._max_held
            return counts

    def limited(self, top: int | None = None) -> dict[str, int]:
        """Write-limited 429s by object (``bucket/name``), the most refused first (``top`` of them):
        which objects a workload writes faster than Cloud Storage allows."""
        with self._lock:
            return dict(self._limited.most_common(top))

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _refused(self, write: tuple[str, str]) -> None:
        with self._lock:
            self._limited["/".join(write)] += 1

    def _held(self, size: int) -> None:
        with self._lock:
            self._max_held = max(self._max_held, size)

    def _draw(self, call: Call) -> str | None:
        with self._lock:
            faults = self._faults
            if not faults.matches(call) or (faults.max_faults is not None and self._injected >= faults.max_faults):
                return None
            draw = self._rng.random()
            for fault, share in (
                ("503", faults.p_503),
                ("429", faults.p_429),
                ("drop", faults.p_drop),
                ("drop_mid", faults.p_drop_mid),
            ):
                if draw < share:
                    self._injected += 1
                    return fault
                draw -= share
            return None

    def _admit(self, key: tuple[str, str]) -> bool:
        with self._lock:
            admitted = self._limiter.admit(key)
            if admitted:
                self._stats["writes"] += 1
            return admitted

    def session(self, upload_id: str) -> tuple[str, str | None] | None:
        """The (bucket, object name) of a resumable session this proxy saw start."""
        with self._lock:
            return self._sessions.get(upload_id)

    def _remember_session(self, location: str | None, call: Call) -> None:
        """Map a resumable session's upload_id to its object, for its later chunks."""
        if not location or call.bucket is None:
            return
        query = parse_qs(urlsplit(location).query)
        upload_id = query.get("upload_id", [None])[0]
        if upload_id is None:
            return
        name = call.names[0] if call.names else query.get("name", [None])[0]
        with self._lock:
            self._sessions[upload_id] = (call.bucket, name)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def rewrite_text(self, text: str, here: str) -> str:
        for origin in self._origins:
            text = text.replace(origin, here)
        return text

    def rewrite_bytes(self, data: bytes, here: str) -> bytes:
        for origin in self._origins:
            data = data.replace(origin.encode(), here.encode())
        return data


class GcsProxyControl:
    """The control API of a proxy running elsewhere (another process, ``python -m``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.request(method, f"{self.base_url}{CONTROL_PREFIX}{action}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")

    def limited(self) -> dict[str, int]:
        return self._call("GET", "limited")

    def config(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """As ``GcsProxy.configure``, with ``faults`` a dict; HTTP 400 on a bad setting."""
        return self._call("POST", "config", settings)

    def reset(self) -> dict[str, int]:
        return self._call("POST", "reset", {})


def start_process(
    upstream: str, log_path: Path, port: int | None = None, args: tuple[str, ...] = ()
) -> emulators.Process:
    """``python -m opus_local.gcs_proxy`` in its own process group, e.g. for functions running under
    functions-framework, which cannot share a test's thread; ``args`` are more CLI flags."""
    port = port or emulators.free_port()
    command = [sys.executable, "-m", "opus_local.gcs_proxy", "--upstream", upstream, "--port", str(port), *args]
    return emulators.spawn("gcs-proxy", command, port, log_path, timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fault-injecting proxy in front of fake-gcs-server (dev only)")
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL, http://HOST:PORT")
    parser.add_argument("--upstream-external-url", help="the origin the upstream writes into its answers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--write-rate", type=float, default=1.0, help="writes a second per object")
    parser.add_argument("--write-burst", type=float, default=2)
    parser.add_argument("--no-write-limit", action="store_true")
    parser.add_argument("--p-503", type=float, default=0.0)
    parser.add_argument("--p-429", type=float, default=0.0)
    parser.add_argument("--p-drop", type=float, default=0.0)
    parser.add_argument("--p-drop-mid", type=float, default=0.0)
    parser.add_argument("--fault-bucket")
    parser.add_argument("--fault-prefix", help="only objects whose name starts so")
    parser.add_argument("--fault-kinds", default="read,write", help="read, write or read,write")
    parser.add_argument("--max-faults", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        faults = Faults(
            p_503=args.p_503,
            p_429=args.p_429,
            p_drop=args.p_drop,
            p_drop_mid=args.p_drop_mid,
            bucket=args.fault_bucket,
            prefix=args.fault_prefix,
            kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
            max_faults=args.max_faults,
        )
        proxy = GcsProxy(
            args.upstream,
            port=args.port,
            host=args.host,
            write_rate=None if args.no_write_limit else args.write_rate,
            write_burst=args.write_burst,
            faults=faults,
            seed=args.seed,
            upstream_external_url=args.upstream_external_url,
        )
    except ValueError as exc:
        parser.error(str(exc))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with proxy:
        print(f"GCS proxy on {proxy.url} → {args.upstream}", flush=True)
        while not stopping.wait(1.0):
            pass
    print("GCS proxy stopped", flush=True)


if __name__ == "__main__":
    main()
