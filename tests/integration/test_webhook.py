"""OpusClip's webhook, received by on_project_concluded under functions-framework over HTTP; the
sweeper (played here from its push subscription) looks at the video the receiver's tick names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.cloud import pubsub_v1

from opus_local import emulators
from opus_pipeline.domain import states
from opus_pipeline.domain.messages import SweepTick
from opus_pipeline.domain.webhook import registered_url, signature
from opus_pipeline.usecases.sweep import look_at

from conftest import API_KEY, PROJECT, Stack
from support import FUNCTIONS, create, live_metadata, record, services, uploaded, wait_for

TOKEN = "whk-" + "3c1f9a7e5d2b4c6e8f0a1b2c"


@pytest.fixture
def receiver(stack: Stack, tmp_path: Path) -> Iterator[dict]:
    """The webhook receiver in its own process; the settings that register it with OpusClip."""
    port = emulators.free_port()
    hook = {"OPUS_WEBHOOK_URL": f"http://127.0.0.1:{port}/", "OPUS_WEBHOOK_TOKEN": TOKEN}
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/sweep-ticks-{suffix}"
    ticks = f"projects/{PROJECT}/subscriptions/sweep-ticks-{suffix}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=ticks, topic=topic)
    env = {**stack.env, **hook, "SWEEP_TICKS_TOPIC": topic}
    log = tmp_path / "receiver.log"
    function = emulators.start_function("on_project_concluded", FUNCTIONS, env, log, port=port, signature="http")
    yield {**hook, "log": log, "ticks": ticks}
    function.stop()


def sweeper_takes_ticks(stack: Stack, receiver: dict) -> int:
    """The sweeper's part: look at the video each of the receiver's ticks names; how many ticks."""
    ticks = stack.pull(subscription=receiver["ticks"])
    for tick in ticks:
        look_at(services(stack), SweepTick.video_of(tick.message.data))
    return len(ticks)


def created(stack: Stack, receiver: dict) -> tuple[dict, str]:
    resource, request = uploaded(stack)
    settings = {k: v for k, v in receiver.items() if k.startswith("OPUS_")}
    assert create(stack, request, **settings) == states.PROJECT_CREATED
    return resource, record(stack, resource).project_id


def call(receiver: dict, key: str, body: bytes, token: str = TOKEN, **headers: str) -> int:
    url = registered_url(receiver["OPUS_WEBHOOK_URL"], token, key)
    return requests.post(url, data=body, headers=headers, timeout=30).status_code


def video_key(resource: dict) -> str:
    return f"{resource['bucket']}/{resource['name']}#{resource['generation']}"


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=2)


def test_opusclip_calling_the_webhook_brings_the_clips_back(stack: Stack, standin, receiver) -> None:
    resource, project_id = created(stack, receiver)

    wait_for(lambda: standin.webhooks(), timeout=30)  # noted once the receiver has answered
    [delivery] = standin.webhooks()
    assert delivery["status"] == 200 and delivery["projectId"] == project_id
    assert record(stack, resource).state == states.PROJECT_CREATED  # nothing concluded in the request

    assert sweeper_takes_ticks(stack, receiver) == 1
    assert record(stack, resource).state == states.CLIPS_READY
    assert live_metadata(stack, "talk.mp4")["opus-clip-count"] == "2"


def test_the_registered_url_names_the_video_and_carries_the_token(stack: Stack, standin, receiver) -> None:
    resource, project_id = created(stack, receiver)
    [action] = standin.project(project_id)["request"]["conclusionActions"]
    assert action["type"] == "WEBHOOK" and action["notifyFailure"] is True
    assert action["url"] == registered_url(receiver["OPUS_WEBHOOK_URL"], TOKEN, video_key(resource))


def test_a_duplicated_webhook_concludes_once(stack: Stack, standin, receiver) -> None:
    standin.webhook_fault("duplicate", copies=3)
    resource, _ = created(stack, receiver)
    wait_for(lambda: len(standin.webhooks()) >= 3, 30)
    assert sweeper_takes_ticks(stack, receiver) == 1  # the copies within the minute hand nothing on
    assert record(stack, resource).state == states.CLIPS_READY
    assert all(f["downloads"] == 1 for f in standin.stats()["clipFiles"].values())
    assert len(stack.pull(subscription=stack.results_subscription)) == 1


@pytest.mark.parametrize(
    ("token", "headers", "body", "status"),
    [
        ("", {}, b"{}", 401),
        ("not-the-token-at-all", {}, b"{}", 401),
        (TOKEN, {}, b"x" * (64 * 1024 + 1), 413),
    ],
    ids=["no-token", "wrong-token", "oversized-body"],
)
def test_refused_calls_have_no_effect(
    stack: Stack, standin, receiver, token: str, headers: dict, body: bytes, status: int
) -> None:
    standin.webhook_fault("drop")  # OpusClip's own call is lost: only ours arrives
    standin.configure(projectSeconds=0.2)
    resource, _ = created(stack, receiver)
    wait_for(lambda: standin.webhooks(), timeout=30)
    lookups = standin.calls("project-get")

    assert call(receiver, video_key(resource), body, token, **headers) == status

    assert standin.calls("project-get") == lookups
    assert record(stack, resource).state == states.PROJECT_CREATED
    log = receiver["log"].read_text()
    assert TOKEN not in log and API_KEY not in log and "webhook_refused" in log


def test_a_correctly_signed_call_is_accepted(stack: Stack, standin, receiver) -> None:
    standin.webhook_fault("drop")
    resource, project_id = created(stack, receiver)
    wait_for(lambda: standin.webhooks(), timeout=30)
    body = json.dumps({"projectId": project_id}).encode()
    headers = {"X-Opus-Signature": signature(API_KEY, body, "c0ffee"), "X-Opus-Salt": "c0ffee"}

    assert call(receiver, video_key(resource), body, **headers) == 200
    assert sweeper_takes_ticks(stack, receiver) == 1
    assert record(stack, resource).state == states.CLIPS_READY


def test_a_signature_in_base64_is_accepted(stack: Stack, standin, receiver) -> None:
    standin.webhook_fault("drop")
    resource, project_id = created(stack, receiver)
    wait_for(lambda: standin.webhooks(), timeout=30)
    body = json.dumps({"projectId": project_id}).encode()
    digest = hmac.new(API_KEY.encode(), body + b"c0ffee", hashlib.sha256).digest()
    headers = {"X-Opus-Signature": base64.b64encode(digest).decode(), "X-Opus-Salt": "c0ffee"}

    assert call(receiver, video_key(resource), body, **headers) == 200
    assert "webhook_unverified" not in receiver["log"].read_text()
    assert sweeper_takes_ticks(stack, receiver) == 1


def test_a_mis_signed_call_with_the_right_token_is_a_hint_with_a_warning(stack: Stack, standin, receiver) -> None:
    standin.webhook_fault("drop")
    resource, _ = created(stack, receiver)
    wait_for(lambda: standin.webhooks(), timeout=30)
    headers = {"X-Opus-Signature": signature("another-key-of-the-workspace", b"{}", "ab12"), "X-Opus-Salt": "ab12"}

    assert call(receiver, video_key(resource), b"{}", **headers) == 200

    [line] = [json.loads(x) for x in receiver["log"].read_text().splitlines() if "webhook_unverified" in x]
    assert line["severity"] == "WARNING" and "first API key" in line["message"]
    assert "OPUS_WEBHOOK_SECRET" in line["message"]
    assert sweeper_takes_ticks(stack, receiver) == 1
    assert record(stack, resource).state == states.CLIPS_READY


def test_a_call_for_an_unknown_video_is_a_quiet_200(stack: Stack, standin, receiver) -> None:
    lookups = standin.calls("project-get")
    assert call(receiver, "nobucket/nothing.mp4#1", b"{}") == 200
    assert standin.calls("project-get") == lookups
    assert "conclusion_ignored" in receiver["log"].read_text()
