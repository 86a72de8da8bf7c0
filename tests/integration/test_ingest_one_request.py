"""One request per attempt: the video streams in as few session PUTs as the deadline allows, an
interrupted one resumes where the session says, and two buffers serve every stream."""

from __future__ import annotations

import threading
import time

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.errors import TransientError
from opus_pipeline.gcs.source import Prefetcher
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS, PUT_SECONDS, put_length

from conftest import CHUNK, Stack, md5_hex
from support import ingest, only_upload, record

MIB = 1024 * 1024

# -- how long each request is (pure) ----------------------------------------------------------


def test_the_first_request_is_a_few_chunks_while_no_throughput_is_known() -> None:
    assert put_length(0, 100 * CHUNK, CHUNK, None, 480) == FIRST_PUT_CHUNKS * CHUNK


def test_a_request_never_goes_past_the_end_of_the_upload() -> None:
    assert put_length(0, 3 * CHUNK + 5, CHUNK, None, 480) == 3 * CHUNK + 5
    assert put_length(CHUNK, 100 * CHUNK, CHUNK, float("inf"), 480) == 99 * CHUNK


def test_a_request_lasts_at_most_put_seconds_at_the_measured_throughput() -> None:
    rate = 10 * CHUNK  # bytes per second
    assert put_length(0, 10_000 * CHUNK, CHUNK, rate, 480) == int(rate * PUT_SECONDS)


def test_a_request_ends_before_the_attempts_deadline_at_the_measured_throughput() -> None:
    assert put_length(0, 10_000 * CHUNK, CHUNK, 10 * CHUNK, 2.55) == 25 * CHUNK  # whole chunks, rounded down


def test_a_request_carries_at_least_one_chunk_however_little_time_is_left() -> None:
    assert put_length(0, 10 * CHUNK, CHUNK, 1.0, 0.001) == CHUNK


# -- on the wire -------------------------------------------------------------------------------


def test_a_clean_upload_is_one_request(stack: Stack, standin) -> None:
    data = video_bytes(3 * CHUNK + 1000)
    assert ingest(stack, stack.put("talk.mp4", data)) == states.QUEUED

    upload = only_upload(standin)
    assert upload["puts"] == [[0, len(data) - 1]]
    assert upload["md5"] == md5_hex(data)
    assert standin.calls("query") == 0


def test_a_longer_video_sends_a_first_request_of_a_few_chunks_then_the_rest_in_one(stack: Stack, standin) -> None:
    data = video_bytes(10 * CHUNK + 5)
    assert ingest(stack, stack.put("talk.mp4", data)) == states.QUEUED

    first = FIRST_PUT_CHUNKS * CHUNK
    assert only_upload(standin)["puts"] == [[0, first - 1], [first, len(data) - 1]]


def test_an_interrupted_request_resumes_at_the_byte_the_session_confirmed(stack: Stack, standin) -> None:
    data = video_bytes(4 * CHUNK)
    standin.inject({"endpoint": "chunk", "kind": "drop", "after_bytes": 2 * CHUNK + 1000, "keep_received": True})
    assert ingest(stack, stack.put("talk.mp4", data)) == states.QUEUED

    upload = only_upload(standin)
    assert upload["puts"] == [[0, len(data) - 1], [2 * CHUNK, len(data) - 1]]
    assert standin.calls("query") == 1  # asked where it stood before sending again
    assert standin.stats()["bytesReceived"] == len(data) + 1000  # only what it had not kept
    assert upload["md5"] == md5_hex(data)


def test_an_interrupted_request_the_session_kept_nothing_of_is_sent_again_whole(stack: Stack, standin) -> None:
    data = video_bytes(4 * CHUNK)
    standin.inject({"endpoint": "chunk", "kind": "drop", "after_bytes": 3 * CHUNK})
    assert ingest(stack, stack.put("talk.mp4", data)) == states.QUEUED

    assert only_upload(standin)["puts"] == [[0, len(data) - 1], [0, len(data) - 1]]
    assert standin.stats()["bytesReceived"] == len(data) + 3 * CHUNK  # at most one request re-sent


def test_a_request_is_sized_to_end_before_the_attempts_deadline(stack: Stack, standin) -> None:
    rate, deadline = 2 * MIB, 3
    standin.model_link(0.0, rate)
    data = video_bytes(32 * CHUNK)  # 8 MiB: 4 s at 2 MiB/s, more than the attempt has
    resource = stack.put("talk.mp4", data)

    with pytest.raises(TransientError, match="resumes there"):
        ingest(stack, resource, UPLOAD_DEADLINE_SECONDS=str(deadline))

    first, *later = only_upload(standin)["puts"]
    assert first == [0, FIRST_PUT_CHUNKS * CHUNK - 1]
    assert later, "a second request, sized to what the attempt had left"
    assert all(last - start + 1 <= rate * deadline for start, last in later)  # not the 7 MiB left
    assert record(stack, resource).state == states.UPLOADING

    standin.model_link(None, None)
    assert ingest(stack, resource) == states.QUEUED
    assert only_upload(standin)["md5"] == md5_hex(data)


# -- memory: the same two buffers across interruptions ------------------------------------------


def test_every_stream_of_a_prefetcher_reads_into_the_same_two_buffers() -> None:
    def pattern(offset: int, view: memoryview) -> None:
        view[:] = bytes((offset + i) % 251 for i in range(len(view)))

    prefetcher = Prefetcher(pattern, 0, 40, 4)
    seen = {id(view.obj) for _, view in prefetcher}
    for start in (8, 0, 20):
        chunks = [(offset, bytes(view), id(view.obj)) for offset, view in prefetcher.restart(start)]
        assert b"".join(data for _, data, _ in chunks) == bytes(i % 251 for i in range(start, 40))
        seen |= {buffer for _, _, buffer in chunks}
    prefetcher.close()
    assert seen == {id(buffer.obj) for buffer in prefetcher.buffers} and len(seen) == 2


def test_a_restart_waits_for_a_read_in_flight_before_reusing_its_buffer() -> None:
    stuck = threading.Event()
    writes: list[tuple[int, int]] = []  # (buffer, offset) of every read, when it ended

    def read(offset: int, view: memoryview) -> None:
        if offset == 4 and not stuck.is_set():
            stuck.wait(5)  # the interrupted stream's read-ahead, stuck in a slow read
        view[:] = bytes([offset % 256]) * len(view)
        writes.append((id(view.obj), offset))

    prefetcher = Prefetcher(read, 0, 16, 4)
    chunks = iter(prefetcher)
    next(chunks)  # the request in flight holds chunk 0; the reader is stuck reading chunk 4
    restarted: list[list[tuple[int, bytes]]] = []
    restart = threading.Thread(
        target=lambda: restarted.append([(o, bytes(v)) for o, v in prefetcher.restart(8)]), daemon=True
    )
    restart.start()
    time.sleep(0.3)
    assert not restarted, "the new stream started while the old read still wrote a buffer"
    stuck.set()
    restart.join(timeout=10)

    assert restarted == [[(8, bytes([8]) * 4), (12, bytes([12]) * 4)]]
    assert {buffer for buffer, _ in writes} == {id(b.obj) for b in prefetcher.buffers}
