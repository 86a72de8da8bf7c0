"""The clips page: pure tests of ``render_page``, then the page in a real chromium.

The browser tests serve a temporary folder laid out as the output bucket is
(``<source name>/index.html``, ``<source name>/clips/*.mp4`` and ``*.jpg``), with real H.264 clips
made by ffmpeg, because the promises are about a browser: that the clips play in place from
relative URLs, that OpusClip's text stays text, and that the page asks for nothing outside its
folder. ``CLIPS_PAGE_SCREENSHOT=path`` saves a PNG of the 3-clip page (docs/clips-page.png).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from opus_pipeline.domain.captions import Cue, to_vtt
from opus_pipeline.domain.clips_page import (
    CAPTIONS_KEY,
    CSP,
    THUMBNAIL_KEY,
    duration_text,
    https_url,
    relative_path,
    render_page,
)

from browser import StaticSite, Visit, chromium, make_clip, make_poster, missing_tools, visit

OUTPUT = "out-bucket"
SOURCE_BUCKET = "in-bucket"
TITLE_PAYLOAD = "<img src=x onerror=window.__pwned=1>"
DESCRIPTION_PAYLOAD = "</video><script>window.__pwned=1</script>"
ALL_VIDEOS_READY = "() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2)"


def clip(name: str, rank: int, ident: str, title: str, *, copied: bool = True, poster: bool = True, **extra: Any):
    """One manifest clip as the conclusion writes it, copied to ``clips/<ident>.mp4`` unless not."""
    entry: dict[str, Any] = {
        "id": f"P1.{ident}",
        "title": title,
        "description": f"What happens in {title}.",
        "hashtags": "#OpusClip #talk",
        "durationMs": 15_000 + 5_000 * rank,
        "rank": rank,
        "score": 100 - 7 * rank,
        "isBonusClip": False,
        "uriForExport": f"https://media.opus.example/P1/{ident}.mp4",
    }
    if copied:
        entry.update(copied=True, gcsUri=f"gs://{OUTPUT}/{name}/clips/{ident}.mp4", size=1, md5Hash="x")
        if poster:
            entry[THUMBNAIL_KEY] = f"gs://{OUTPUT}/{name}/clips/{ident}.jpg"
    else:
        entry.update(copied=False, error="OpusClip's media host answered HTTP 403 for a clip file")
    entry.update(extra)
    return entry


def captioned(name: str, ident: str) -> dict[str, dict[str, str]]:
    """The ``captions`` a clip copied to ``clips/<ident>.mp4`` gets beside it."""
    return {CAPTIONS_KEY: {kind: f"gs://{OUTPUT}/{name}/clips/{ident}.{kind}" for kind in ("srt", "vtt")}}


CAPTION = Cue(0.0, 1.5, ("hello from", "the <stand-in>"))


def manifest(name: str, clips: list[dict[str, Any]], stage: str = "COMPLETE") -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "source": {"bucket": SOURCE_BUCKET, "name": name, "generation": "1712345678901234"},
        "uploadId": "U1",
        "projectId": "P1",
        "stage": stage,
        "concludedAt": "2026-05-04T10:11:12Z",
        "clips": clips,
    }


def three_clips(name: str) -> list[dict[str, Any]]:
    return [
        clip(
            name,
            1,
            "c-best",
            "Why the demo worked the first time",
            description="The speaker admits the demo was rehearsed forty times, and shows the step that always broke.",
            hashtags="#demo #live #engineering",
        ),
        clip(
            name,
            2,
            "c-second",
            "The one question nobody asked",
            description="Q&A: what happens to a clip when the upload is cut halfway through.",
            hashtags="#QandA #uploads",
        ),
        clip(name, 3, "c-third", "Thirty seconds on caching", hashtags="#caching #performance #tips"),
    ]


# -- render_page alone ----------------------------------------------------------------------------


def test_every_opus_string_is_escaped_in_text_and_attributes() -> None:
    name = 'talks/"quoted" <name>.mp4'
    hostile = clip(
        name,
        1,
        'id"><b>',
        TITLE_PAYLOAD,
        description=DESCRIPTION_PAYLOAD,
        hashtags='#a<b> #"c"',
        genre="<i>Podcast</i>",
    )
    failed = clip(name, 2, "x", "t", copied=False, error="<b>denied</b>", uriForExport='https://h/"><script>x</script>')
    page = render_page(manifest(name, [hostile, failed]))
    for raw in (TITLE_PAYLOAD, DESCRIPTION_PAYLOAD, "<b>", "<i>", '"><script>', '<name>"', "<b>denied"):
        assert raw not in page
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in page
    assert "&lt;/video&gt;&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert 'data-clip-id="P1.id&quot;&gt;&lt;b&gt;"' in page
    assert 'href="https://h/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page
    assert "<script" not in page.lower()


def test_copies_become_percent_encoded_urls_relative_to_the_page() -> None:
    name = "uploads/talk one.mp4"
    assert relative_path(f"gs://{OUTPUT}/{name}/clips/P1.c.mp4", name) == "clips/P1.c.mp4"
    assert relative_path(f'gs://{OUTPUT}/{name}/clips/a b"#?:<x>.mp4', name) == "clips/a%20b%22%23%3F%3A%3Cx%3E.mp4"
    assert relative_path(f"gs://{OUTPUT}/{name}/javascript:alert(1)", name) == "javascript%3Aalert%281%29"
    for outside in (
        f"gs://{OUTPUT}/other.mp4/clips/a.mp4",  # another video's folder
        f"gs://{OUTPUT}/{name}/clips/../../x.mp4",
        f"gs://{OUTPUT}/{name}/clips//a.mp4",
        f"gs://{OUTPUT}/{name}",
        f"https://{OUTPUT}/{name}/clips/a.mp4",
        None,
        42,
    ):
        assert relative_path(outside, name) is None, outside
    page = render_page(manifest(name, three_clips(name)))
    assert 'src="clips/c-best.mp4" poster="clips/c-best.jpg"' in page
    assert f"gs://{OUTPUT}/" not in page.split("<main>", 1)[1]


def test_only_https_links_from_opus_become_links() -> None:
    assert https_url("https://media.opus.example/a.mp4?sig=1&x=2") == "https://media.opus.example/a.mp4?sig=1&x=2"
    assert https_url("HTTPS://media.opus.example/a") == "HTTPS://media.opus.example/a"
    for bad in (
        "javascript:window.__pwned=1",
        "JavaScript:alert(1)",
        " https://media.opus.example/a",
        "https://media.opus.example/a b",
        "https://\tmedia.opus.example/",
        "https:\\\\evil.example/",
        "https:///path",
        "data:text/html,<script>1</script>",
        "http://media.opus.example/a",
        "//media.opus.example/a",
        None,
    ):
        assert https_url(bad) is None, bad
    failed = clip("v.mp4", 1, "c", "t", copied=False, uriForExport="javascript:window.__pwned=1")
    page = render_page(manifest("v.mp4", [failed]))
    assert "javascript" not in page and "OpusClip gave no usable link" in page


def test_a_poster_only_when_the_thumbnail_copy_exists() -> None:
    page = render_page(manifest("v.mp4", [clip("v.mp4", 1, "a", "A", poster=False), clip("v.mp4", 2, "b", "B")]))
    assert '<video controls preload="metadata" src="clips/a.mp4" title="A">' in page
    assert '<video controls preload="metadata" src="clips/b.mp4" poster="clips/b.jpg" title="B">' in page


def test_a_captioned_clip_offers_its_webvtt_file_as_a_track_of_its_player() -> None:
    page = render_page(manifest("v.mp4", [clip("v.mp4", 1, "a", "A", poster=False, **captioned("v.mp4", "a"))]))
    assert (
        '<video controls preload="metadata" src="clips/a.mp4" title="A">'
        '<track kind="captions" src="clips/a.vtt" label="Captions"><a href="clips/a.mp4">' in page
    )


def test_captions_outside_the_page_folder_are_not_offered() -> None:
    stray = clip("v.mp4", 1, "a", "A", captions={"vtt": f"gs://{OUTPUT}/other.mp4/clips/a.vtt"})
    assert "<track" not in render_page(manifest("v.mp4", [stray]))


def test_a_preview_copy_is_labelled_as_one() -> None:
    page = render_page(manifest("v.mp4", [clip("v.mp4", 1, "a", "A", quality="preview"), clip("v.mp4", 2, "b", "B")]))
    assert page.count('<span class="quality">preview copy</span>') == 1
    assert page.index("preview copy") < page.index('data-clip-id="P1.b"')


def test_durations_show_as_minutes_and_seconds() -> None:
    assert [duration_text(ms) for ms in (0, 15_000, 59_499, 59_500, 65_432, 3_600_000)] == [
        "0:00",
        "0:15",
        "0:59",
        "1:00",
        "1:05",
        "60:00",
    ]
    assert [duration_text(v) for v in (None, "15000", True, -1, float("nan"), float("inf"))] == [None] * 6


def test_a_rank_or_score_too_big_for_a_float_is_left_off_the_card() -> None:
    huge = 10**400  # what Python's JSON reader makes of a 401-digit integer: no float holds it
    odd = {**clip("v.mp4", 1, "a", "A"), "rank": huge, "score": huge}
    page = render_page(manifest("v.mp4", [odd]))
    assert 'class="rank"' not in page and "score 1000" not in page


def test_a_copy_outside_the_page_folder_gets_no_player() -> None:
    stray = clip("v.mp4", 1, "a", "A", gcsUri=f"gs://{OUTPUT}/elsewhere/clips/a.mp4")
    page = render_page(manifest("v.mp4", [stray]))
    assert "<video" not in page and "is not in this page&#x27;s folder" in page


def test_the_page_brings_everything_it_needs_and_forbids_loads() -> None:
    page = render_page(manifest("v.mp4", three_clips("v.mp4")))
    escaped_csp = CSP.replace("'", "&#x27;")
    assert f'<meta http-equiv="Content-Security-Policy" content="{escaped_csp}">' in page
    assert "default-src 'none'" in CSP and "script-src" not in CSP
    lowered = page.lower()
    assert "<script" not in lowered and "@import" not in lowered and "url(" not in lowered
    assert lowered.count("<link") == 1 and '<link rel="icon" href="data:image/svg+xml,' in lowered


def test_a_failed_project_names_the_command_that_starts_over() -> None:
    minimal = {"source": {"bucket": "in", "name": "my talk.mp4"}, "projectId": "P9", "stage": "STALLED"}
    page = render_page(minimal, failure="project-stalled: OpusClip stalled the project")
    assert "OpusClip did not finish this project" in page
    assert "project-stalled: OpusClip stalled the project" in page
    assert "<code>opus-pipeline retry &#x27;gs://in/my talk.mp4&#x27;</code>" in page
    assert "<ol" not in page and "OpusClip found no clips" not in page


# -- in chromium ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if missing := missing_tools():
        pytest.fail(f"the browser tests need {', '.join(missing)}: apt-get install chromium ffmpeg")
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real clip and three posters (different frames), made once and copied into each page."""
    folder = tmp_path_factory.mktemp("media")
    video = make_clip(folder / "clip.mp4")
    posters = {f"poster{i}": make_poster(video, folder / f"poster{i}.jpg", at_seconds=0.6 * i) for i in range(3)}
    return {"video": video, **posters}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    served = StaticSite(tmp_path_factory.mktemp("output-bucket"))
    yield served
    served.stop()


def publish(site: StaticSite, media: dict[str, Path], doc: dict[str, Any], failure: str | None = None) -> str:
    """Lay out ``<name>/index.html`` and each copy the manifest claims, as the bucket would hold them."""
    name = doc["source"]["name"]
    folder = site.root / name
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for index, entry in enumerate(doc["clips"]):
        if entry.get("copied"):
            shutil.copyfile(media["video"], folder / entry["gcsUri"].split(f"/{name}/", 1)[1])
        if THUMBNAIL_KEY in entry:
            shutil.copyfile(media[f"poster{index % 3}"], folder / entry[THUMBNAIL_KEY].split(f"/{name}/", 1)[1])
        if CAPTIONS_KEY in entry:
            (folder / entry[CAPTIONS_KEY]["vtt"].split(f"/{name}/", 1)[1]).write_text(to_vtt([CAPTION]))
    (folder / "index.html").write_text(render_page(doc, failure=failure), encoding="utf-8")
    return folder_url(site, name) + "index.html"


def folder_url(site: StaticSite, name: str) -> str:
    return f"{site.origin}/{quote(name)}/"


def texts(seen: Visit, selector: str) -> list[str]:
    return seen.js("s => [...document.querySelectorAll(s)].map(e => e.textContent)", selector)


def test_the_clips_appear_best_first(browser, site, media) -> None:
    name = "uploads/ranked talk.mp4"
    doc = manifest(name, three_clips(name))
    with visit(browser, publish(site, media, doc), viewport=(1280, 640)) as seen:
        assert texts(seen, ".clip .title") == [c["title"] for c in doc["clips"]]
        assert texts(seen, ".clip .rank") == ["#1", "#2", "#3"]
        assert texts(seen, ".clip .duration") == ["0:20", "0:25", "0:30"]
        assert seen.js("document.title") == f"3 clips of {name}"
        if target := os.environ.get("CLIPS_PAGE_SCREENSHOT"):
            seen.page.wait_for_function(ALL_VIDEOS_READY, timeout=10_000)
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            seen.page.screenshot(path=target, full_page=True)


def test_every_clip_loads_and_plays_in_place(browser, site, media) -> None:
    name = "uploads/playing talk.mp4"
    with visit(browser, publish(site, media, manifest(name, three_clips(name)))) as seen:
        assert seen.js("document.querySelectorAll('video').length") == 3
        seen.page.wait_for_function(ALL_VIDEOS_READY, timeout=10_000)
        assert seen.js("[...document.querySelectorAll('video')].map(v => v.error)") == [None] * 3
        assert seen.js("[...document.querySelectorAll('video')].map(v => v.paused)") == [True] * 3  # no autoplay
        seen.js("() => Promise.all([...document.querySelectorAll('video')].map(v => (v.muted = true, v.play())))")
        seen.page.wait_for_function(
            "() => [...document.querySelectorAll('video')].every(v => v.currentTime > 0.3 && !v.error)", timeout=10_000
        )
        assert seen.failed_responses == [] and seen.console_errors == []
    served = {path for path, status in site.log if status == 200}
    for ident in ("c-best", "c-second", "c-third"):
        assert f"/{quote(name)}/clips/{ident}.jpg" in served  # the poster too


def test_a_clip_with_captions_shows_them_as_a_caption_track(browser, site, media) -> None:
    name = "uploads/captioned talk.mp4"
    clips = [clip(name, 1, "c-cap", "Captioned", **captioned(name, "c-cap")), clip(name, 2, "c-plain", "Plain")]
    with visit(browser, publish(site, media, manifest(name, clips))) as seen:
        kinds = "[...document.querySelectorAll('video')].map(v => [...v.textTracks].map(t => t.kind + ':' + t.label))"
        assert seen.js(kinds) == [["captions:Captions"], []]
        seen.js("() => { document.querySelector('video').textTracks[0].mode = 'showing'; }")
        seen.page.wait_for_function(
            "() => (document.querySelector('video').textTracks[0].cues || []).length === 1", timeout=10_000
        )
        cue = seen.js(
            "(() => { const c = document.querySelector('video').textTracks[0].cues[0]; "
            "return [c.startTime, c.endTime, c.text]; })()"
        )
        assert cue == [0, 1.5, "hello from\nthe &lt;stand-in&gt;"]
        assert seen.failed_responses == [] and seen.console_errors == []
    assert f"/{quote(name)}/clips/c-cap.vtt" in {path for path, status in site.log if status == 200}


def test_a_file_name_with_odd_characters_still_plays(browser, site, media) -> None:
    name = "uploads/odd names.mp4"
    odd = clip(name, 1, 'a "b" #1?&c', "Odd", gcsUri=f'gs://{OUTPUT}/{name}/clips/a "b" #1?&c.mp4', poster=False)
    with visit(browser, publish(site, media, manifest(name, [odd]))) as seen:
        seen.page.wait_for_function(ALL_VIDEOS_READY, timeout=10_000)
        assert seen.js("document.querySelector('video').currentSrc").endswith("/clips/a%20%22b%22%20%231%3F%26c.mp4")


def test_opus_text_cannot_inject_markup(browser, site, media) -> None:
    name = "uploads/hostile talk.mp4"
    hostile = clip(name, 1, "c-1", TITLE_PAYLOAD, description=DESCRIPTION_PAYLOAD, hashtags="#<u>x</u>")
    bad_link = clip(name, 2, "c-2", "Bad link", copied=False, uriForExport="javascript:window.__pwned=1")
    with visit(browser, publish(site, media, manifest(name, [hostile, bad_link]))) as seen:
        assert seen.js("typeof window.__pwned") == "undefined"
        assert texts(seen, ".clip .title") == [TITLE_PAYLOAD, "Bad link"]
        assert texts(seen, ".clip .description")[0] == DESCRIPTION_PAYLOAD
        assert seen.page.locator(".clip .title").first.inner_text() == TITLE_PAYLOAD  # shown, not just present
        assert seen.js("document.querySelectorAll('img, script, u').length") == 0
        assert seen.js("document.querySelectorAll('.clip video').length") == 1
        assert set(seen.js("[...document.links].map(a => a.protocol)")) == {"http:"}  # no javascript: link
        assert seen.js("document.querySelectorAll('.clip')[1].querySelector('a')") is None


def test_the_page_asks_for_nothing_outside_its_folder(browser, site, media) -> None:
    name = "uploads/private talk.mp4"
    clips = [*three_clips(name), clip(name, 4, "c-gone", "Not copied", copied=False)]
    clips[0]["description"] = '<img src="https://tracker.example/p.gif"><link rel=stylesheet href=//cdn.example/x.css>'
    before = len(site.log)
    with visit(browser, publish(site, media, manifest(name, clips))) as seen:
        seen.page.wait_for_function(ALL_VIDEOS_READY, timeout=10_000)
        seen.page.wait_for_load_state("networkidle")
        requests = list(seen.requests)
    inside = folder_url(site, name)
    assert requests and requests[0] == inside + "index.html"
    assert [url for url in requests if not url.startswith(inside)] == []
    asked = {url[len(inside) :] for url in requests}
    assert asked >= {"index.html", "clips/c-best.mp4", "clips/c-best.jpg", "clips/c-third.mp4"}
    assert [path for path, _ in site.log[before:] if not path.startswith(f"/{quote(name)}/")] == []
    # The browser asks for some things (its favicon) once, whichever page comes first, and after load.
    time.sleep(0.3)
    assert [path for path, _ in site.log if not path.startswith("/uploads/")] == []


def test_a_clip_that_was_not_copied_shows_why_and_opus_link_instead_of_a_player(browser, site, media) -> None:
    name = "uploads/partly copied.mp4"
    clips = [clip(name, 1, "c-ok", "Copied"), clip(name, 2, "c-gone", "Not copied", copied=False)]
    with visit(browser, publish(site, media, manifest(name, clips))) as seen:
        cards = seen.page.locator(".clip")
        assert cards.nth(0).locator("video").count() == 1
        gone = cards.nth(1)
        assert gone.locator("video").count() == 0
        assert gone.locator(".reason").inner_text() == f"Not copied: {clips[1]['error']}"
        link = gone.locator("a.opus-link")
        assert link.get_attribute("href") == "https://media.opus.example/P1/c-gone.mp4" and link.is_visible()


def test_a_project_with_no_clips_says_so(browser, site, media) -> None:
    name = "uploads/silent talk.mp4"
    with visit(browser, publish(site, media, manifest(name, []))) as seen:
        body = seen.page.locator("body").inner_text()
        assert "OpusClip found no clips in this video" in body
        assert seen.js("document.querySelectorAll('.clip, video').length") == 0
        assert seen.page.locator(".fact-clips dd").inner_text() == "0"


def test_a_stalled_project_says_so_and_how_to_start_over(browser, site, media) -> None:
    name = "uploads/stalled talk.mp4"
    doc = manifest(name, [], stage="STALLED")
    failure = "project-stalled: OpusClip stalled project P1"
    with visit(browser, publish(site, media, doc, failure=failure)) as seen:
        alert = seen.page.get_by_role("alert")
        assert "OpusClip did not finish this project" in alert.inner_text()
        assert failure in alert.inner_text()
        assert alert.locator("code").inner_text() == f"opus-pipeline retry 'gs://{SOURCE_BUCKET}/{name}'"
        assert seen.page.locator(".fact-stage dd").inner_text() == "STALLED"
