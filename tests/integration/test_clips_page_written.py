"""Every conclusion writes ``gs://OUTPUT/<name>/index.html`` beside ``clips.json``."""

from __future__ import annotations

import json
import re
import time

import pytest

from opus_pipeline.domain import states
from opus_pipeline.usecases.sweep import sweep

from conftest import Stack
from support import create, record, services, uploaded, wait_for


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=3, clipBytes=50_000, scoredClips="all")


def conclude(stack: Stack, standin) -> dict:
    resource, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] in ("COMPLETE", "STALLED"), timeout=30)
    svc = services(stack)
    svc.wall = lambda: time.time() + 24 * 3600.0
    sweep(svc)
    return resource


def output(stack: Stack, name: str) -> bytes:
    return stack.storage.bucket(stack.output_bucket).blob(name).download_as_bytes()


def test_a_concluded_video_gets_a_page_listing_its_clips_best_first(stack: Stack, standin) -> None:
    conclude(stack, standin)

    doc = json.loads(output(stack, "talk.mp4/clips.json"))
    page = output(stack, "talk.mp4/index.html").decode()
    titles = re.findall(r'<h2 class="title">([^<]*)</h2>', page)
    assert titles == [clip["title"] for clip in doc["clips"]]
    for clip in doc["clips"]:
        assert f'src="clips/{clip["gcsUri"].rsplit("/", 1)[-1]}"' in page


def test_each_clip_poster_is_copied_beside_its_video_and_shown(stack: Stack, standin) -> None:
    conclude(stack, standin)

    doc = json.loads(output(stack, "talk.mp4/clips.json"))
    page = output(stack, "talk.mp4/index.html").decode()
    for clip in doc["clips"]:
        poster = clip["thumbnailUri"]
        assert poster.endswith(".jpg") and poster.removesuffix(".jpg") == clip["gcsUri"].removesuffix(".mp4")
        assert output(stack, poster.split("/", 3)[3])
        assert f'poster="clips/{poster.rsplit("/", 1)[-1]}"' in page


def test_a_stalled_project_gets_a_page_that_says_so(stack: Stack, standin) -> None:
    standin.stall_next()
    resource = conclude(stack, standin)  # first seen stalled: watched for the grace
    past_the_grace = services(stack, STALLED_GRACE_SECONDS="60")
    past_the_grace.wall = lambda: time.time() + 24 * 3600.0 + 61
    sweep(past_the_grace)

    assert record(stack, resource).state == states.FAILED
    page = output(stack, "talk.mp4/index.html").decode()
    assert "project-stalled" in page and "opus-pipeline retry" in page
