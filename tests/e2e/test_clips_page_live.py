"""The page of a video concluded by the pipeline, opened from the storage emulator in headless Chromium.

Everything on the way is real: the video is uploaded to fake-gcs-server, streamed into the
stand-in, its project concluded by the sweeper, its clips (real MP4s the stand-in made with ffmpeg)
and posters copied into the output bucket; the browser then opens ``index.html`` the way a person
opens it from the console, by its object URL, and plays what it finds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from opus_pipeline.domain import states
from opus_pipeline.usecases.sweep import sweep

from browser import chromium, missing_tools, visit
from conftest import Stack
from support import create, record, services, uploaded, wait_for

HOSTILE_TITLE = "<img src=x onerror=window.__pwned=1> clip {rank}"
HOSTILE_DESCRIPTION = "</video><script>window.__pwned=1</script> said OpusClip"
VIDEOS_PLAY = "() => [...document.querySelectorAll('video')].every(v => v.currentTime > 0.3 && !v.error)"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if missing := missing_tools():
        pytest.fail(f"the browser tests need {', '.join(missing)}: apt-get install chromium ffmpeg")
    with chromium() as running:
        yield running


@pytest.fixture
def concluded_page(request: pytest.FixtureRequest, stack: Stack, standin, gcs: str) -> tuple[str, dict]:
    """The local address of a concluded video's page, and its manifest (the clips' text as the
    test's ``indirect`` parameter says OpusClip writes it)."""
    standin.configure(projectSeconds=0.5, clipsPerProject=3, scoredClips="all", **getattr(request, "param", {}))
    resource, request = uploaded(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    svc = services(stack)
    svc.wall = lambda: time.time() + 24 * 3600.0
    sweep(svc)
    assert record(stack, resource).state == states.CLIPS_READY
    doc = json.loads(stack.storage.bucket(stack.output_bucket).blob("talk.mp4/clips.json").download_as_bytes())
    return f"{gcs}/{stack.output_bucket}/{quote('talk.mp4')}/index.html", doc


def test_the_clips_of_a_concluded_video_appear_best_first(browser, concluded_page) -> None:
    url, doc = concluded_page
    with visit(browser, url) as seen:
        titles = seen.js("[...document.querySelectorAll('.clip .title')].map(e => e.textContent)")
    assert titles == [clip["title"] for clip in doc["clips"]]
    assert [clip["rank"] for clip in doc["clips"]] == [1, 2, 3]


def test_the_copied_clips_load_and_play_in_place(browser, concluded_page) -> None:
    url, _ = concluded_page
    with visit(browser, url) as seen:
        assert seen.js("document.querySelectorAll('video').length") == 3
        seen.js("() => Promise.all([...document.querySelectorAll('video')].map(v => (v.muted = true, v.play())))")
        seen.page.wait_for_function(VIDEOS_PLAY, timeout=20_000)
        assert seen.failed_responses == [] and seen.console_errors == []
        if path := os.environ.get("CLIPS_PAGE_SCREENSHOT"):  # the README's picture comes from here
            seen.js("() => document.querySelectorAll('video').forEach(v => v.pause())")
            seen.page.screenshot(path=path, full_page=True)


@pytest.mark.parametrize(
    "concluded_page", [{"clipTitle": HOSTILE_TITLE, "clipDescription": HOSTILE_DESCRIPTION}], indirect=True
)
def test_opusclips_text_is_shown_as_text_never_as_markup(browser, concluded_page) -> None:
    url, _ = concluded_page
    with visit(browser, url) as seen:
        assert seen.js("typeof window.__pwned") == "undefined"
        assert seen.js("document.querySelectorAll('img, script').length") == 0
        assert seen.page.locator(".clip .title").first.inner_text() == HOSTILE_TITLE.format(rank=1)
        assert seen.page.locator(".clip .description").first.inner_text() == HOSTILE_DESCRIPTION


def test_each_clip_offers_the_captions_the_pipeline_wrote_as_a_track(browser, concluded_page) -> None:
    url, doc = concluded_page
    with visit(browser, url) as seen:
        tracks = "[...document.querySelectorAll('video')].map(v => [...v.textTracks].map(t => t.kind))"
        assert seen.js(tracks) == [["captions"]] * 3
        seen.js("() => document.querySelectorAll('video').forEach(v => { v.textTracks[0].mode = 'hidden'; })")
        seen.page.wait_for_function(
            "() => [...document.querySelectorAll('video')].every(v => (v.textTracks[0].cues || []).length > 0)",
            timeout=10_000,
        )
        first = seen.js("[...document.querySelectorAll('video')].map(v => v.textTracks[0].cues[0].startTime)")
        assert first == [0, 0, 0]
        assert seen.failed_responses == [] and seen.console_errors == []
    assert all(clip["captions"]["vtt"].endswith(".vtt") for clip in doc["clips"])
