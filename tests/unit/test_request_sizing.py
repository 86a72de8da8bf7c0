"""One request per attempt, pure: how long each session request is, and the two buffers every
stream of a prefetcher reads into, however often it restarts."""

from __future__ import annotations

import threading
import time

from opus_pipeline.gcs.source import Prefetcher
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS, PUT_SECONDS, put_length

from conftest import CHUNK

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
