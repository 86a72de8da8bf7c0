"""create_clip_project under functions-framework, fed by a real Pub/Sub push subscription."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from opus_local import emulators
from opus_pipeline.domain import states

from conftest import CHUNK, Stack
from support import FUNCTIONS, ingest, record, video, wait_for


@pytest.fixture
def pushed(stack: Stack, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """The create-project function, and a push subscription from the clip-requests topic to it."""
    env = {**stack.env, "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]}
    function = emulators.start_function("create_clip_project", FUNCTIONS, env, tmp_path / "create.log")
    subscriber = pubsub_v1.SubscriberClient()
    push = stack.subscription.replace("/subscriptions/", "/subscriptions/push-")
    subscriber.create_subscription(
        request={
            "name": push,
            "topic": stack.topic,
            "push_config": {"push_endpoint": f"http://127.0.0.1:{function.port}/"},
            "ack_deadline_seconds": 10,
        }
    )
    yield lambda: (tmp_path / "create.log").read_text()
    subscriber.delete_subscription(subscription=push)
    function.stop()


def test_pushed_message_creates_the_project(stack: Stack, standin, pushed) -> None:
    resource = stack.put("talk.mp4", video(CHUNK))
    ingest(stack, resource)
    wait_for(lambda: record(stack, resource).state == states.PROJECT_CREATED)
    assert standin.calls("clip-projects") == 1


def test_message_published_three_times_creates_one_project(stack: Stack, standin, pushed) -> None:
    resource = stack.put("talk.mp4", video(CHUNK))
    ingest(stack, resource)
    [message] = stack.pull()
    publisher = pubsub_v1.PublisherClient()
    futures = [
        publisher.publish(stack.topic, message.message.data, **dict(message.message.attributes)) for _ in range(3)
    ]
    for future in futures:
        future.result(timeout=30)
    wait_for(lambda: record(stack, resource).state == states.PROJECT_CREATED)
    time.sleep(2)  # leave the duplicates time to arrive
    assert len(standin.stats()["projects"]) == 1


def test_transient_error_is_redelivered_by_pubsub(stack: Stack, standin, pushed) -> None:
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 503, "times": 2})
    resource = stack.put("talk.mp4", video(CHUNK))
    ingest(stack, resource)
    wait_for(lambda: record(stack, resource).state == states.PROJECT_CREATED)
    assert standin.calls("clip-projects") == 3


def test_permanent_error_is_acknowledged_not_redelivered(stack: Stack, standin, pushed) -> None:
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 402, "body": {"message": "no credits"}})
    resource = stack.put("talk.mp4", video(CHUNK))
    ingest(stack, resource)
    wait_for(lambda: record(stack, resource).state == states.FAILED)
    time.sleep(3)  # the transient-error test shows redeliveries of an error answer come faster
    assert standin.calls("clip-projects") == 1
    deliveries = pushed().count('"video_failed"') + pushed().count('"duplicate_clip_request"')
    assert deliveries == 1  # a second delivery would have logged duplicate_clip_request


def test_poison_message_is_acknowledged(stack: Stack, standin, pushed) -> None:
    pubsub_v1.PublisherClient().publish(stack.topic, b"not json").result(timeout=30)
    wait_for(lambda: "poison_message" in pushed())
    time.sleep(3)
    assert pushed().count("poison_message") == 1
