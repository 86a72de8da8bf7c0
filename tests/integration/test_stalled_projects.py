"""STALLED as OpusClip means it: a stalled project is watched for STALLED_GRACE_SECONDS, not failed;
one that moves on brings its clips back, and holds a project slot again while it runs; ``retry`` of a
stalled or ambiguous video looks at the existing project first and creates a second one only with
``--new-project``."""

from __future__ import annotations

import time

import pytest

from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.errors import NothingToRetryError, TransientError
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.open_index import OpenProjects
from opus_pipeline.usecases.redrive import retry_video
from opus_pipeline.usecases.sweep import sweep

from conftest import Stack
from support import create, ingest, live_metadata, record, services, uploaded, video, wait_for

LATER = 24 * 3600.0


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=2, clipBytes=300_000)


def sweep_at(stack: Stack, offset: float, **overrides: str):
    svc = services(stack, **overrides)
    svc.wall = lambda: time.time() + offset
    return sweep(svc)


def stalled_video(stack: Stack, standin, resume_after: float | None = None) -> tuple[dict, str]:
    standin.stall_next(resume_after=resume_after)
    resource, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "STALLED", timeout=30)
    return resource, project_id


def runs_again(standin, project_id: str, looks: int = 1) -> None:
    """OpusClip answers the next ``looks`` looks at the project with RENDER: it runs again after its
    stall (the stand-in's own stalled projects only ever move on to COMPLETE)."""
    answer = {"id": project_id, "stage": "RENDER"}
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 200, "body": answer, "times": looks})


def in_flight(stack: Stack) -> dict[str, float]:
    return services(stack).admission.read().in_flight


def retry(stack: Stack, standin, **options):
    published: list = []
    ledger = Ledger(stack.storage, stack.state_bucket)
    opus = services(stack).opus
    open_projects = OpenProjects(stack.storage, stack.state_bucket)
    done = retry_video(
        stack.storage,
        ledger,
        stack.source_bucket,
        "talk.mp4",
        published.append,
        opus=opus,
        open_projects=open_projects,
        **options,
    )
    return done, published


def test_a_stalled_project_is_watched_and_its_slot_freed_not_failed(stack: Stack, standin) -> None:
    resource, _ = stalled_video(stack, standin)

    sweep_at(stack, LATER)

    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.stage == "STALLED" and rec.stalled_since is not None
    assert rec.next_check <= rec.stalled_since + 21_600
    table = services(stack).admission.read()
    assert resource["bucket"] + "/" + resource["name"] + "#" + resource["generation"] not in table.in_flight
    assert live_metadata(stack, "talk.mp4")["opus-stage"] == "STALLED"


def test_a_stalled_project_that_moves_on_brings_its_clips_back(stack: Stack, standin) -> None:
    resource, project_id = stalled_video(stack, standin, resume_after=1.0)
    sweep_at(stack, LATER)
    assert record(stack, resource).stage == "STALLED"

    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    sweep_at(stack, LATER + 3600)

    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.clip_count == 2 and rec.project_id == project_id
    assert len(standin.stats()["projects"]) == 1


def test_a_stalled_project_that_runs_again_holds_a_slot_again(stack: Stack, standin) -> None:
    resource, project_id = stalled_video(stack, standin)
    sweep_at(stack, LATER)
    key = storage_object(resource).key
    assert key not in in_flight(stack)  # given up at STALLED
    runs_again(standin, project_id)

    sweep_at(stack, LATER + 3600)

    rec = record(stack, resource)
    assert rec.stage == "RENDER" and rec.stalled_since is None and key in in_flight(stack)


def test_a_stalled_project_that_runs_again_takes_a_slot_past_a_full_table(stack: Stack, standin) -> None:
    one_slot = {"OPUS_MAX_PARALLEL_PROJECTS": "1"}
    resource, project_id = stalled_video(stack, standin)
    sweep_at(stack, LATER, **one_slot)
    standin.configure(projectSeconds=600)
    other = stack.put("other.mp4", video())
    ingest(stack, other, **one_slot)
    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data), **one_slot) == states.PROJECT_CREATED
    runs_again(standin, project_id)  # the older of the two: looked at first

    sweep_at(stack, LATER + 3600, **one_slot)

    assert set(in_flight(stack)) == {storage_object(resource).key, storage_object(other).key}  # as OpusClip counts


def test_past_the_grace_a_stalled_project_fails_as_project_stalled(stack: Stack, standin) -> None:
    resource, _ = stalled_video(stack, standin)
    sweep_at(stack, LATER, STALLED_GRACE_SECONDS="60")
    sweep_at(stack, LATER + 61, STALLED_GRACE_SECONDS="60")

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == "project-stalled"


def test_retry_of_a_video_still_stalled_creates_nothing_without_new_project(stack: Stack, standin) -> None:
    resource, _ = stalled_video(stack, standin)
    sweep_at(stack, LATER, STALLED_GRACE_SECONDS="60")
    sweep_at(stack, LATER + 61, STALLED_GRACE_SECONDS="60")

    with pytest.raises(NothingToRetryError, match=r"still STALLED.*--new-project"):
        retry(stack, standin)

    assert len(standin.stats()["projects"]) == 1 and record(stack, resource).state == states.FAILED


def test_retry_of_a_stalled_video_whose_project_moved_on_follows_it_again(stack: Stack, standin) -> None:
    resource, project_id = stalled_video(stack, standin, resume_after=2.0)
    sweep_at(stack, LATER, STALLED_GRACE_SECONDS="60")
    sweep_at(stack, LATER + 61, STALLED_GRACE_SECONDS="60")
    assert record(stack, resource).state == states.FAILED
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)

    done, published = retry(stack, standin)

    assert published == [] and "following it again" in done.detail
    sweep_at(stack, LATER + 3600)
    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.project_id == project_id
    assert len(standin.stats()["projects"]) == 1


def test_retry_of_a_stalled_video_whose_project_runs_again_takes_its_slot_back(stack: Stack, standin) -> None:
    resource, project_id = stalled_video(stack, standin)
    sweep_at(stack, LATER, STALLED_GRACE_SECONDS="60")
    sweep_at(stack, LATER + 61, STALLED_GRACE_SECONDS="60")
    runs_again(standin, project_id, looks=2)  # the retry's look, then the sweeper's
    done, published = retry(stack, standin)
    assert published == [] and "following it again" in done.detail

    sweep_at(stack, LATER + 3600)

    assert record(stack, resource).stage == "RENDER" and storage_object(resource).key in in_flight(stack)


def test_retry_of_an_ambiguous_creation_looks_in_the_project_list_before_creating(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "drop", "after": True})
    with pytest.raises(TransientError):
        create(stack, request)

    done, published = retry(stack, standin)  # as after Pub/Sub gave up redelivering

    assert "project list is looked at first" in done.detail
    assert create(stack, published[0]) == states.PROJECT_CREATED
    assert len(standin.stats()["projects"]) == 1 and standin.calls("clip-projects") == 1
    assert record(stack, resource).project_id in standin.stats()["projects"]
