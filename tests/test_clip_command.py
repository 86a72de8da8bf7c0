"""The clip-project request body and the project's own schema of it (pure logic)."""

from __future__ import annotations

import pytest

from opus_local.clip_schema import problems as standin_problems
from opus_pipeline.domain.preferences import parse_metadata
from opus_pipeline.domain.project_request import build_command, check_command
from opus_pipeline.errors import InvalidCommandError


def test_minimal_body_is_only_the_upload_id() -> None:
    assert build_command("up_1", parse_metadata({})) == {"videoUrl": "up_1"}


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
        },
        "importPref": {"sourceLang": "auto"},
        "brandTemplateId": "preset-fancy-Karaoke",
        "conclusionActions": [{"type": "EMAIL", "notifyFailure": True, "email": "a@b.co"}],
    }
    check_command(body)
    assert standin_problems(body) == []  # OpusClip's own components agree


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"videoUrl": "u", "curationPref": {"genre": "Polka"}}, "curationPref.genre"),
        ({"videoUrl": "u", "curationPref": {"clipDurations": [[0, 45]]}}, "curationPref.clipDurations.0"),
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
        {"videoUrl": "u", "curationPref": {"clipDurations": [[0, 45]]}},
        {"videoUrl": "u", "colour": "red"},
    ],
)
def test_the_standin_rejects_what_our_schema_rejects(body: dict) -> None:
    assert standin_problems(body)
