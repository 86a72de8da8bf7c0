"""opus-pipeline upload / status / retry against the emulators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.errors import TransientError
from opus_pipeline.usecases.create_project import handle_clip_request
from opus_pipeline.usecases.sweep import sweep

from conftest import Stack, md5_b64
from support import CAP_BODY, ingest, record, services, uploaded, video


@pytest.fixture(autouse=True)
def cli_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_BUCKET", stack.state_bucket)
    monkeypatch.setenv("CLIP_REQUESTS_TOPIC", stack.topic)


def run(stack: Stack, *argv: str) -> int:
    return cli.main(list(argv))


def test_upload_sets_the_validated_metadata(stack: Stack, tmp_path: Path, capsys) -> None:
    path = tmp_path / "talk.mp4"
    path.write_bytes(video(300_000))
    code = run(
        stack,
        "upload",
        str(path),
        f"gs://{stack.source_bucket}/in/",
        "--genre",
        "podcast",
        "--clip-durations",
        "0-30,30-60",
        "--skip-curate",
        "true",
    )
    assert code == 0
    blob = stack.storage.bucket(stack.source_bucket).get_blob("in/talk.mp4")
    assert blob.md5_hash == md5_b64(path.read_bytes()) and blob.content_type == "video/mp4"
    assert blob.metadata == {"opus-genre": "Podcast", "opus-clip-durations": "0-30,30-60", "opus-skip-curate": "true"}
    assert "uploaded gs://" in capsys.readouterr().out


def test_upload_refuses_bad_preferences_before_sending(stack: Stack, tmp_path: Path, capsys) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"x")
    assert run(stack, "upload", str(video), f"gs://{stack.source_bucket}/", "--clip-durations", "15-45") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not offered" in err and "Traceback" not in err
    assert list(stack.storage.list_blobs(stack.source_bucket)) == []


@pytest.mark.parametrize("argv", [["status", "bucket-without-scheme"], ["retry", "gs://b"]])
def test_bad_paths_are_one_clear_line(stack: Stack, capsys, argv: list[str]) -> None:
    assert run(stack, *argv) == 1
    assert capsys.readouterr().err.startswith("opus-pipeline: ")


def test_status_lists_videos_as_a_table_and_as_json(stack: Stack, standin, capsys) -> None:
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource)
    ingest(stack, stack.put("bad.mp4", b"x", metadata={"opus-genre": "Polka"}))
    capsys.readouterr()

    assert run(stack, "status", f"gs://{stack.source_bucket}") == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["OBJECT", "STATUS", "SIZE"]
    assert "queued" in table and "failed" in table

    assert run(stack, "status", f"gs://{stack.source_bucket}/talk", "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (
        row["status"] == "queued"
        and row["size"] == int(resource["size"])
        and row["uploadId"] == record(stack, resource).upload_id
    )


def test_retry_after_the_monthly_cap_meets_the_credit_gate_and_the_sweeper_creates_once(
    stack: Stack, standin, capsys
) -> None:
    _, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 403, "body": CAP_BODY})
    assert handle_clip_request(request, services(stack)) == states.WAITING  # for credits, no longer failed

    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 0
    [message] = stack.pull()
    assert handle_clip_request(ClipRequest.decode(message.message.data), services(stack)) == states.WAITING
    assert standin.stats()["projects"] == {}  # its turn in the credit queue is the sweeper's to give

    assert sweep(services(stack)).admitted_for_credits == 1
    [message] = stack.pull()
    assert handle_clip_request(ClipRequest.decode(message.message.data), services(stack)) == states.PROJECT_CREATED
    assert standin.calls("upload-links") == 1 and len(standin.stats()["projects"]) == 1

    capsys.readouterr()
    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 1
    assert "nothing to retry" in capsys.readouterr().err
    assert stack.pull() == []


def test_retry_of_a_dead_lettered_clip_request_asks_again(stack: Stack, standin) -> None:
    resource, _ = uploaded(stack)  # its clip request was pulled and never answered
    assert record(stack, resource).state == states.QUEUED

    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 0
    [message] = stack.pull()
    assert handle_clip_request(ClipRequest.decode(message.message.data), services(stack)) == states.PROJECT_CREATED
    assert standin.calls("upload-links") == 1


def test_retry_after_fixing_metadata_delivers_the_object_again(stack: Stack, standin, capsys) -> None:
    resource = stack.put("talk.mp4", b"video", metadata={"opus-genre": "Polka"})
    assert ingest(stack, resource) == states.FAILED

    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 1
    assert "fix the object's metadata first" in capsys.readouterr().err

    blob = stack.storage.bucket(stack.source_bucket).get_blob("talk.mp4")
    blob.metadata = {"opus-genre": "Podcast"}
    blob.patch()
    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 0
    live = stack.storage.bucket(stack.source_bucket).get_blob("talk.mp4")
    assert int(live.generation) > int(resource["generation"]) and live.metadata["opus-genre"] == "Podcast"


def test_retry_of_an_abandoned_upload_ends_the_old_record_before_delivering_again(
    stack: Stack, standin, capsys
) -> None:
    standin.inject({"endpoint": "chunk", "kind": "status", "status": 503, "times": 1000, "skip": 1})
    standin.inject({"endpoint": "query", "kind": "status", "status": 503, "times": 1000})
    resource = stack.put("talk.mp4", video(6 * 256 * 1024))  # two requests: the first kept, then refusals
    with pytest.raises(TransientError):
        ingest(stack, resource, UPLOAD_DEADLINE_SECONDS="1")
    assert record(stack, resource).state == "uploading"

    assert run(stack, "retry", f"gs://{stack.source_bucket}/talk.mp4") == 0

    old = record(stack, resource)
    assert old.state == "failed" and old.reason == "re-driven"
    assert ingest(stack, resource) == "failed"  # the old event's redelivery streams nothing more


# -- names from outside never reach the terminal as escapes ----------------------------------

ESCAPING = "clear\x1b[2J\x1b]0;owned\x07\u202e4pm.mp4"  # clears the screen, retitles it, flips the text


def test_status_prints_control_characters_of_names_as_escapes(stack: Stack, standin, capsys) -> None:
    ingest(stack, stack.put(ESCAPING, video_bytes(smallest_video())))
    capsys.readouterr()

    assert run(stack, "status", f"gs://{stack.source_bucket}") == 0

    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07\\u202e" in out


def test_upload_and_retry_print_control_characters_of_names_as_escapes(stack: Stack, tmp_path: Path, capsys) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(video_bytes(smallest_video()))

    assert run(stack, "upload", str(video), f"gs://{stack.source_bucket}/{ESCAPING}") == 0
    run(stack, "retry", f"gs://{stack.source_bucket}/{ESCAPING}")

    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2J" in captured.out and "\\x1b[2J" in captured.err
