"""The clip-project request body and the project's own schema of it (pure logic)."""

from __future__ import annotations

import pytest

from opus_local.clip_schema import problems as standin_problems
from opus_pipeline.domain.preferences import built_in, parse_metadata
from opus_pipeline.domain.project_request import build_command, check_command
from opus_pipeline.errors import InvalidCommandError


def test_minimal_body_is_the_upload_id_clip_durations_and_title() -> None:
    body = build_command("up_1", built_in("shows/ep12.final.mp4"))
    assert body == {
        "videoUrl": "up_1",
        "curationPref": {"clipDurations": [[0, 90]]},
        "uploadedVideoAttr": {"title": "ep12.final"},
    }
    check_command(body)
    assert standin_problems(body) == []


def test_a_body_without_clip_durations_is_refused_by_both_schemas() -> None:
    """OpusClip's own client: "API rejects payloads without curationPref.clipDurations"."""
    body = build_command("up_1", parse_metadata({}))
    with pytest.raises(InvalidCommandError, match="'curationPref' is a required property"):
        check_command(body)
    with pytest.raises(InvalidCommandError, match="'clipDurations' is a required property"):
        check_command({**body, "curationPref": {"genre": "Auto"}})
    assert standin_problems(body) == ["curationPref/clipDurations is required"]


@pytest.mark.parametrize("durations", [[[0, 1]], [[0, 30], [0, 60]], [[0, 180], [30, 60]]])
def test_up_to_n_seconds_pairs_are_accepted_by_both_schemas(durations: list) -> None:
    body = {"videoUrl": "u", "curationPref": {"clipDurations": durations}}
    check_command(body)
    assert standin_problems(body) == []


def test_every_preference_lands_in_its_documented_place() -> None:
    prefs = parse_metadata(
        {
            "opus-genre": "Podcast",
            "opus-topic-keywords": "AI",
            "opus-clip-durations": "0-90",
            "opus-range": "28-636",
            "opus-source-lang": "auto",
            "opus-brand-template-id": "preset-fancy-Karaoke",
            "opus-skip-curate": "false",
            "opus-model": "ClipBasic",
            "opus-aspect-ratio": "landscape",
            "opus-remove-filler-words": "true",
            "opus-auto-hook": "false",
            "opus-title": "Episode 12",
        }
    )
    body = build_command("up_1", prefs, notify_email="a@b.co")
    assert body == {
        "videoUrl": "up_1",
        "curationPref": {
            "range": {"startSec": 28, "endSec": 636},
            "clipDurations": [[0, 90]],
            "topicKeywords": ["AI"],
            "genre": "Podcast",
            "skipCurate": False,
            "model": "ClipBasic",
            "enableAutoHook": False,
        },
        "importPref": {"sourceLang": "auto"},
        "renderPref": {"layoutAspectRatio": "landscape", "quickstartConfig": {"enableRemoveFillerWords": True}},
        "uploadedVideoAttr": {"title": "Episode 12"},
        "brandTemplateId": "preset-fancy-Karaoke",
        "conclusionActions": [{"type": "EMAIL", "notifyFailure": True, "email": "a@b.co"}],
    }
    check_command(body)
    assert standin_problems(body) == []  # OpusClip's own components agree


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"videoUrl": "u", "curationPref": {"genre": "Polka"}}, "curationPref.genre"),
        ({"videoUrl": "u", "curationPref": {"clipDurations": [[15, 45]]}}, "curationPref.clipDurations.0"),
        ({"videoUrl": "u", "curationPref": {"clipDurations": [[0, 181]]}}, "curationPref.clipDurations.0"),
        (
            {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 90]]}, "renderPref": {"layoutAspectRatio": "4:3"}},
            "renderPref.layoutAspectRatio",
        ),
        (
            {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 90]], "customPrompt": "x" * 1001}},
            "curationPref.customPrompt",
        ),
        (
            {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 90]]}, "uploadedVideoAttr": {"tags": []}},
            "'tags' was unexpected",
        ),
        (
            {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 90]]}, "renderPref": {"enableCaption": "yes"}},
            "renderPref.enableCaption",
        ),
        ({"videoUrl": "u", "curationPref": {"range": {"startSec": 60, "endSec": 30}}}, "startSec must be less"),
        ({"videoUrl": "u", "brandTemplateId": None}, "brandTemplateId"),
        ({"videoUrl": "u", "colour": "red"}, "'colour' was unexpected"),
        ({"curationPref": {}}, "'videoUrl' is a required property"),
        ({"videoUrl": "u", "conclusionActions": [{"type": "WEBHOOK"}]}, "'url' is a required property"),
        ({"videoUrl": "u", "conclusionActions": [{"type": "SMS"}]}, "conclusionActions.0.type"),
        ({"videoUrl": "u", "importPref": {"sourceLang": "English"}}, "importPref.sourceLang"),
    ],
)
def test_schema_rejections_name_the_field(body: dict, words: str) -> None:
    with pytest.raises(InvalidCommandError, match=words.replace("(", r"\(")):
        check_command(body)


@pytest.mark.parametrize(
    "body",
    [
        {"videoUrl": "u", "curationPref": {"genre": "Polka"}},
        {"videoUrl": "u", "curationPref": {"clipDurations": [[15, 45]]}},
        {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 181]]}},
        {"videoUrl": "u", "colour": "red"},
    ],
)
def test_the_standin_rejects_what_our_schema_rejects(body: dict) -> None:
    assert standin_problems(body)
