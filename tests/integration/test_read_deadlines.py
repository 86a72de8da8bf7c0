"""A total deadline on reading an answer holds however slowly the host sends it, over real sockets.

The host here answers with a ``Content-Length`` and then sends one byte every ``TRICKLE`` seconds:
every socket read returns well within the read timeout, and a read piece (64 KiB of JSON, 1 MiB of
clip) would fill only after hours, so a deadline looked at between pieces alone is never reached.
``test_conclusion_bounds.py`` covers the same errors with a fake clock; this is the real clock.
"""

from __future__ import annotations

import socketserver
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from google.cloud import storage

from opus_pipeline import http_policy
from opus_pipeline.errors import AnswerLostError, TransientError
from opus_pipeline.opus.clip_download import copy_clip

DEADLINE = 2.0
GRACE = 1.5  # how long after the deadline giving up may take
TRICKLE = 0.25  # seconds between bytes: far inside every read timeout
DECLARED = 10 * 1024 * 1024  # the Content-Length promised, never sent


class _TrickleHandler(socketserver.BaseRequestHandler):
    """Reads the request, sends the headers at once, then the body one byte at a time."""

    server: _TrickleServer

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {DECLARED}\r\n\r\n".encode()
        )
        while not self.server.stopping.wait(TRICKLE):
            try:
                self.request.sendall(b" ")
            except OSError:  # the client gave up and closed its end
                return


class _TrickleServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.stopping = threading.Event()


@pytest.fixture
def trickling_host() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a host that trickles every answer's body."""
    server = _TrickleServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def bucket(gcs: str) -> storage.Bucket:
    return storage.Client().create_bucket(f"trickle-{uuid.uuid4().hex[:8]}")


def test_a_json_answer_trickled_under_a_content_length_is_dropped_at_the_deadline(trickling_host: str) -> None:
    response = http_policy.send(requests.Session(), "GET", f"{trickling_host}/projects", stream=True)
    started = time.monotonic()

    with pytest.raises(AnswerLostError, match=f"OpusClip took longer than {DEADLINE:.0f}s to answer"):
        http_policy.read_bounded(response, deadline=DEADLINE)

    assert time.monotonic() - started < DEADLINE + GRACE


def test_a_clip_trickled_under_a_content_length_is_given_up_at_the_deadline(
    trickling_host: str, bucket: storage.Bucket
) -> None:
    host = trickling_host.removeprefix("http://")
    started = time.monotonic()

    with pytest.raises(TransientError, match=f"longer than {DEADLINE:.0f}s to send a clip file"):
        copy_clip(requests.Session(), f"{trickling_host}/clip.mp4", (host,), bucket.blob("slow.mp4"), deadline=DEADLINE)

    assert time.monotonic() - started < DEADLINE + GRACE
