"""``opus-pipeline retry`` of a stalled video: the existing project first, a new one only with --new-project,
which owes nothing to the old project's story."""

from __future__ import annotations

import threading
import time

import pytest

from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.usecases.sweep import SweepReport, reclaim_slots, sweep

from conftest import Stack
from support import create, record, services, uploaded, wait_for


@pytest.fixture
def stalled_for_good(stack: Stack, standin, monkeypatch) -> dict:
    """A video whose project stalled and stayed so past STALLED_GRACE_SECONDS (60 s here)."""
    standin.configure(projectSeconds=0.3, clipsPerProject=1, clipBytes=300_000)
    standin.stall_next()
    resource, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    wait_for(lambda: standin.project(record(stack, resource).project_id)["stage"] == "STALLED", timeout=30)
    for offset in (3600.0, 3661.0):
        svc = services(stack, STALLED_GRACE_SECONDS="60")
        svc.wall = lambda offset=offset: time.time() + offset
        sweep(svc)
    assert record(stack, resource).reason == "project-stalled"
    for name in ("OPUS_API_KEY", "OPUS_API_BASE_URL", "STATE_BUCKET", "CLIP_REQUESTS_TOPIC"):
        monkeypatch.setenv(name, stack.env[name])
    return resource


def test_retry_of_a_still_stalled_project_says_to_use_new_project_and_creates_nothing(
    stack: Stack, standin, stalled_for_good: dict, capsys
) -> None:
    assert cli.main(["retry", f"gs://{stack.source_bucket}/talk.mp4"]) == 1

    assert "--new-project" in capsys.readouterr().err
    assert stack.pull() == [] and len(standin.stats()["projects"]) == 1


def test_retry_with_new_project_asks_for_a_new_project(stack: Stack, standin, stalled_for_good: dict) -> None:
    first = record(stack, stalled_for_good).project_id

    assert cli.main(["retry", "--new-project", f"gs://{stack.source_bucket}/talk.mp4"]) == 0

    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data)) == states.PROJECT_CREATED
    assert record(stack, stalled_for_good).project_id != first and len(standin.stats()["projects"]) == 2


def new_project_requested(stack: Stack) -> ClipRequest:
    assert cli.main(["retry", "--new-project", f"gs://{stack.source_bucket}/talk.mp4"]) == 0
    [message] = stack.pull()
    return ClipRequest.decode(message.message.data)


def test_a_new_projects_creation_keeps_its_slot_while_opusclip_answers(
    stack: Stack, standin, stalled_for_good: dict
) -> None:
    request = new_project_requested(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "slow", "seconds": 3})
    key = storage_object(stalled_for_good).key
    creating = threading.Thread(target=create, args=(stack, request))
    creating.start()
    try:
        wait_for(lambda: key in services(stack).admission.read().in_flight, timeout=30)
        assert record(stack, stalled_for_good).state == states.CREATING

        reclaimed = reclaim_slots(services(stack), SweepReport())  # the sweeper, during the create call
    finally:
        creating.join()

    assert reclaimed == 0 and record(stack, stalled_for_good).state == states.PROJECT_CREATED
    assert key in services(stack).admission.read().in_flight


def test_a_new_project_seen_stalled_is_watched_not_failed_at_once(
    stack: Stack, standin, stalled_for_good: dict
) -> None:
    standin.stall_next()
    assert create(stack, new_project_requested(stack)) == states.PROJECT_CREATED
    project_id = record(stack, stalled_for_good).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "STALLED", timeout=30)
    svc = services(stack, STALLED_GRACE_SECONDS="60")
    svc.wall = lambda: time.time() + 3700  # past the old project's grace, which the new one owes nothing

    sweep(svc)

    rec = record(stack, stalled_for_good)
    assert rec.state == states.PROJECT_CREATED and rec.stage == "STALLED" and rec.stalled_since > time.time()
