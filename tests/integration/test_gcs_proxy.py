"""The fault-injecting storage proxy, between the real google-cloud-storage client and fake-gcs-server.

Each test points ``STORAGE_EMULATOR_HOST`` at a proxy of its own (monkeypatch restores it, so the
session's ``gcs`` fixture value is back for the next test) and creates its client afterwards: the
client reads the variable when it is created.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions
from google.cloud import storage

from opus_local import emulators, gcs_proxy
from opus_local.gcs_proxy import GcsProxy, GcsProxyControl

MIB = 1024 * 1024


@pytest.fixture
def proxy(gcs: str) -> Iterator[GcsProxy]:
    """A proxy with the defaults: 1 write a second per object, bursts of 2, no faults."""
    with GcsProxy(gcs) as running:
        yield running


@pytest.fixture
def bucket(proxy: GcsProxy, monkeypatch: pytest.MonkeyPatch) -> storage.Bucket:
    """A fresh bucket, reached through the proxy; the proxy's counters start at zero."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    created = storage.Client().create_bucket(f"proxy-{uuid.uuid4().hex[:8]}")
    proxy.reset()
    return created


def media_upload(base: str, bucket: str, name: str, data: bytes) -> requests.Response:
    params = {"uploadType": "media", "name": name}
    return requests.post(f"{base}/upload/storage/v1/b/{bucket}/o", params=params, data=data, timeout=30)


def object_url(base: str, bucket: str, name: str) -> str:
    return f"{base}/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}"


def test_objects_round_trip_byte_identical(bucket: storage.Bucket) -> None:
    small, large = os.urandom(1000), os.urandom(9 * MIB + 12345)
    bucket.blob("small.bin").upload_from_string(small)  # multipart
    blob = bucket.blob("videos/large.bin", chunk_size=2 * MIB)
    blob.upload_from_file(io.BytesIO(large), size=len(large))  # resumable: above the 8 MiB multipart limit

    assert bucket.blob("small.bin").download_as_bytes() == small
    assert bucket.blob("videos/large.bin").download_as_bytes() == large
    assert (
        bucket.blob("videos/large.bin").download_as_bytes(start=MIB - 7, end=3 * MIB + 1)
        == large[MIB - 7 : 3 * MIB + 2]
    )


def test_resumable_upload_of_unknown_size_round_trips(bucket: storage.Bucket) -> None:
    data = os.urandom(3 * MIB)  # a multiple of the chunk size: finalised by an empty ``bytes */TOTAL`` PUT
    bucket.blob("stream.bin", chunk_size=MIB).upload_from_file(io.BytesIO(data))
    assert bucket.blob("stream.bin").download_as_bytes() == data


def test_chunked_request_body_is_forwarded_intact(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    pieces = [os.urandom(100_000) for _ in range(7)]
    params = {"uploadType": "media", "name": "chunked.bin"}
    response = requests.post(
        f"{proxy.url}/upload/storage/v1/b/{bucket.name}/o", params=params, data=iter(pieces), timeout=30
    )
    assert response.status_code == 200, response.text
    assert bucket.blob("chunked.bin").download_as_bytes() == b"".join(pieces)


def test_upstream_urls_in_answers_point_at_the_proxy(bucket: storage.Bucket, proxy: GcsProxy, gcs: str) -> None:
    start = requests.post(
        f"{proxy.url}/upload/storage/v1/b/{bucket.name}/o",
        params={"uploadType": "resumable"},
        json={"name": "session.bin"},
        timeout=10,
    )
    assert start.status_code == 200
    assert start.headers["Location"].startswith(f"{proxy.url}/upload/storage/v1/b/{bucket.name}/o?")
    assert "upload_id=" in start.headers["Location"]

    bucket.blob("linked.bin").upload_from_string(b"linked")
    resource = requests.get(object_url(proxy.url, bucket.name, "linked.bin"), timeout=10)
    assert resource.json()["mediaLink"].startswith(proxy.url)
    assert resource.json()["selfLink"].startswith(proxy.url)
    assert gcs.removeprefix("http://") not in resource.text

    proxy.reset()
    assert bucket.get_blob("linked.bin").download_as_bytes() == b"linked"  # through its mediaLink
    assert proxy.stats()["forwarded"] == 2


def test_keep_alive_connection_carries_many_calls(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    bucket.blob("kept.txt").upload_from_string(b"kept")
    proxy.reset()
    url = object_url(proxy.url, bucket.name, "kept.txt")
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(url, timeout=10).status_code == 200
            assert session.get(url, params={"alt": "media"}, timeout=10).content == b"kept"
    stats = proxy.stats()
    assert (stats["connections"], stats["calls"]) == (1, 10)


def test_third_write_to_an_object_within_a_second_is_refused_with_gcs_429(
    bucket: storage.Bucket, proxy: GcsProxy
) -> None:
    answers = [media_upload(proxy.url, bucket.name, "hot/state.json", b"%d" % n) for n in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.headers[gcs_proxy.FAULT_HEADER] == "write-limit"
    error = refused.json()["error"]
    assert error["code"] == 429
    assert f"{bucket.name}/hot/state.json exceeded the rate limit for object mutation operations" in error["message"]
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["errors"][0]["domain"] == "usageLimits"
    assert bucket.blob("hot/state.json").download_as_bytes() == b"1"  # the refused write never arrived
    stats = proxy.stats()
    assert (stats["writes"], stats["write_limited"], stats["injected_429"]) == (2, 1, 0)


def test_client_library_sees_too_many_requests_without_retry(bucket: storage.Bucket) -> None:
    blob = bucket.blob("ledger/video.json")
    blob.upload_from_string(b"{}", retry=None)
    blob.upload_from_string(b"{}", retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        blob.upload_from_string(b"{}", retry=None)


def test_writes_to_different_objects_do_not_limit_each_other(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=0, write_burst=1)  # no refill: one write per object, however slow the machine
    for name in ("a.json", "b.json", "c.json"):
        bucket.blob(name).upload_from_string(b"1", retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        bucket.blob("a.json").upload_from_string(b"2", retry=None)


def test_write_limit_refills_with_time(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=5, write_burst=1)
    assert media_upload(proxy.url, bucket.name, "tick.json", b"1").status_code == 200
    assert media_upload(proxy.url, bucket.name, "tick.json", b"2").status_code == 429
    time.sleep(0.3)  # 1.5 tokens at 5 a second
    assert media_upload(proxy.url, bucket.name, "tick.json", b"3").status_code == 200


def test_reads_are_never_write_limited(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=0, write_burst=1)
    bucket.blob("read/me.bin").upload_from_string(b"content")
    for _ in range(10):
        assert bucket.blob("read/me.bin").download_as_bytes(retry=None) == b"content"
        assert bucket.get_blob("read/me.bin", retry=None).size == 7
        assert [b.name for b in bucket.list_blobs(prefix="read/", retry=None)] == ["read/me.bin"]
    assert proxy.stats()["write_limited"] == 0
    with pytest.raises(exceptions.TooManyRequests):  # the limit was there all along
        bucket.blob("read/me.bin").upload_from_string(b"again", retry=None)


def test_resumable_upload_spends_one_write_at_its_final_chunk(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=0, write_burst=1)
    data = os.urandom(MIB)
    bucket.blob("copy.mp4", chunk_size=256 * 1024).upload_from_file(io.BytesIO(data))  # 1 start + 5 PUTs
    stats = proxy.stats()
    assert stats["forwarded"] == 6
    assert (stats["writes"], stats["write_limited"]) == (1, 0)
    assert bucket.blob("copy.mp4").download_as_bytes() == data
    with pytest.raises(exceptions.TooManyRequests):
        bucket.blob("copy.mp4").upload_from_string(b"x", retry=None)


def test_metadata_updates_and_deletes_are_writes(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=0, write_burst=2)
    blob = bucket.blob("meta.json")
    blob.upload_from_string(b"{}")
    blob.metadata = {"state": "done"}
    blob.patch(retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        blob.delete(retry=None)
    assert bucket.get_blob("meta.json").metadata == {"state": "done"}


def test_copy_and_compose_spend_their_destination_only(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(write_rate=0, write_burst=1)
    source = bucket.blob("source.bin")
    source.upload_from_string(b"source bytes")  # the source's only write
    bucket.copy_blob(source, bucket, "copy-1.bin", retry=None)
    bucket.copy_blob(source, bucket, "copy-2.bin", retry=None)  # reading the source again is no write
    with pytest.raises(exceptions.TooManyRequests):
        bucket.copy_blob(source, bucket, "copy-1.bin", retry=None)
    bucket.blob("composed.bin").compose([source], retry=None)
    with pytest.raises(exceptions.TooManyRequests):
        bucket.blob("composed.bin").compose([source], retry=None)
    assert bucket.blob("copy-2.bin").download_as_bytes() == b"source bytes"


def test_injected_503_share_is_reproducible_with_a_seed(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    bucket.blob("probe.json").upload_from_string(b"{}")
    proxy.configure(faults={"p_503": 0.25}, seed=1234)
    url = object_url(proxy.url, bucket.name, "probe.json")

    def statuses() -> list[int]:
        with requests.Session() as session:
            return [session.get(url, timeout=10).status_code for _ in range(200)]

    first = statuses()
    proxy.reset()  # the same seed: the same sequence
    again = statuses()
    proxy.configure(seed=4321)
    proxy.reset()
    other = statuses()

    assert first == again
    assert set(first) == {200, 503}
    assert 30 <= first.count(503) <= 70  # 50 expected
    assert other != first
    assert proxy.stats()["injected_503"] == other.count(503)


def test_faults_apply_only_to_the_configured_prefix_and_kind(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(faults={"p_503": 1.0, "prefix": "admission/", "kinds": ["read"]})
    bucket.blob("admission/table.json").upload_from_string(b"{}", retry=None)  # a write: not faulted
    bucket.blob("ledger/video.json").upload_from_string(b"{}", retry=None)
    with pytest.raises(exceptions.ServiceUnavailable) as raised:
        bucket.blob("admission/table.json").download_as_bytes(retry=None)
    assert "Backend Error" in str(raised.value)
    assert bucket.blob("ledger/video.json").download_as_bytes(retry=None) == b"{}"
    proxy.configure(faults={"bucket": "some-other-bucket"})
    assert bucket.blob("admission/table.json").download_as_bytes(retry=None) == b"{}"


def test_injected_429_is_counted_apart_from_the_write_limit(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(faults={"p_429": 1.0, "kinds": ["read"]})
    answer = requests.get(object_url(proxy.url, bucket.name, "any.json"), timeout=10)
    assert answer.status_code == 429
    assert answer.headers[gcs_proxy.FAULT_HEADER] == "injected-429"
    assert answer.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    stats = proxy.stats()
    assert (stats["injected_429"], stats["write_limited"], stats["forwarded"]) == (1, 0, 0)


def test_dropped_connection_surfaces_as_a_connection_error(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    proxy.configure(faults={"p_drop": 1.0})
    with pytest.raises(requests.ConnectionError):
        requests.get(object_url(proxy.url, bucket.name, "any.json"), timeout=10)
    assert proxy.stats()["dropped"] == 1


def test_library_default_retry_recovers_from_a_dropped_connection(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    bucket.blob("flaky.bin").upload_from_string(b"flaky")
    proxy.configure(faults={"p_drop": 1.0, "max_faults": 2})
    proxy.reset()
    with pytest.raises(requests.ConnectionError):  # without a retry, the drop is the caller's
        bucket.blob("flaky.bin").download_as_bytes(retry=None)
    assert bucket.blob("flaky.bin").download_as_bytes() == b"flaky"  # dropped once more, then retried
    stats = proxy.stats()
    assert (stats["dropped"], stats["calls"], stats["forwarded"]) == (2, 3, 1)


def test_download_cut_mid_body_is_an_incomplete_read(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    data = os.urandom(MIB)
    bucket.blob("cut.bin").upload_from_string(data)
    proxy.configure(faults={"p_drop_mid": 1.0, "max_faults": 1})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _ = requests.get(object_url(proxy.url, bucket.name, "cut.bin"), params={"alt": "media"}, timeout=10).content
    assert proxy.stats()["dropped_mid"] == 1


def test_library_default_retry_completes_a_download_cut_mid_body(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    data = os.urandom(MIB)
    bucket.blob("cut.bin").upload_from_string(data)
    proxy.configure(faults={"p_drop_mid": 1.0, "max_faults": 1})
    assert bucket.blob("cut.bin").download_as_bytes() == data
    assert proxy.stats()["dropped_mid"] == 1


def test_control_endpoint_reconfigures_the_proxy_from_another_client(bucket: storage.Bucket, proxy: GcsProxy) -> None:
    bucket.blob("ctl.json").upload_from_string(b"{}")
    control = GcsProxyControl(proxy.url)
    config = control.configure(faults={"p_503": 1.0}, write_rate=0.5)
    assert (config["faults"]["p_503"], config["write_rate"], config["write_burst"]) == (1.0, 0.5, 2)
    with pytest.raises(exceptions.ServiceUnavailable):
        bucket.get_blob("ctl.json", retry=None)
    assert control.stats()["injected_503"] == 1

    with pytest.raises(requests.HTTPError) as refused:
        control.configure(faults={"p_503": 2.0})
    assert refused.value.response.status_code == 400
    assert control.config()["faults"]["p_503"] == 1.0  # all or nothing

    assert control.reset()["injected_503"] == 0
    control.configure(faults={"p_503": 0.0})
    assert bucket.get_blob("ctl.json", retry=None).size == 2


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_proxy_process_streams_64_mib_without_holding_it(gcs: str, tmp_path: Path) -> None:
    """Through ``python -m opus_local.gcs_proxy``, a chunked 64 MiB upload and its download: the
    proxy's peak RSS (VmHWM) grows by a small fraction of the object (buffering the body whole grows
    it by the whole 64 MiB)."""
    process = gcs_proxy.start_process(gcs, tmp_path / "proxy.log", args=("--no-write-limit",))
    try:
        base = f"http://127.0.0.1:{process.port}"
        bucket = f"stream-{uuid.uuid4().hex[:8]}"
        assert requests.post(f"{base}/storage/v1/b", params={"project": "p"}, json={"name": bucket}, timeout=10).ok
        before = _vm_hwm_kib(process.popen.pid)  # listening, one call served
        piece, sent, received = os.urandom(MIB), hashlib.sha256(), hashlib.sha256()

        def body() -> Iterator[bytes]:
            for n in range(64):
                chunk = piece[n:] + piece[:n]
                sent.update(chunk)
                yield chunk

        params = {"uploadType": "media", "name": "large.bin"}
        upload = f"{base}/upload/storage/v1/b/{bucket}/o"
        assert requests.post(upload, params=params, data=body(), timeout=60).status_code == 200
        media = object_url(base, bucket, "large.bin")
        with requests.get(media, params={"alt": "media"}, stream=True, timeout=60) as download:
            assert download.headers["Content-Length"] == str(64 * MIB)
            for chunk in download.iter_content(MIB):
                received.update(chunk)
        assert received.hexdigest() == sent.hexdigest()

        grown_mib = (_vm_hwm_kib(process.popen.pid) - before) / 1024
        assert grown_mib < 8, f"the proxy's peak RSS grew by {grown_mib:.1f} MiB for a 64 MiB object"
        assert GcsProxyControl(base).stats()["max_buffered"] <= gcs_proxy.PIECE
    finally:
        process.stop()
    assert process.popen.returncode == 0  # SIGTERM: a clean stop


def test_stop_ends_open_connections_and_their_threads(gcs: str) -> None:
    before = set(threading.enumerate())
    proxy = GcsProxy(gcs).start()
    url = proxy.url
    session = requests.Session()
    assert session.get(f"{url}/storage/v1/b", params={"project": "p"}, timeout=10).ok  # stays open, idle

    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/storage/v1/b", params={"project": "p"}, timeout=2)
    session.close()


def test_unreachable_upstream_answers_502() -> None:
    with GcsProxy(f"http://127.0.0.1:{emulators.free_port()}") as proxy:
        answer = requests.get(f"{proxy.url}/storage/v1/b/any/o/thing.json", timeout=10)
        assert answer.status_code == 502
        assert answer.json()["error"]["errors"][0]["reason"] == "backendError"
        assert proxy.stats()["upstream_errors"] == 1


@pytest.fixture
def media_host() -> Iterator[tuple[str, bytes, list[str]]]:
    """A real HTTP server on loopback standing in for OpusClip's media host: its URL, the clip it
    serves, and the paths it was asked for."""
    import http.server

    clip, asked = os.urandom(300 * 1024), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(clip)))
            self.end_headers()
            self.wfile.write(clip)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", clip, asked
    finally:
        server.shutdown()


@pytest.mark.parametrize("fault", ["p_drop_mid", "p_drop", "p_503"])
def test_a_clip_whose_upload_meets_a_storage_fault_is_copied_byte_exact_and_fetched_once(
    bucket: storage.Bucket, proxy: GcsProxy, media_host: tuple[str, bytes, list[str]], fault: str
) -> None:
    from opus_pipeline.opus.clip_download import copy_clip

    url, clip, asked = media_host
    proxy.configure(faults={fault: 1.0, "max_faults": 1, "kinds": ["write"], "prefix": "clips/"})

    copied = copy_clip(
        requests.Session(), f"{url}/clip.mp4", ("127.0.0.1:" + url.rsplit(":", 1)[1],), bucket.blob("clips/a.mp4")
    )

    assert bucket.blob("clips/a.mp4").download_as_bytes() == clip and copied.size == len(clip)
    assert asked == ["/clip.mp4"]


@pytest.mark.parametrize("fault", ["p_503", "p_drop", "p_drop_mid"], ids=["503", "dropped", "cut-part-way"])
def test_a_source_range_that_storage_fails_twice_is_read_again_not_failed(
    bucket: storage.Bucket, proxy: GcsProxy, fault: str
) -> None:
    """A range failed under a running upload request would interrupt it, and the request be sent
    again. An answer cut part way fails inside urllib3's read (its ``ProtocolError``, not a requests
    error); escaping as that, it would even be taken for the upload request's own failure."""
    from opus_pipeline.domain.events import storage_object
    from opus_pipeline.gcs.source import SourceObject, read_session

    data = os.urandom(MIB)
    blob = bucket.blob("video.mp4")
    blob.upload_from_string(data)
    blob.reload()
    resource = {"bucket": bucket.name, "name": blob.name, "generation": str(blob.generation), "size": str(blob.size)}
    source = SourceObject(bucket.client, read_session(), storage_object(resource), int(blob.generation))
    source.read_range(0, 15)  # the media link is looked up before the faults begin
    proxy.configure(faults={fault: 1.0, "max_faults": 2, "kinds": ["read"]})

    view = memoryview(bytearray(4096))
    source.read_into(4096, view)

    stats = proxy.stats()
    assert bytes(view) == data[4096:8192]
    assert stats["injected_503"] + stats["dropped"] + stats["dropped_mid"] == 2
