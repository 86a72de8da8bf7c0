"""What a concluded project brings back besides its files, through the stand-in over HTTP and the
emulators: caption files from OpusClip's transcript, the preview when there is no HD file, the best
clips only when asked, and the organisation header on every call."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import requests
from jsonschema import Draft202012Validator

from opus_pipeline.domain import states
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.errors import OpusApiError
from opus_pipeline.opus.client import OpusClient
from opus_pipeline.runtime import Services
from opus_pipeline.usecases.sweep import sweep

from conftest import API_KEY, CHUNK, Stack
from support import create, ingest, record, services, video, wait_for

LATER = 24 * 3600.0
# The OpenAPI's TranscriptResponse, TranscriptExportParagraph and TranscriptExportWord (shared/opus-api).
WORD = {
    "type": "object",
    "required": ["word", "start", "end"],
    "properties": {
        "word": {"type": "string"},
        "start": {"type": "number"},
        "end": {"type": "number"},
        "isFillerWord": {"type": "boolean"},
    },
}
PARAGRAPH = {
    "type": "object",
    "required": ["id", "start", "end", "text", "words"],
    "properties": {
        "id": {"type": "integer"},
        "start": {"type": "number"},
        "end": {"type": "number"},
        "text": {"type": "string"},
        "speaker": {"type": "string"},
        "words": {"type": "array", "items": WORD},
    },
}
TRANSCRIPT_RESPONSE = {
    "type": "object",
    "properties": {"data": {"type": "array", "items": {"type": ["array", "null"], "items": PARAGRAPH}}},
}
ORG = "org_Example00000001"
TIMING = re.compile(r"^\d\d:\d\d:\d\d[.,]\d{3} --> \d\d:\d\d:\d\d[.,]\d{3}$")


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=3, clipBytes=300_000, scoredClips="all")


def completed(stack: Stack, standin, metadata: dict | None = None, **env: str) -> tuple[dict, Services]:
    """A video uploaded and its project created and COMPLETE; services whose sweeps are a day later."""
    resource = stack.put("talk.mp4", video(CHUNK + 1), metadata=metadata)
    assert ingest(stack, resource, **env) == states.QUEUED
    [received] = stack.pull()
    assert create(stack, ClipRequest.decode(received.message.data), **env) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    svc = services(stack, **env)
    svc.wall = lambda: time.time() + LATER
    return resource, svc


def concluded(stack: Stack, standin, metadata: dict | None = None, **env: str) -> dict:
    """The sweeper's conclusion of a COMPLETE project; the manifest."""
    resource, svc = completed(stack, standin, metadata, **env)
    assert sweep(svc).concluded == 1
    assert record(stack, resource).state == states.CLIPS_READY
    return json.loads(output(stack, "talk.mp4/clips.json"))


def output(stack: Stack, name: str) -> bytes:
    return stack.storage.bucket(stack.output_bucket).blob(name).download_as_bytes()


def object_names(stack: Stack) -> set[str]:
    return {blob.name for blob in stack.storage.list_blobs(stack.output_bucket)}


def key(gcs_uri: str) -> str:
    return gcs_uri.split("/", 3)[3]


def transcript(stack: Stack, project_id: str) -> dict:
    """The stand-in's answer to ``GET /api/transcripts``, asked as a client of OpusClip asks."""
    response = requests.get(
        f"{stack.standin_url}/api/transcripts",
        params={"q": "findByProjectId", "projectId": project_id},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


def transcript_words(stack: Stack, project_id: str) -> list[dict]:
    return [word for paragraph in transcript(stack, project_id)["data"][0] for word in paragraph["words"]]


def caption_words(text: str) -> list[str]:
    """The words of a caption file's cues, in order (its numbers, times and header left out)."""
    lines = [line for line in text.splitlines() if line and line != "WEBVTT" and not line.isdigit()]
    return [word for line in lines if not TIMING.match(line) for word in line.split()]


def cue_times(text: str) -> list[tuple[float, float]]:
    def seconds(stamp: str) -> float:
        hours, minutes, rest = stamp.replace(",", ".").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(rest)

    return [tuple(map(seconds, line.split(" --> "))) for line in text.splitlines() if TIMING.match(line)]


# -- captions ----------------------------------------------------------------------------------


def test_each_copied_clip_gets_srt_and_vtt_files_beside_its_video(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin)
    assert manifest["transcriptAvailable"] is True
    for clip in manifest["clips"]:
        stem = key(clip["gcsUri"]).removesuffix(".mp4")
        assert clip["captions"] == {kind: f"gs://{stack.output_bucket}/{stem}.{kind}" for kind in ("srt", "vtt")}
        assert output(stack, f"{stem}.vtt").startswith(b"WEBVTT\n\n")
        assert output(stack, f"{stem}.srt").startswith(b"1\n00:00:00,000 --> ")


def test_captions_hold_the_words_said_inside_the_clip_timed_from_its_start(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin)
    said = transcript_words(stack, manifest["projectId"])
    for clip in manifest["clips"]:
        [[start, end]] = clip["timeRanges"]
        expected = [w["word"] for w in said if start <= w["start"] < end]
        vtt = output(stack, key(clip["captions"]["vtt"])).decode()
        srt = output(stack, key(clip["captions"]["srt"])).decode()
        assert expected and caption_words(vtt) == expected == caption_words(srt)
        times = cue_times(vtt)
        assert times[0][0] == 0 and all(0 <= a <= b <= end - start for a, b in times)
        assert times == cue_times(srt)


def test_the_manifest_keeps_the_clip_text_and_its_time_ranges_in_seconds(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin)
    for rank, clip in enumerate(manifest["clips"], start=1):
        assert clip["timeRanges"] == [[60.0 * rank, 60.0 * rank + 15 + 5 * rank]]  # the stand-in sent ms
        assert clip["text"] == f"Transcript of clip {rank}."


def test_time_ranges_sent_in_seconds_give_the_same_captions(stack: Stack, standin) -> None:
    in_ms = concluded(stack, standin)
    first = [output(stack, key(clip["captions"]["vtt"])) for clip in in_ms["clips"]]
    standin.configure(timeRanges="seconds")
    in_seconds = concluded(stack, standin)
    assert [c["timeRanges"] for c in in_seconds["clips"]] == [c["timeRanges"] for c in in_ms["clips"]]
    assert [output(stack, key(c["captions"]["vtt"])) for c in in_seconds["clips"]] == first


def test_filler_words_stay_unless_the_clip_had_them_removed(stack: Stack, standin) -> None:
    kept = concluded(stack, standin)
    words = caption_words(output(stack, key(kept["clips"][0]["captions"]["vtt"])).decode())
    assert {"um", "uh"} <= set(words)
    removed = concluded(stack, standin, OPUS_DEFAULT_REMOVE_FILLER_WORDS="true")
    words = caption_words(output(stack, key(removed["clips"][0]["captions"]["vtt"])).decode())
    assert words and not {"um", "uh"} & set(words)


def test_without_a_transcript_there_are_no_caption_files_and_no_failure(stack: Stack, standin) -> None:
    standin.configure(transcript=False)
    manifest = concluded(stack, standin)
    assert manifest["transcriptAvailable"] is False
    assert all(clip["copied"] and "captions" not in clip for clip in manifest["clips"])
    assert not [name for name in object_names(stack) if name.endswith((".srt", ".vtt"))]


def test_the_standins_transcript_has_the_documented_shape(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin)
    answer = transcript(stack, manifest["projectId"])
    Draft202012Validator(TRANSCRIPT_RESPONSE).validate(answer)
    assert answer["data"][0] and any(w["isFillerWord"] for p in answer["data"][0] for w in p["words"])
    standin.configure(transcript=False)
    assert transcript(stack, manifest["projectId"]) == {"data": [None]}


def test_the_transcript_is_read_once_per_project(stack: Stack, standin) -> None:
    concluded(stack, standin)
    assert standin.calls("transcripts") == 1


def test_a_transcript_lookup_that_fails_costs_the_captions_only(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "transcripts", "kind": "status", "status": 500, "times": 10})
    manifest = concluded(stack, standin)
    assert manifest["transcriptAvailable"] is False
    assert [clip["copied"] for clip in manifest["clips"]] == [True, True, True]


def test_a_rate_limited_transcript_lookup_is_tried_again_with_the_conclusion(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "transcripts", "kind": "status", "status": 429, "headers": {"Retry-After": "1"}})
    resource, svc = completed(stack, standin)
    sweep(svc)
    assert record(stack, resource).state == states.PROJECT_CREATED and not object_names(stack)
    later = svc.wall() + 60  # a failed conclusion is put off like a look (a minute at most, the first time)
    svc.wall = lambda: later
    assert sweep(svc).concluded == 1
    manifest = json.loads(output(stack, "talk.mp4/clips.json"))
    assert manifest["transcriptAvailable"] is True and standin.calls("transcripts") == 2


# -- quality -----------------------------------------------------------------------------------


def test_an_hd_file_is_copied_as_hd(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin)
    assert [clip["quality"] for clip in manifest["clips"]] == ["hd", "hd", "hd"]


def test_without_an_hd_file_the_preview_is_copied_and_said_to_be_one(stack: Stack, standin) -> None:
    standin.configure(previewOnly=True)
    manifest = concluded(stack, standin)
    md5s = standin.clip_md5s(manifest["projectId"])
    for clip in manifest["clips"]:
        assert "uriForExport" not in clip and clip["copied"] and clip["quality"] == "preview"
        blob = stack.storage.bucket(stack.output_bucket).get_blob(key(clip["gcsUri"]))
        assert base64.b64decode(blob.md5_hash).hex() == md5s[clip["id"]]
    page = output(stack, "talk.mp4/index.html").decode()
    assert page.count('<span class="quality">preview copy</span>') == 3


# -- the best clips only -----------------------------------------------------------------------


def test_copy_top_copies_the_n_best_and_lists_the_others(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin, {"opus-copy-top": "1"})
    assert [clip["copied"] for clip in manifest["clips"]] == [True, False, False]
    assert all(clip["error"].startswith("not-selected") for clip in manifest["clips"][1:])
    assert len([name for name in object_names(stack) if "/clips/" in name and name.endswith(".mp4")]) == 1


def test_min_score_set_deploy_wide_copies_clips_scoring_at_least_it(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin, OPUS_DEFAULT_MIN_SCORE="80")
    assert [(clip["score"], clip["copied"]) for clip in manifest["clips"]] == [(93, True), (86, True), (79, False)]
    assert manifest["clips"][2]["error"] == "not-selected: its score 79 is below opus-min-score=80"


def test_with_both_a_clip_must_meet_both(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin, {"opus-copy-top": "2", "opus-min-score": "90"})
    assert [clip["copied"] for clip in manifest["clips"]] == [True, False, False]


def test_nothing_selected_reads_no_transcript(stack: Stack, standin) -> None:
    manifest = concluded(stack, standin, {"opus-min-score": "100"})
    assert [clip["copied"] for clip in manifest["clips"]] == [False, False, False]
    assert "transcriptAvailable" not in manifest and standin.calls("transcripts") == 0


# -- the organisation --------------------------------------------------------------------------


def test_opus_org_id_goes_with_every_call_under_api(stack: Stack, standin) -> None:
    standin.configure(orgId=ORG)
    manifest = concluded(stack, standin, OPUS_ORG_ID=ORG)
    assert [clip["copied"] for clip in manifest["clips"]] == [True, True, True] and manifest["transcriptAvailable"]
    stats = standin.stats()
    assert stats["refusedForOrganization"] == 0
    assert {"upload-links", "clip-projects", "project-get", "exportable-clips", "transcripts"} <= set(stats["calls"])


def test_a_workspace_that_needs_the_organisation_refuses_calls_without_it(stack: Stack, standin) -> None:
    standin.configure(orgId=ORG)
    with pytest.raises(OpusApiError):
        OpusClient(stack.standin_url, API_KEY).usage()
    assert OpusClient(stack.standin_url, API_KEY, org_id=ORG).usage().limit == 900
    assert standin.stats()["refusedForOrganization"] == 1
