"""create_clip_project: once per upload, OpusClip's error semantics, status for people."""

from __future__ import annotations

import base64
import json
import time

import main
import pytest
import requests
from cloudevents.http import CloudEvent

from opus_pipeline.domain import states
from opus_pipeline.domain.webhook import registered_url
from opus_pipeline.errors import TransientError
from opus_pipeline.usecases.create_project import handle_clip_request

from conftest import API_KEY, Stack, deliver_concurrently
from support import CAP_BODY, create, live_metadata, record, services, uploaded


def projects(standin) -> list[dict]:
    return list(standin.stats()["projects"].values())


def test_creates_the_project_and_shows_it_on_the_object(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)

    assert create(stack, request) == states.PROJECT_CREATED

    [project] = projects(standin)
    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.project_id == project["id"] and rec.stage == "QUEUED"
    metadata = live_metadata(stack, "talk.mp4")
    assert metadata["opus-status"] == "project-created" and metadata["opus-project-id"] == project["id"]
    assert project["request"]["videoUrl"] == request.upload_id


def test_request_merges_video_preferences_over_defaults_and_adds_notifications(stack: Stack, standin) -> None:
    _, request = uploaded(stack, {"opus-genre": "Vlog", "opus-range": "1-2"})  # within the 2-second video
    create(
        stack,
        request,
        OPUS_DEFAULT_GENRE="Podcast",
        OPUS_DEFAULT_SOURCE_LANG="en",
        OPUS_DEFAULT_BRAND_TEMPLATE_ID="preset-fancy-Karaoke",
        OPUS_NOTIFY_EMAIL="me@example.com",
        OPUS_WEBHOOK_URL="https://hooks.example.com/opus",
        OPUS_WEBHOOK_TOKEN="t0ken-" + "0123456789abcdef",
    )
    hook = registered_url("https://hooks.example.com/opus", "t0ken-0123456789abcdef", request.source.key)
    [project] = projects(standin)
    assert project["request"] == {
        "videoUrl": request.upload_id,
        "curationPref": {"genre": "Vlog", "range": {"startSec": 1, "endSec": 2}, "clipDurations": [[0, 90]]},
        "importPref": {"sourceLang": "en"},
        "brandTemplateId": "preset-fancy-Karaoke",
        "uploadedVideoAttr": {"title": "talk"},
        "conclusionActions": [
            {"type": "EMAIL", "notifyFailure": True, "email": "me@example.com"},
            {"type": "WEBHOOK", "notifyFailure": True, "url": hook},
        ],
    }


def test_without_preferences_the_request_carries_clip_durations_and_the_file_name_as_title(
    stack: Stack, standin
) -> None:
    """OpusClip refuses a project without curationPref.clipDurations (its own client says so): the
    documented default is sent; every other unset preference is omitted, never sent as null."""
    _, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    assert projects(standin)[0]["request"] == {
        "videoUrl": request.upload_id,
        "curationPref": {"clipDurations": [[0, 90]]},
        "uploadedVideoAttr": {"title": "talk"},
    }


def test_same_message_three_times_creates_one_project(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    assert [create(stack, request) for _ in range(3)] == [states.PROJECT_CREATED] * 3
    assert len(projects(standin)) == 1 and standin.calls("clip-projects") == 1


def test_concurrent_duplicates_create_one_project(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "slow", "seconds": 0.5})
    outcomes = deliver_concurrently(lambda: create(stack, request))
    assert outcomes.count(states.PROJECT_CREATED) >= 1
    assert len(projects(standin)) == 1 and standin.calls("clip-projects") == 1


@pytest.mark.parametrize(
    ("status", "body", "reason", "words"),
    [
        (400, {"message": "videoUrl is not a finished upload"}, "opus-rejected", "videoUrl is not a finished upload"),
        (401, {"message": "Unauthorized"}, "api-key-refused", "check the secret"),
        (403, {"message": "Forbidden"}, "api-key-refused", "check the secret"),
        (402, {"message": "Payment Required"}, "insufficient-credits", "insufficient credits"),
    ],
)
def test_permanent_answers_fail_the_video_and_are_acknowledged(
    stack: Stack, standin, capsys, status: int, body: dict, reason: str, words: str
) -> None:
    resource, request = uploaded(stack)
    capsys.readouterr()
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": status, "body": body})

    assert create(stack, request) == states.FAILED

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == reason and words in rec.error
    assert live_metadata(stack, "talk.mp4")["opus-status"] == "failed"
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"ERROR"' in x]
    assert words in line["message"] and line["reason"] == reason
    assert create(stack, request) == states.FAILED  # redelivery does not loop on OpusClip
    assert standin.calls("clip-projects") == 1


def test_monthly_cap_records_when_it_resets(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 403, "body": CAP_BODY})
    create(stack, request)
    assert record(stack, resource).reset_at == "2026-12-01T00:00:00Z"


def test_short_retry_after_is_honoured_within_the_delivery(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 429, "headers": {"Retry-After": "2"}})
    svc = services(stack)
    slept: list[float] = []
    svc.sleep = slept.append
    assert handle_clip_request(request, svc) == states.PROJECT_CREATED
    assert slept == [2.0] and len(projects(standin)) == 1


def test_a_long_rate_limit_is_redelivered_and_releases_the_claim(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 429, "headers": {"Retry-After": "120"}})
    with pytest.raises(TransientError):
        create(stack, request)
    assert record(stack, resource).state == states.QUEUED and record(stack, resource).create_sent_at is None
    assert create(stack, request) == states.PROJECT_CREATED
    assert len(projects(standin)) == 1


@pytest.mark.parametrize("status", [503, 500])
def test_a_5xx_to_the_create_call_is_looked_up_before_the_video_is_created_again(
    stack: Stack, standin, status: int
) -> None:
    """A 5xx may come from a proxy after OpusClip acted: the redelivery looks in the project list
    first, and creates again only once the grace (1 s locally) has passed with nothing listed."""
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": status})
    with pytest.raises(TransientError):
        create(stack, request)
    assert record(stack, resource).state == states.CREATING and record(stack, resource).create_attempts == 1
    time.sleep(1.1)
    assert create(stack, request) == states.PROJECT_CREATED
    assert len(projects(standin)) == 1 and standin.calls("project-list") == 1
    assert record(stack, resource).create_attempts == 2


def test_unreachable_opusclip_is_transient(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    with pytest.raises(TransientError, match="network error"):
        create(stack, request, OPUS_API_BASE_URL="http://127.0.0.1:9")


def test_invalid_notification_email_is_caught_before_sending(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    assert create(stack, request, OPUS_NOTIFY_EMAIL="not-an-email") == states.FAILED
    rec = record(stack, resource)
    assert rec.reason == "invalid-request" and "conclusionActions.0.email" in rec.error
    assert standin.calls("clip-projects") == 0


def _event(data: object) -> CloudEvent:
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/test"},
        data,
    )


def _message(payload: bytes) -> dict:
    return {"message": {"data": base64.b64encode(payload).decode(), "messageId": "1"}, "subscription": "s"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"message": {"data": "%%% not base64 %%%"}}, "not base64"),
        ({"subscription": "s"}, "no Pub/Sub message data"),
        (_message(b"\xff\xfe"), "not UTF-8 JSON"),
        (_message(b"[1, 2]"), "not a JSON object"),
        (_message(json.dumps({"schemaVersion": 2, "uploadId": "u"}).encode()), "unknown schemaVersion 2"),
        (_message(json.dumps({"schemaVersion": 1}).encode()), "uploadId is missing"),
        (
            _message(
                json.dumps(
                    {
                        "schemaVersion": 1,
                        "uploadId": "u",
                        "uploadedAt": "t",
                        "preferences": {},
                        "source": {"bucket": "b", "name": "n", "generation": 5, "size": 1},
                    }
                ).encode()
            ),
            "source.generation",
        ),
        (
            _message(
                json.dumps(
                    {
                        "schemaVersion": 1,
                        "uploadId": "u",
                        "uploadedAt": "t",
                        "preferences": {"genre": "Polka"},
                        "source": {"bucket": "b", "name": "n", "generation": "5", "size": 1},
                    }
                ).encode()
            ),
            "preferences",
        ),
    ],
)
def test_poison_messages_are_logged_and_acknowledged(stack: Stack, standin, capsys, monkeypatch, data, words) -> None:
    main.services.cache_clear()
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    assert main.create_clip_project(_event(data)) is None
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["severity"] == "ERROR" and words in line["message"] and line["event"] == "poison_message"
    assert standin.calls("clip-projects") == 0
    main.services.cache_clear()


def test_the_key_never_reaches_the_logs(stack: Stack, standin, capfd) -> None:
    _, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 401, "body": {"message": "bad key"}})
    create(stack, request)
    out, err = capfd.readouterr()
    assert API_KEY not in out + err


def test_the_created_project_can_be_read_back_from_the_standin(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    create(stack, request)
    [project] = projects(standin)
    url = f"{standin.base_url}/api/clip-projects/{project['id']}"
    assert requests.get(url, timeout=10).status_code == 401
    answer = requests.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()
    assert answer["stage"] == "QUEUED" and answer["sourceId"] == request.upload_id
