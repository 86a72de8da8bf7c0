"""Clips come back ready: a clip whose file OpusClip is still rendering at COMPLETE
(``renderAsVideoFile.pending``) is not copied; the conclusion waits and the sweeper looks again."""

from __future__ import annotations

import json
import time

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.usecases.sweep import sweep

from conftest import CHUNK, Stack
from support import create, ingest, record, services, wait_for

LATER = 24 * 3600.0  # every backoff is over


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=3)


def completed_project(stack: Stack, standin) -> tuple[dict, str]:
    resource = stack.put("talk.mp4", video_bytes(CHUNK + 1))
    assert ingest(stack, resource) == states.QUEUED
    [received] = stack.pull()
    assert create(stack, ClipRequest.decode(received.message.data)) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    return resource, project_id


def sweep_later(stack: Stack, days: int = 1):
    svc = services(stack)
    svc.wall = lambda: time.time() + days * LATER
    return sweep(svc)


def copied_clips(stack: Stack) -> list[str]:
    blobs = stack.storage.list_blobs(stack.output_bucket, prefix="talk.mp4/clips/")
    return [blob.name for blob in blobs if blob.name.endswith(".mp4")]


def test_a_clip_still_rendering_at_complete_is_not_copied_and_the_video_waits(stack: Stack, standin, capsys) -> None:
    standin.configure(renderSeconds=60, renderingClips=1)
    resource, project_id = completed_project(stack, standin)
    capsys.readouterr()

    assert sweep_later(stack).concluded == 0

    rec = record(stack, resource)
    assert rec.state == states.PROJECT_CREATED and rec.stage == "COMPLETE" and not rec.lease_owner
    files = standin.stats()["clipFiles"]
    assert len(files) == 2 and all(file["downloads"] == 0 for file in files.values())  # the ready two wait too
    assert copied_clips(stack) == []
    assert stack.storage.bucket(stack.output_bucket).get_blob("talk.mp4/clips.json") is None
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "clips_rendering" in x]
    assert (
        "1 of its clips are still rendering" in line["message"]
        and line["logging.googleapis.com/labels"]["projectId"] == project_id
    )


def test_the_sweeper_concludes_once_the_clips_are_rendered(stack: Stack, standin) -> None:
    standin.configure(renderSeconds=2)
    resource, project_id = completed_project(stack, standin)
    sweep_later(stack)
    assert record(stack, resource).state == states.PROJECT_CREATED

    wait_for(lambda: len(standin.clip_md5s(project_id)) == 3, timeout=30)
    assert sweep_later(stack, days=2).concluded == 1

    rec = record(stack, resource)
    assert rec.state == states.CLIPS_READY and rec.clip_count == 3 and len(copied_clips(stack)) == 3


def test_the_wait_is_looked_at_again_within_a_minute(stack: Stack, standin) -> None:
    standin.configure(renderSeconds=60)
    resource, _ = completed_project(stack, standin)
    sweep_later(stack)
    assert record(stack, resource).next_check <= time.time() + LATER + 60
