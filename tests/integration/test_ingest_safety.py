"""Where bytes may go, and that one video is streamed by one invocation at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.errors import InProgressError
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS
from opus_pipeline.usecases.ingest import handle_finalized

from conftest import API_KEY, CHUNK, Stack, md5_hex
from support import ingest, only_upload, record, services, video, wait_for


class _Counting(BaseHTTPRequestHandler):
    def _count(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._count()

    def do_POST(self) -> None:
        self._count()

    def do_PUT(self) -> None:
        self._count()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def elsewhere() -> Iterator[ThreadingHTTPServer]:
    """A listener on another port: a redirect target that must never be reached."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def redirect_to(server: ThreadingHTTPServer, status: int) -> dict:
    return {"kind": "status", "status": status, "headers": {"Location": f"http://127.0.0.1:{server.server_port}/x"}}


def upload_link_answer(stack: Stack) -> dict:
    """A real answer of the stand-in's ``POST /api/upload-links``, for a test to alter and inject."""
    return requests.post(
        f"{stack.standin_url}/api/upload-links",
        json={"video": {"usecase": "LocalUpload"}},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).json()


# -- redirects are never followed ------------------------------------------------------------


def test_a_redirect_from_the_upload_session_sends_nothing_elsewhere(stack: Stack, standin, elsewhere) -> None:
    standin.inject({"endpoint": "chunk", **redirect_to(elsewhere, 307)})
    resource = stack.put("talk.mp4", video())

    assert ingest(stack, resource) == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == "refused-host" and "redirect" in rec.error
    assert elsewhere.hits == 0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_from_the_api_sends_no_key_elsewhere(stack: Stack, standin, elsewhere, status: int) -> None:
    standin.inject({"endpoint": "upload-links", **redirect_to(elsewhere, status)})
    resource = stack.put("talk.mp4", video())

    assert ingest(stack, resource) == states.FAILED
    assert record(stack, resource).reason == "refused-host"
    assert elsewhere.hits == 0 and standin.calls("start") == 0


def test_an_upload_link_whose_host_the_transport_reads_differently_sends_nothing(
    stack: Stack, standin, elsewhere
) -> None:
    link = upload_link_answer(stack)
    listed = urlsplit(stack.standin_url).netloc
    link["url"] = f"http://127.0.0.1:{elsewhere.server_port}\\@{listed}/upload"  # urllib3 ends the host at "\\"
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": 200, "body": link})
    resource = stack.put("talk.mp4", video_bytes(smallest_video()))

    assert ingest(stack, resource) == states.FAILED
    assert record(stack, resource).reason == "refused-host"
    assert elsewhere.hits == 0 and standin.calls("start") == 0


# -- the quota is checked only when OpusClip states it --------------------------------------


def test_an_upload_link_without_total_amount_uploads_anyway(stack: Stack, standin, capfd) -> None:
    link = upload_link_answer(stack)
    del link["totalAmount"], link["useAmount"]
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": 200, "body": link})
    data = video(CHUNK + 3)
    resource = stack.put("talk.mp4", data)

    assert ingest(stack, resource) == states.QUEUED
    assert standin.upload(link["uploadId"])["md5"] == md5_hex(data)
    assert "did not say how much upload quota is left" in capfd.readouterr().out


# -- a pinned generation that vanished is continued when the bytes are the same --------------


def test_a_rewrite_with_the_same_bytes_mid_stream_is_continued_on_the_live_generation(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "chunk", "kind": "slow", "seconds": 0.5, "times": 1})
    # longer than the first request: its end is read after that request's answer, after the rewrite
    data = video((FIRST_PUT_CHUNKS + 4) * CHUNK)
    resource = stack.put("talk.mp4", data)
    bucket = stack.storage.bucket(stack.source_bucket)

    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(ingest(stack, resource)))
    worker.start()
    wait_for(lambda: standin.calls("chunk") > 0, timeout=30)
    rewritten = bucket.copy_blob(bucket.blob("talk.mp4"), bucket, "talk.mp4")  # same bytes, new generation
    worker.join(timeout=60)

    assert result == [states.QUEUED]
    assert int(rewritten.generation) != int(resource["generation"])
    assert record(stack, resource).read_generation == int(rewritten.generation)
    assert only_upload(standin)["md5"] == md5_hex(data)


# -- the lease lives as long as its holder ---------------------------------------------------


def stream_with_a_duplicate_arriving_after(stack: Stack, standin, seconds: float) -> tuple[list, list]:
    """Stream one video with a 3 s lease; deliver the same event again ``seconds`` in."""
    data = video(3 * CHUNK)
    resource = stack.put("talk.mp4", data)
    first: list[object] = []
    worker = threading.Thread(
        target=lambda: first.append(handle_finalized(storage_object(resource), real_sleep(stack)))
    )
    worker.start()
    time.sleep(seconds)
    duplicate: list[object] = []
    try:
        duplicate.append(ingest(stack, resource, LEASE_SECONDS="3"))
    except InProgressError as exc:
        duplicate.append(exc)
    worker.join(timeout=60)
    assert only_upload(standin)["md5"] == md5_hex(data)
    return first, duplicate


def real_sleep(stack: Stack):
    svc = services(stack, LEASE_SECONDS="3")
    svc.sleep = time.sleep
    return svc


def test_a_duplicate_during_a_long_retry_after_sends_no_byte_twice(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "chunk", "kind": "status", "status": 429, "headers": {"Retry-After": "5"}})
    first, duplicate = stream_with_a_duplicate_arriving_after(stack, standin, seconds=4)

    assert first == [states.QUEUED]
    assert isinstance(duplicate[0], InProgressError)
    assert standin.stats()["bytesReceived"] == 3 * CHUNK  # the refused chunk's body was drained, not kept
    assert standin.calls("upload-links") == 1


def test_a_duplicate_during_a_slow_put_sends_no_byte_twice(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "chunk", "kind": "slow", "seconds": 4.5})
    first, duplicate = stream_with_a_duplicate_arriving_after(stack, standin, seconds=3.5)

    assert first == [states.QUEUED]
    assert isinstance(duplicate[0], InProgressError)
    assert standin.stats()["bytesReceived"] == 3 * CHUNK
    assert standin.calls("upload-links") == 1
