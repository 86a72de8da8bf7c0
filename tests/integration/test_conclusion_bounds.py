"""A conclusion is bounded whatever OpusClip answers: the slot is freed at COMPLETE, a clip that never
renders is concluded without after CLIP_RENDER_WAIT_SECONDS, a server that ignores paging costs a few
calls, a huge answer or a slow clip host fails the call instead of the sweep, a conclusion out of time
(or cut short by the platform) is put off (through the stand-in)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.errors import DeadlineReachedError, TransientError
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.opus.clip_download import copy_clip
from opus_pipeline.usecases.conclude import (
    CONCLUDE_BUDGET_SECONDS,
    CONCLUDE_LEASE_SECONDS,
    check_project,
    hand_look_on,
)
from opus_pipeline.usecases.sweep import sweep

from conftest import Stack
from support import create, record, services, uploaded, wait_for

LATER = 24 * 3600.0  # every backoff is over
WAIT = {"CLIP_RENDER_WAIT_SECONDS": "120"}


def completed_project(stack: Stack, standin) -> tuple[dict, str]:
    resource, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    return resource, project_id


def sweep_at(stack: Stack, ahead: float, **overrides: str):
    svc = services(stack, **overrides)
    svc.wall = lambda: time.time() + ahead
    return sweep(svc)


def in_flight(stack: Stack) -> dict[str, float]:
    table = Admission(stack.storage, stack.state_bucket, cap=4).read()
    return table.in_flight


# -- a clip that never renders --------------------------------------------------------------------


@pytest.fixture
def one_clip_never_renders(standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=3, scoredClips="all", renderSeconds=None, renderingClips=1)


def test_a_project_whose_clip_never_renders_frees_its_slot_at_complete(
    stack: Stack, standin, one_clip_never_renders
) -> None:
    resource, _ = completed_project(stack, standin)
    assert in_flight(stack)  # held while OpusClip runs the project

    assert sweep_at(stack, LATER, **WAIT).concluded == 0

    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.stage == "COMPLETE" and rec.rendering_since > 0
    assert in_flight(stack) == {}  # freed before any clip was read or copied


def test_a_clip_still_rendering_after_the_wait_is_concluded_as_not_copied(
    stack: Stack, standin, one_clip_never_renders
) -> None:
    resource, project_id = completed_project(stack, standin)
    sweep_at(stack, LATER, **WAIT)
    assert sweep_at(stack, LATER + 61, **WAIT).concluded == 0  # looked at again within the wait

    assert sweep_at(stack, LATER + 121, **WAIT).concluded == 1

    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.clip_count == 3
    manifest = json.loads(stack.storage.bucket(stack.output_bucket).blob("talk.mp4/clips.json").download_as_bytes())
    never, *rendered = manifest["clips"]
    assert never["copied"] is False and never["reason"] == "still-rendering"
    assert never["opusLink"] == never["uriForPreview"] and "CLIP_RENDER_WAIT_SECONDS" in never["error"]
    assert [clip["copied"] for clip in rendered] == [True, True]
    assert standin.project(project_id)["stage"] == "COMPLETE"


# -- paging that never ends ----------------------------------------------------------------------


def test_a_server_that_ignores_page_num_costs_two_calls(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=5, ignorePaging=True)
    _, project_id = completed_project(stack, standin)
    before = standin.calls("exportable-clips")

    clips = services(stack).opus.all_clips(project_id, page_size=2)

    assert standin.calls("exportable-clips") - before == 2  # the second page brought no new clip id
    assert len(clips) == 2 and len({clip["id"] for clip in clips}) == 2


def test_a_page_longer_than_asked_ends_the_listing(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=5, ignorePaging="all")
    _, project_id = completed_project(stack, standin)
    before = standin.calls("exportable-clips")

    clips = services(stack).opus.all_clips(project_id, page_size=2)

    assert standin.calls("exportable-clips") - before == 1
    assert len({clip["id"] for clip in clips}) == 5


def test_a_server_that_ignores_paging_is_concluded_in_one_sweep(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=3, ignorePaging=True)
    resource, _ = completed_project(stack, standin)
    before = standin.calls("exportable-clips")

    assert sweep_at(stack, LATER).concluded == 1

    assert standin.calls("exportable-clips") - before == 1  # 3 clips on a page of 50: a short page
    assert record(stack, resource).clip_count == 3


# -- answers too big or too slow -----------------------------------------------------------------


def test_an_answer_over_the_size_cap_fails_the_call_and_the_conclusion_is_put_off(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1, clipDescription="x" * (5 * 1024 * 1024))
    resource, project_id = completed_project(stack, standin)

    with pytest.raises(TransientError, match="more than"):
        services(stack).opus.clips_page(project_id, 1, 50)
    report = sweep_at(stack, LATER)

    rec = record(stack, resource)
    assert report.errors == 1 and rec.state == states.PROJECT_CREATED and rec.conclude_failures == 1
    assert rec.next_check >= time.time() + LATER + 10  # put off like a look, not tried on every tick
    assert in_flight(stack) == {} and rec.stage == "COMPLETE"  # the slot went before the clips were read


def test_a_rate_limited_conclusion_is_tried_again_after_retry_after_and_not_counted_a_failure(
    stack: Stack, standin
) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)
    resource, _ = completed_project(stack, standin)
    standin.inject({"endpoint": "exportable-clips", "kind": "status", "status": 429, "headers": {"Retry-After": "2"}})

    sweep_at(stack, LATER)

    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.conclude_failures == 0  # the key's limit, not the project's
    assert rec.next_check <= time.time() + LATER + 2 + 1  # again after Retry-After, not 15 s and doubling
    assert sweep_at(stack, LATER + 3).concluded == 1 and record(stack, resource).state == states.CLIPS_READY


def test_a_clip_copy_past_its_deadline_is_given_up_and_leaves_no_object(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1, clipBytes=3 * 1024 * 1024)
    completed_project(stack, standin)
    [url] = [clip["url"] for clip in standin.stats()["clipFiles"].values()]
    blob = stack.storage.bucket(stack.output_bucket).blob("slow/clip.mp4")
    seconds = itertools.count()  # every look at the clock finds a second more gone

    with pytest.raises(TransientError, match="longer than 2s"):
        copy_clip(requests.Session(), url, (url.split("/")[2],), blob, deadline=2, clock=lambda: next(seconds))

    assert stack.storage.bucket(stack.output_bucket).get_blob("slow/clip.mp4") is None


# -- a conclusion's time --------------------------------------------------------------------------

SPEED = 100.0  # on the conclusion's clock a real second is this many: its budget is 2.4 s of the test's
SLOW = 1.0  # real seconds the stand-in waits before it sends each clip file
CLIPS = 8  # copied one after the other, more than the budget's time


@pytest.fixture
def slow_clips(standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=CLIPS, clipBytes=300_000, scoredClips="none")


def conclude_on_a_fast_clock(stack: Stack, resource: dict) -> None:
    """A look at the project, a day later, on a clock where the budget passes in a few real seconds."""
    svc = services(stack)
    svc.wall = lambda: time.time() + LATER
    svc.clock = lambda: time.monotonic() * SPEED
    check_project(Ledger(stack.storage, stack.state_bucket).read(storage_object(resource)), svc, "sweep")


def copies(stack: Stack, resource: dict) -> list[dict]:
    return [copy for copy in record(stack, resource).copied.values() if copy.get("copied")]


def test_a_conclusion_out_of_time_returns_within_its_budget_and_is_put_off(stack: Stack, standin, slow_clips) -> None:
    resource, _ = completed_project(stack, standin)
    standin.inject({"endpoint": "media", "kind": "slow", "seconds": SLOW, "times": 100})
    started = time.monotonic()

    with pytest.raises(DeadlineReachedError):
        conclude_on_a_fast_clock(stack, resource)

    took = time.monotonic() - started
    assert took < CONCLUDE_BUDGET_SECONDS / SPEED + 2 * SLOW  # the budget, and the copy it cut short
    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.conclude_failures == 1
    assert rec.next_check >= time.time() + LATER + 10
    assert 0 < len(copies(stack, resource)) < CLIPS
    assert standin.calls("media") <= len(copies(stack, resource)) + 1  # no copy started past the budget


def test_the_copies_made_in_time_are_kept_for_the_next_try(stack: Stack, standin, slow_clips) -> None:
    resource, _ = completed_project(stack, standin)
    standin.inject({"endpoint": "media", "kind": "slow", "seconds": SLOW, "times": 100})
    with pytest.raises(DeadlineReachedError):
        conclude_on_a_fast_clock(stack, resource)
    kept = len(copies(stack, resource))
    standin.clear_faults()
    before = standin.calls("media")

    assert sweep_at(stack, 2 * LATER).concluded == 1

    assert record(stack, resource).state == states.CLIPS_READY and len(copies(stack, resource)) == CLIPS
    assert standin.calls("media") - before == CLIPS - kept  # the kept copies were not fetched again


# A conclusion in a process of its own, as the sweep function runs it, for the test to kill.
CONCLUDE_IN_A_PROCESS = (
    "import sys; from opus_pipeline import runtime; from opus_pipeline.usecases.sweep import look_at; "
    "look_at(runtime.build(), sys.argv[1])"
)


def test_a_conclusion_the_platform_cut_short_is_found_put_off(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1, clipBytes=300_000)
    resource, _ = completed_project(stack, standin)
    standin.inject({"endpoint": "media", "kind": "slow", "seconds": 30})  # the copy is under way when killed
    hand_look_on(Ledger(stack.storage, stack.state_bucket).read(storage_object(resource)), services(stack))
    env = {**os.environ, **stack.env}
    key = storage_object(resource).key
    concluding = subprocess.Popen([sys.executable, "-c", CONCLUDE_IN_A_PROCESS, key], env=env, start_new_session=True)
    try:
        wait_for(lambda: standin.calls("media") == 1, timeout=60)
    finally:
        os.killpg(concluding.pid, signal.SIGKILL)
        concluding.wait()
    killed_at = time.time()
    looks = standin.calls("project-get")

    report = sweep_at(stack, CONCLUDE_LEASE_SECONDS + 1)  # its lease lapsed: nobody holds it

    rec = record(stack, resource)
    assert rec.state == states.CONCLUDING and not rec.lease_live(killed_at + CONCLUDE_LEASE_SECONDS + 1)
    assert rec.conclude_failures == 1 and rec.next_check > killed_at + CONCLUDE_LEASE_SECONDS + 1
    assert report.not_due == 1 and standin.calls("project-get") == looks  # left alone: not taken over first
