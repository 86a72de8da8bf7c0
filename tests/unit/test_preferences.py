"""opus-* metadata → OpusClip preferences (pure logic)."""

from __future__ import annotations

import pytest

from opus_pipeline.domain.preferences import (
    Preferences,
    built_in,
    check_combination,
    effective,
    parse_metadata,
    to_metadata,
)
from opus_pipeline.errors import PreferenceError


def test_every_key_parses_to_opusclip_field_names() -> None:
    prefs = parse_metadata(
        {
            "opus-genre": "how-to",
            "opus-topic-keywords": "AI, startups ,",
            "opus-clip-durations": "0-30, 90-180",
            "opus-range": "28-636",
            "opus-source-lang": "de",
            "opus-brand-template-id": "preset-fancy-Karaoke",
            "opus-skip-curate": "TRUE",
        }
    )
    assert prefs.to_message() == {
        "genre": "How-to",
        "topicKeywords": ["AI", "startups"],
        "clipDurations": [[0, 30], [90, 180]],
        "range": {"startSec": 28, "endSec": 636},
        "sourceLang": "de",
        "brandTemplateId": "preset-fancy-Karaoke",
        "skipCurate": True,
    }


def test_unset_preferences_are_omitted() -> None:
    assert parse_metadata({}).to_message() == {}
    assert parse_metadata(None).to_message() == {}


def test_other_metadata_and_status_keys_are_ignored() -> None:
    prefs = parse_metadata({"owner": "me", "opus-status": "failed", "opus-error": "x", "opus-upload-id": "u"})
    assert prefs == Preferences()


def test_unknown_opus_key_names_the_accepted_keys() -> None:
    with pytest.raises(PreferenceError, match="opus-genre, opus-topic-keywords"):
        parse_metadata({"opus-language": "en"})


def test_all_offered_clip_durations_are_accepted() -> None:
    prefs = parse_metadata({"opus-clip-durations": "0-30,30-60,60-90,90-180,0-90"})
    assert prefs.clipDurations == ((0, 30), (30, 60), (60, 90), (90, 180), (0, 90))


@pytest.mark.parametrize("value", ["auto", "en", "pt-BR", "zh-Hans"])
def test_source_lang_accepts_auto_and_iso_codes(value: str) -> None:
    assert parse_metadata({"opus-source-lang": value}).sourceLang == value


def test_per_video_values_override_defaults_field_by_field() -> None:
    defaults = parse_metadata({"opus-genre": "Podcast", "opus-source-lang": "en"})
    video = parse_metadata({"opus-genre": "Vlog"})
    assert video.over(defaults).to_message() == {"genre": "Vlog", "sourceLang": "en"}


def test_message_round_trip_normalises_and_validates() -> None:
    prefs = parse_metadata({"opus-genre": "q&a", "opus-range": "0-10"})
    assert Preferences.from_message(prefs.to_message()) == prefs
    with pytest.raises(PreferenceError):
        Preferences.from_message({"genre": "Nope"})
    with pytest.raises(PreferenceError):
        Preferences.from_message({"colour": "red"})


def test_metadata_round_trip_for_the_cli() -> None:
    prefs = parse_metadata({"opus-topic-keywords": "a,b", "opus-skip-curate": "false", "opus-range": "1-2"})
    assert parse_metadata(to_metadata(prefs)) == prefs


@pytest.mark.parametrize("value", ["0-1", "0-30,0-60", "0-180", "0-45,30-60"])
def test_up_to_n_seconds_durations_as_opusclips_own_client_sends_are_accepted(value: str) -> None:
    assert parse_metadata({"opus-clip-durations": value}).clipDurations


@pytest.mark.parametrize("value", ["0-181", "15-45", "0-0"])
def test_other_durations_are_refused(value: str) -> None:
    with pytest.raises(PreferenceError, match="opus-clip-durations"):
        parse_metadata({"opus-clip-durations": value})


def test_model_and_aspect_ratio_take_any_case_and_answer_opusclips_spelling() -> None:
    prefs = parse_metadata({"opus-model": "clipanything", "opus-aspect-ratio": "SQUARE"})
    assert (prefs.model, prefs.layoutAspectRatio) == ("ClipAnything", "square")


def test_a_prompt_of_more_than_1000_characters_is_refused() -> None:
    assert parse_metadata({"opus-prompt": "x" * 1000}).customPrompt == "x" * 1000
    with pytest.raises(PreferenceError, match="at most 1000"):
        parse_metadata({"opus-prompt": "x" * 1001})


@pytest.mark.parametrize(
    "metadata",
    [
        {"opus-prompt": "the funny bits"},
        {"opus-prompt": "the funny bits", "opus-model": "ClipBasic"},
        {"opus-topic-keywords": "AI", "opus-model": "ClipAnything"},
    ],
)
def test_combinations_opusclip_would_ignore_are_refused(metadata: dict) -> None:
    with pytest.raises(PreferenceError, match=r"only read by the Clip(Anything|Basic) model"):
        check_combination(parse_metadata(metadata))


def test_a_combination_is_judged_after_the_defaults() -> None:
    video, defaults = parse_metadata({"opus-prompt": "the funny bits"}), parse_metadata({"opus-model": "ClipAnything"})
    assert effective(video, defaults, "talk.mp4").customPrompt == "the funny bits"
    with pytest.raises(PreferenceError):
        effective(parse_metadata({"opus-topic-keywords": "AI"}), defaults, "talk.mp4")


@pytest.mark.parametrize(
    ("name", "title"), [("talk.mp4", "talk"), ("shows/2026/ep12.final.mov", "ep12.final"), ("raw", "raw")]
)
def test_the_built_in_title_is_the_file_name_without_folders_and_extension(name: str, title: str) -> None:
    assert built_in(name).title == title


def test_clip_durations_are_always_set_and_chosen_ones_win() -> None:
    assert effective(Preferences(), Preferences(), "a.mp4").clipDurations == ((0, 90),)
    chosen = parse_metadata({"opus-clip-durations": "0-30"})
    assert effective(Preferences(), chosen, "a.mp4").clipDurations == ((0, 30),)
