"""The webhook receiver answers within seconds and hands the look on: the sweeper, not the request,
asks OpusClip and brings the clips back (both functions under functions-framework, over HTTP)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.cloud import pubsub_v1

from opus_local import emulators
from opus_local.relay import push_body
from opus_pipeline.domain import states
from opus_pipeline.domain.messages import SWEEP_VIDEO
from opus_pipeline.domain.webhook import registered_url

from conftest import PROJECT, Stack
from support import FUNCTIONS, create, record, uploaded, wait_for

TOKEN = "whk-" + "7e1d3c5b9a2f4e6d8c0b"


@pytest.fixture
def functions(stack: Stack, standin, tmp_path: Path) -> Iterator[dict]:
    """The receiver and the sweeper, each in its own process, sharing a sweep-ticks topic."""
    standin.configure(projectSeconds=0.3, clipsPerProject=120)  # three pages of clips to read
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/sweep-ticks-{suffix}"
    ticks = f"projects/{PROJECT}/subscriptions/sweep-ticks-{suffix}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=ticks, topic=topic)
    port = emulators.free_port()
    hook = {"OPUS_WEBHOOK_URL": f"http://127.0.0.1:{port}/", "OPUS_WEBHOOK_TOKEN": TOKEN}
    env = {**stack.env, **hook, "SWEEP_TICKS_TOPIC": topic, "COPY_CLIPS": "false"}
    receiver = emulators.start_function(
        "on_project_concluded", FUNCTIONS, env, tmp_path / "receiver.log", port=port, signature="http"
    )
    sweeper = emulators.start_function("sweep_projects", FUNCTIONS, env, tmp_path / "sweeper.log")
    yield {"hook": hook, "ticks": ticks, "sweeper": f"http://127.0.0.1:{sweeper.port}/"}
    receiver.stop()
    sweeper.stop()


def test_the_receiver_answers_fast_and_the_sweeper_concludes_from_its_tick(
    stack: Stack, standin, functions: dict
) -> None:
    standin.webhook_fault("drop")  # OpusClip's own call is lost: the test's call is the one
    resource, request = uploaded(stack)
    assert create(stack, request, **functions["hook"]) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    key = f"{resource['bucket']}/{resource['name']}#{resource['generation']}"
    listed = standin.calls("exportable-clips")

    started = time.monotonic()
    answer = requests.post(registered_url(functions["hook"]["OPUS_WEBHOOK_URL"], TOKEN, key), data=b"{}", timeout=30)
    assert answer.status_code == 200 and time.monotonic() - started < 5

    assert standin.calls("exportable-clips") == listed  # no clip read inside the request
    assert record(stack, resource).state == states.PROJECT_CREATED
    [tick] = stack.pull(subscription=functions["ticks"])
    assert tick.message.attributes["scope"] == SWEEP_VIDEO

    body = push_body(tick.message.data, dict(tick.message.attributes), tick.message.message_id, functions["ticks"])
    assert requests.post(functions["sweeper"], json=body, timeout=60).status_code < 300

    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.clip_count == 120
    assert standin.calls("exportable-clips") - listed == 3
