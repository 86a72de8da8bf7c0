"""The public webhook receiver publishes no clip request and concludes nothing: it hands the look on
to the sweeper (a tick for its one video), whose conclusion frees the slot and admits the next video."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import SWEEP_VIDEO, ClipRequest, SweepTick
from opus_pipeline.domain.webhook import registered_url
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.usecases.admit import admit_next
from opus_pipeline.usecases.conclude import handle_webhook
from opus_pipeline.usecases.sweep import look_at

from conftest import Stack
from support import create, ingest, record, services, uploaded, wait_for

ONE_SLOT = {"OPUS_MAX_PARALLEL_PROJECTS": "1"}
HOOK = {"OPUS_WEBHOOK_URL": "https://hooks.example.com/opus", "OPUS_WEBHOOK_TOKEN": "whk-" + "5c3a1e9d7b2f4a6c8e0b"}


def query_for(key: str) -> dict[str, str]:
    url = registered_url(HOOK["OPUS_WEBHOOK_URL"], HOOK["OPUS_WEBHOOK_TOKEN"], key)
    return dict(parse_qsl(urlsplit(url).query))


def one_running_and_one_waiting(stack: Stack, standin) -> tuple[dict, dict]:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)
    first, request = uploaded(stack)
    assert create(stack, request, **ONE_SLOT) == states.PROJECT_CREATED
    second = stack.put("second.mp4", video_bytes(smallest_video()))
    assert ingest(stack, second, **ONE_SLOT) == states.WAITING  # lined up: no clip request
    project_id = record(stack, first).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    return first, second


def test_a_webhook_call_hands_the_look_on_as_a_tick_for_its_video(stack: Stack, standin, ticks) -> None:
    topic, subscription = ticks
    first, _ = one_running_and_one_waiting(stack, standin)
    svc = services(stack, SWEEP_TICKS_TOPIC=topic, **ONE_SLOT, **HOOK)
    lookups = standin.calls("project-get")

    started = time.monotonic()
    assert handle_webhook(query_for(storage_object(first).key), {}, lambda: b"{}", svc) == 200
    assert time.monotonic() - started < 5  # judged and handed on: nothing is read or copied in the request

    assert standin.calls("project-get") == lookups
    assert record(stack, first).state == states.PROJECT_CREATED
    assert stack.pull() == []  # no clip request from the receiver
    [tick] = stack.pull(subscription=subscription)
    assert tick.message.attributes["scope"] == SWEEP_VIDEO
    assert SweepTick.video_of(tick.message.data) == storage_object(first).key


def test_the_video_tick_concludes_in_the_sweeper_and_admits_the_waiting_video(stack: Stack, standin, ticks) -> None:
    topic, _ = ticks
    first, second = one_running_and_one_waiting(stack, standin)
    receiver = services(stack, SWEEP_TICKS_TOPIC=topic, **HOOK)
    handle_webhook(query_for(storage_object(first).key), {}, lambda: b"{}", receiver)

    report = look_at(services(stack, **ONE_SLOT), storage_object(first).key)

    assert report.concluded == 1 and record(stack, first).state == states.CLIPS_READY
    [admitted] = stack.pull()
    assert ClipRequest.decode(admitted.message.data).source.key == storage_object(second).key
    table = Admission(stack.storage, stack.state_bucket, cap=1).read()
    assert list(table.in_flight) == [] and [w["key"] for w in table.waiting] == [storage_object(second).key]


def test_the_admit_tick_admits_the_waiting_video_without_a_whole_sweep(stack: Stack, standin) -> None:
    first, second = one_running_and_one_waiting(stack, standin)
    Admission(stack.storage, stack.state_bucket, cap=1).change(lambda table: table.drop(storage_object(first).key))

    assert admit_next(services(stack, **ONE_SLOT)) == [storage_object(second).key]

    [admitted] = stack.pull()
    assert ClipRequest.decode(admitted.message.data).source.key == storage_object(second).key
