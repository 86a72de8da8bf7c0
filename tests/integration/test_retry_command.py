"""``opus-pipeline retry`` of a stalled video: the existing project first, a new one only with --new-project."""

from __future__ import annotations

import time

import pytest

from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.usecases.sweep import sweep

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
