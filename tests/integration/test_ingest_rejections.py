"""Bad input gets a clear reason, a visible status, and costs no upload."""

from __future__ import annotations

import gzip
import json
import threading

import pytest

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline.domain import states
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS

from conftest import API_KEY, CHUNK, Stack, object_resource
from support import ingest, live_metadata, record, video, wait_for


def assert_failed_before_any_byte(stack: Stack, standin, resource: dict, reason: str) -> str:
    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == reason
    assert standin.stats()["bytesReceived"] == 0
    assert stack.pull() == []
    metadata = live_metadata(stack, resource["name"])
    assert metadata["opus-status"] == "failed" and metadata["opus-error"] == rec.error
    return rec.error


def error_lines(capsys) -> list[dict]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["severity"] == "ERROR"]


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"opus-genre": "Podcasts"}, "is not a genre"),
        ({"opus-clip-durations": "15-45"}, "is not offered"),
        ({"opus-clip-durations": "0-181"}, "is not offered"),
        ({"opus-range": "600-30"}, "START must be less than END"),
        ({"opus-range": "ten-20"}, "START-END"),
        ({"opus-source-lang": "English"}, "ISO-639"),
        ({"opus-skip-curate": "yes"}, "'true' or 'false'"),
        ({"opus-topic-keywords": " , "}, "empty"),
        ({"opus-gnere": "Podcast"}, "unknown metadata key 'opus-gnere'"),
    ],
)
def test_bad_metadata_fails_before_any_upload(stack: Stack, standin, capsys, metadata: dict, words: str) -> None:
    resource = stack.put("talk.mp4", video(CHUNK), metadata=metadata)

    assert ingest(stack, resource) == states.FAILED

    error = assert_failed_before_any_byte(stack, standin, resource, "bad-metadata")
    assert words in error
    assert standin.calls("upload-links") == 0
    [line] = error_lines(capsys)
    assert words in line["message"] and "opus-pipeline retry" in line["message"]
    assert line["reason"] == "bad-metadata" and line["event"] == "video_failed"


def test_zero_byte_video_fails(stack: Stack, standin) -> None:
    resource = stack.put("empty.mp4", b"")
    assert ingest(stack, resource) == states.FAILED
    assert "empty" in assert_failed_before_any_byte(stack, standin, resource, "empty")


def test_video_over_max_bytes_fails(stack: Stack, standin) -> None:
    resource = stack.put("big.mp4", video())
    assert ingest(stack, resource, MAX_VIDEO_BYTES="1000") == states.FAILED
    assert "MAX_VIDEO_BYTES" in assert_failed_before_any_byte(stack, standin, resource, "too-big")


def test_video_over_remaining_quota_fails(stack: Stack, standin) -> None:
    standin.set_quota(total_amount=10_000, use_amount=9_000)
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.FAILED
    error = assert_failed_before_any_byte(stack, standin, resource, "quota")
    assert "1000 bytes left" in error and standin.calls("start") == 0


@pytest.mark.parametrize(
    ("status", "body", "reason", "words"),
    [
        (400, {"message": "bad usecase"}, "opus-rejected", "bad usecase"),
        (401, {"message": "Unauthorized"}, "api-key-refused", "check the secret"),
        (402, {"message": "no credits"}, "insufficient-credits", "insufficient credits"),
        (403, {"message": "Forbidden"}, "api-key-refused", "check the secret"),
    ],  # a monthly-cap 403 makes the video wait (tests/integration/test_credit_gate.py)
)
def test_permanent_opus_answers_fail_the_video(
    stack: Stack, standin, status: int, body: dict, reason: str, words: str
) -> None:
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": status, "body": body})
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.FAILED
    assert words in assert_failed_before_any_byte(stack, standin, resource, reason)
    assert ingest(stack, resource) == states.FAILED  # a duplicate event does not retry in a loop
    assert standin.calls("upload-links") == 1


def test_wrong_api_key_is_refused_by_the_standin(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource, OPUS_API_KEY="sk-wrong-key-123") == states.FAILED
    assert "check the secret" in assert_failed_before_any_byte(stack, standin, resource, "api-key-refused")


def test_upload_link_to_unlisted_host_is_refused(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource, OPUS_UPLOAD_URL_HOSTS="storage.googleapis.com") == states.FAILED
    error = assert_failed_before_any_byte(stack, standin, resource, "refused-host")
    assert "upload-link url" in error and standin.calls("start") == 0


def test_session_location_on_unlisted_host_is_refused(stack: Stack, standin) -> None:
    standin.inject(
        {
            "endpoint": "start",
            "kind": "status",
            "status": 201,
            "headers": {"Location": "https://uploads.example.net/session/abc"},
        }
    )
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.FAILED
    error = assert_failed_before_any_byte(stack, standin, resource, "refused-host")
    assert "Location" in error and "abc" not in error


@pytest.mark.parametrize(
    ("name", "content_type", "extra"),
    [
        ("notes.txt", "text/plain", {}),
        ("photo.jpg", "image/jpeg", {}),
        ("elsewhere/talk.mp4", "video/mp4", {"SOURCE_PREFIX": "incoming/"}),
    ],
)
def test_non_videos_and_objects_outside_the_prefix_are_skipped(
    stack: Stack, standin, capsys, name: str, content_type: str, extra: dict
) -> None:
    resource = stack.put(name, b"hello", content_type=content_type)
    assert ingest(stack, resource, **extra) == states.SKIPPED
    assert record(stack, resource) is None and standin.stats()["calls"] == {}
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["severity"] for x in lines] == ["INFO"] and lines[0]["event"] == "video_skipped"
    status = live_metadata(stack, name).get("opus-status")
    assert status == ("skipped" if "SOURCE_PREFIX" not in extra else None)


def test_folder_placeholder_is_skipped(stack: Stack, standin) -> None:
    resource = {"bucket": stack.source_bucket, "name": "incoming/", "generation": "1", "size": "0"}
    assert ingest(stack, resource) == states.SKIPPED


def test_video_by_extension_without_video_content_type_is_ingested(stack: Stack, standin) -> None:
    resource = stack.put("clip.MOV", video(), content_type="application/octet-stream")
    assert ingest(stack, resource) == states.QUEUED


def test_overwritten_while_streaming_is_superseded(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "chunk", "kind": "slow", "seconds": 0.5, "times": 1})
    # longer than the first request: its end is read after that request's answer, after the overwrite
    resource = stack.put("talk.mp4", video((FIRST_PUT_CHUNKS + 4) * CHUNK))

    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(ingest(stack, resource)))
    worker.start()
    wait_for(lambda: standin.calls("chunk") > 0, timeout=30)
    newer = stack.put("talk.mp4", video(4 * CHUNK))
    worker.join()

    assert result == [states.SUPERSEDED]
    assert record(stack, resource).state == states.SUPERSEDED
    assert stack.pull() == []
    assert live_metadata(stack, "talk.mp4").get("opus-status") != "failed"
    assert ingest(stack, newer) == states.QUEUED  # the newer upload's own event


def test_the_key_and_session_url_never_reach_logs_or_records(stack: Stack, standin, capfd) -> None:
    standin.inject(
        {"endpoint": "chunk", "kind": "drop", "after_bytes": 10},
        {"endpoint": "chunk", "kind": "status", "status": 503, "times": 2},
    )
    resource = stack.put("talk.mp4", video(3 * CHUNK), metadata={"opus-genre": "Nope"})
    ingest(stack, resource)
    good = stack.put("good.mp4", video(3 * CHUNK))
    ingest(stack, good)
    assert record(stack, good).state == states.QUEUED and standin.calls("query") >= 1
    out, err = capfd.readouterr()
    text = out + err
    assert API_KEY not in text
    assert "/session/" not in text  # every session URL of the stand-in has this path
    metadata = json.dumps(live_metadata(stack, "good.mp4"))
    assert API_KEY not in metadata and "/session/" not in metadata


def test_a_gzip_encoded_object_fails_before_any_byte_saying_to_upload_it_uncompressed(stack: Stack, standin) -> None:
    blob = stack.storage.bucket(stack.source_bucket).blob("talk.mp4")
    blob.content_encoding = "gzip"  # what `gcloud storage cp -Z` stores
    blob.upload_from_string(gzip.compress(video_bytes(smallest_video())), content_type="video/mp4")
    resource = object_resource(blob)

    assert ingest(stack, resource) == states.FAILED

    error = assert_failed_before_any_byte(stack, standin, resource, "gzip-encoded")
    assert "without compression" in error and "-Z" in error
    assert standin.calls("upload-links") == 0
