"""The public webhook receiver publishes no clip request: its freed slots are admitted by the sweeper."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from google.cloud import pubsub_v1

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import SWEEP_ADMIT, ClipRequest
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.usecases.admit import admit_next
from opus_pipeline.usecases.conclude import check_project
from opus_pipeline.usecases.sweep import sweep

from conftest import PROJECT, Stack
from support import create, ingest, record, services, uploaded, wait_for

ONE_SLOT = {"OPUS_MAX_PARALLEL_PROJECTS": "1"}


@pytest.fixture
def ticks(stack: Stack) -> tuple[str, str]:
    """A sweep-ticks topic and a subscription that sees what is published on it."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/sweep-ticks-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/sweep-ticks-{suffix}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)
    return topic, subscription


def one_running_and_one_waiting(stack: Stack, standin) -> tuple[dict, dict]:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)
    first, request = uploaded(stack)
    assert create(stack, request, **ONE_SLOT) == states.PROJECT_CREATED
    second = stack.put("second.mp4", video_bytes(smallest_video()))
    ingest(stack, second)
    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data), **ONE_SLOT) == states.WAITING
    project_id = record(stack, first).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    return first, second


def test_a_webhook_conclusion_frees_the_slot_and_ticks_the_sweeper_instead_of_admitting(
    stack: Stack, standin, ticks
) -> None:
    topic, subscription = ticks
    first, second = one_running_and_one_waiting(stack, standin)
    svc = services(stack, SWEEP_TICKS_TOPIC=topic, **ONE_SLOT)

    stored = Ledger(stack.storage, stack.state_bucket).read(storage_object(first))
    assert check_project(stored, svc, "webhook") == states.CLIPS_READY

    assert stack.pull() == []  # no clip request from the receiver
    [tick] = stack.pull(subscription=subscription)
    assert json.loads(tick.message.data) == {"sweep": "a project slot was freed"}
    assert tick.message.attributes["scope"] == SWEEP_ADMIT
    table = Admission(stack.storage, stack.state_bucket, cap=1).read()
    assert table.in_flight == {} and [w["key"] for w in table.waiting] == [storage_object(second).key]


def test_the_sweep_the_receiver_ticked_admits_the_waiting_video(stack: Stack, standin, ticks) -> None:
    topic, _ = ticks
    first, second = one_running_and_one_waiting(stack, standin)
    svc = services(stack, SWEEP_TICKS_TOPIC=topic, **ONE_SLOT)
    check_project(Ledger(stack.storage, stack.state_bucket).read(storage_object(first)), svc, "webhook")

    sweeper = services(stack, **ONE_SLOT)
    sweeper.wall = lambda: time.time() + 60
    sweep(sweeper)

    [admitted] = stack.pull()
    assert ClipRequest.decode(admitted.message.data).source.key == storage_object(second).key


def test_the_admit_tick_admits_the_waiting_video_without_a_whole_sweep(stack: Stack, standin, ticks) -> None:
    topic, _ = ticks
    first, second = one_running_and_one_waiting(stack, standin)
    svc = services(stack, SWEEP_TICKS_TOPIC=topic, **ONE_SLOT)
    check_project(Ledger(stack.storage, stack.state_bucket).read(storage_object(first)), svc, "webhook")

    assert admit_next(services(stack, **ONE_SLOT)) == [storage_object(second).key]

    [admitted] = stack.pull()
    assert ClipRequest.decode(admitted.message.data).source.key == storage_object(second).key
