"""One request per attempt: the video streams in as few session PUTs as the deadline allows, an
interrupted one resumes where the session says, and two buffers serve every stream."""

from __future__ import annotations

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.errors import TransientError
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS

from conftest import CHUNK, Stack, md5_hex
from support import ingest, only_upload, record

MIB = 1024 * 1024

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
