"""A create call that spends credits is never sent again blind: whatever OpusClip answered after it
made the project (nothing, a 502, a garbled or empty 200, odd headers, a failing call after it), the
video ends with one project, found in OpusClip's project list when the answer did not name it."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from opus_pipeline.domain import states
from opus_pipeline.domain.creation import MAX_CREATE_ATTEMPTS, UNCONFIRMED
from opus_pipeline.domain.webhook import registered_url
from opus_pipeline.errors import TransientError
from opus_pipeline.usecases.conclude import handle_webhook
from opus_pipeline.usecases.sweep import look_at, sweep

from conftest import API_KEY, Stack
from support import create, record, services, uploaded, wait_for

LATER = 24 * 3600.0


def after_create(standin, kind: str, **fault) -> None:
    """The next create call is acted on (the project made, its credits spent), then its answer spoiled."""
    standin.inject({"endpoint": "clip-projects", "kind": kind, "after": True, **fault})


def create_until_settled(stack: Stack, request, attempts: int = 5) -> str:
    """Deliver the clip request as Pub/Sub would redeliver it, until a delivery is acknowledged."""
    for _ in range(attempts):
        try:
            return create(stack, request)
        except TransientError:
            time.sleep(0.3)
    raise AssertionError("the clip request was never acknowledged")


def projects_of(standin, upload_id: str) -> list[dict]:
    return [item for item in standin.project_list(API_KEY) if item["sourceId"] == upload_id]


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=2, clipBytes=300_000)


def test_a_video_whose_create_answer_was_lost_ends_clips_ready_with_one_project(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    after_create(standin, "drop")

    with pytest.raises(TransientError):
        create(stack, request)
    rec = record(stack, resource)
    assert rec.state == states.CREATING and rec.create_sent_at is not None and rec.project_id is None

    assert create(stack, request) == states.PROJECT_CREATED  # found in the project list, adopted
    [project] = projects_of(standin, request.upload_id)
    assert record(stack, resource).project_id == project["projectId"]
    assert standin.calls("clip-projects") == 1

    wait_for(lambda: standin.project(project["projectId"])["stage"] == "COMPLETE", timeout=30)
    svc = services(stack)
    svc.wall = lambda: time.time() + LATER
    sweep(svc)
    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.clip_count == 2
    assert len(projects_of(standin, request.upload_id)) == 1


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("status", {"status": 502, "body": {"message": "Bad Gateway"}}),
        ("status", {"status": 200}),  # an empty body
        ("garble", {}),
    ],
    ids=["502-after-create", "empty-200", "garbled-200"],
)
def test_an_answer_that_does_not_name_the_project_ends_with_one_project(
    stack: Stack, standin, kind: str, fault: dict
) -> None:
    resource, request = uploaded(stack)
    after_create(standin, kind, **fault)

    assert create_until_settled(stack, request) == states.PROJECT_CREATED

    [project] = projects_of(standin, request.upload_id)
    assert record(stack, resource).project_id == project["projectId"] and standin.calls("clip-projects") == 1


@pytest.mark.parametrize("reset", ["1796083200000", "soon", "-5", "1e400"], ids=["ms", "garbage", "negative", "inf"])
def test_a_200_with_an_odd_rate_limit_reset_creates_one_project(stack: Stack, standin, reset: str) -> None:
    resource, request = uploaded(stack)
    headers = {"X-RateLimit-Limit": "900", "X-RateLimit-Remaining": "880", "X-RateLimit-Reset": reset}
    after_create(standin, "stamp", headers=headers)

    assert create(stack, request) == states.PROJECT_CREATED

    assert len(projects_of(standin, request.upload_id)) == 1 and standin.calls("clip-projects") == 1
    assert record(stack, resource).create_sent_at is None


def test_a_failing_usage_lookup_creates_nothing_until_it_answers_then_one_project(stack: Stack, standin) -> None:
    """An uncapped workspace stamps no usage headers, so a budget makes the pipeline ask api-usage: the
    credit gate asks before the create call (and the settlement after it is served the same answer),
    so a 503 there sends nothing, and the redelivery creates the one project."""
    standin.configure(monthlyCreditLimit=None)
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "api-usage", "kind": "status", "status": 503, "times": 20})
    overrides = {"OPUS_MONTHLY_CREDIT_BUDGET": "1000"}

    with pytest.raises(TransientError):
        create(stack, request, **overrides)
    assert standin.calls("api-usage") >= 1 and standin.calls("clip-projects") == 0
    standin.clear_faults()

    assert create(stack, request, **overrides) == states.PROJECT_CREATED
    assert len(projects_of(standin, request.upload_id)) == 1 and standin.calls("clip-projects") == 1
    assert record(stack, resource).state == states.PROJECT_CREATED


def test_within_the_grace_a_creation_not_yet_listed_waits_and_creates_nothing(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "drop"})  # dropped before OpusClip acted

    with pytest.raises(TransientError):
        create(stack, request)
    with pytest.raises(TransientError, match="does not list a project"):
        create(stack, request, OPUS_CREATE_GRACE_SECONDS="3600")

    assert standin.calls("clip-projects") == 1 and standin.calls("project-list") == 1
    assert record(stack, resource).state == states.CREATING


def test_past_the_last_attempt_the_video_fails_saying_to_look_in_opusclip(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 504, "times": MAX_CREATE_ATTEMPTS})

    outcome = None
    for _ in range(MAX_CREATE_ATTEMPTS + 1):
        time.sleep(1.05)  # the local grace
        try:
            outcome = create(stack, request)
        except TransientError:
            continue
    assert outcome == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == UNCONFIRMED and "OpusClip's dashboard" in rec.error and "--new-project" in rec.error
    assert standin.calls("clip-projects") == MAX_CREATE_ATTEMPTS and rec.create_attempts == MAX_CREATE_ATTEMPTS


def test_a_webhook_for_a_video_whose_creation_is_ambiguous_adopts_its_project(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    after_create(standin, "drop")
    with pytest.raises(TransientError):
        create(stack, request)

    token, hook = "t0ken-0123456789abcdef", "https://hooks.example.com/opus"
    query = dict(parse_qsl(urlsplit(registered_url(hook, token, request.source.key)).query))
    svc = services(stack, OPUS_WEBHOOK_URL=hook, OPUS_WEBHOOK_TOKEN=token)
    status = handle_webhook(query, {}, lambda: json.dumps({"stage": "COMPLETE"}).encode(), svc)

    assert status == 200 and standin.calls("project-list") == 0  # answered at once: the sweeper looks
    look_at(svc, request.source.key)  # the video tick the receiver published
    [project] = projects_of(standin, request.upload_id)
    assert record(stack, resource).project_id == project["projectId"]


def test_every_create_attempt_and_its_outcome_is_logged_with_the_videos_labels(stack: Stack, standin, capsys) -> None:
    _, request = uploaded(stack)
    capsys.readouterr()
    after_create(standin, "drop")
    create_until_settled(stack, request)

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    events = [(x["event"], x.get("outcome")) for x in lines if x.get("event") in ("create_attempt", "create_outcome")]
    assert events == [("create_attempt", None), ("create_outcome", "ambiguous"), ("create_outcome", "adopted")]
    labels = [x["logging.googleapis.com/labels"] for x in lines if x.get("event") == "create_outcome"]
    assert all(label["object"] == "talk.mp4" and label["uploadId"] == request.upload_id for label in labels)


def test_a_webhook_for_an_ambiguous_video_whose_project_is_not_listed_creates_nothing(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "drop"})  # dropped before OpusClip acted
    with pytest.raises(TransientError):
        create(stack, request)
    time.sleep(1.05)  # past the local grace: a clip request would create again, a webhook never does

    token, hook = "t0ken-0123456789abcdef", "https://hooks.example.com/opus"
    query = dict(parse_qsl(urlsplit(registered_url(hook, token, request.source.key)).query))
    svc = services(stack, OPUS_WEBHOOK_URL=hook, OPUS_WEBHOOK_TOKEN=token)

    assert handle_webhook(query, {}, lambda: b"{}", svc) == 200
    look_at(svc, request.source.key)  # the video tick the receiver published
    assert standin.calls("clip-projects") == 1 and standin.calls("project-list") == 1
    assert record(stack, resource).state == states.CREATING


def projects_made_from(standin, upload_id: str) -> list[dict]:
    """The projects made from the upload, by the create calls' own ``videoUrl`` (whatever their sourceId)."""
    return [p for p in standin.stats()["projects"].values() if p["request"]["videoUrl"] == upload_id]


def test_a_lost_project_whose_source_id_does_not_name_the_upload_is_adopted_by_title_and_time(
    stack: Stack, standin
) -> None:
    standin.configure(sourceIds="opaque")  # the OpenAPI's sourceId: an id of OpusClip's own
    resource, request = uploaded(stack)
    after_create(standin, "drop")

    assert create_until_settled(stack, request) == states.PROJECT_CREATED

    [project] = projects_made_from(standin, request.upload_id)
    assert project["sourceId"] != request.upload_id
    assert record(stack, resource).project_id == project["projectId"] and standin.calls("clip-projects") == 1


def test_a_lost_project_listed_past_the_first_page_is_found(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    resource, request = uploaded(stack)
    after_create(standin, "drop")
    with pytest.raises(TransientError):
        create(stack, request)
    other = standin.upload_video(API_KEY)
    for _ in range(100):  # a busy workspace: a page of projects made since
        standin.create_project(API_KEY, upload_id=other).raise_for_status()

    assert create(stack, request) == states.PROJECT_CREATED

    [project] = projects_made_from(standin, request.upload_id)
    assert record(stack, resource).project_id == project["projectId"] and standin.calls("project-list") == 2


def test_a_refused_project_list_leaves_the_creation_in_doubt_not_failed(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    after_create(standin, "drop")
    with pytest.raises(TransientError):
        create(stack, request)
    standin.inject({"endpoint": "project-list", "kind": "status", "status": 404, "body": {"message": "Not Found"}})

    time.sleep(1.05)  # past the local grace: only the list's answer stands between it and a second call
    with pytest.raises(TransientError, match="refused its project list"):
        create(stack, request)

    rec = record(stack, resource)
    assert rec.state == states.CREATING and rec.create_sent_at is not None and standin.calls("clip-projects") == 1
    assert create(stack, request) == states.PROJECT_CREATED  # the list answers again: adopted
    assert len(projects_made_from(standin, request.upload_id)) == 1


def test_a_create_made_again_after_an_unanswered_one_counts_as_a_possible_second_project(
    stack: Stack, standin, capsys
) -> None:
    _, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "drop"})  # nothing listed: OpusClip did not act
    with pytest.raises(TransientError):
        create(stack, request)
    capsys.readouterr()
    time.sleep(1.05)  # past the local grace

    assert create(stack, request) == states.PROJECT_CREATED

    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    outcomes = [x["outcome"] for x in lines if x.get("event") == "create_outcome"]
    assert outcomes == ["unconfirmed", "created"]  # two points of the projects-per-video metric: the alert fires
