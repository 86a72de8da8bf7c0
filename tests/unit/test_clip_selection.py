"""Which clips are copied when a user wants the best only (opus-copy-top, opus-min-score)."""

from __future__ import annotations

import pytest

from opus_pipeline.domain.clip_selection import not_selected
from opus_pipeline.domain.preferences import parse_metadata
from opus_pipeline.domain.project_request import build_command
from opus_pipeline.errors import PreferenceError

CLIPS = [{"id": "a", "score": 93}, {"id": "b", "score": 86}, {"id": "c", "score": 79}]


def test_without_a_choice_every_clip_is_copied() -> None:
    assert not_selected(CLIPS) == [None, None, None]


def test_copy_top_keeps_the_first_of_the_best_first_order() -> None:
    reasons = not_selected(CLIPS, copy_top=2)
    assert reasons[:2] == [None, None]
    assert reasons[2] == "not-selected: clip 3 of the best first is past opus-copy-top=2"


def test_a_score_too_big_for_a_float_is_no_score_to_meet_min_score() -> None:
    reasons = not_selected([{"id": "a", "score": 10**400}], min_score=50)  # a 401-digit JSON integer
    assert reasons == ["not-selected: OpusClip gave this clip no score to meet opus-min-score=50"]


def test_min_score_keeps_clips_scoring_at_least_it() -> None:
    reasons = not_selected(CLIPS, min_score=86)
    assert reasons[:2] == [None, None]
    assert reasons[2] == "not-selected: its score 79 is below opus-min-score=86"


def test_both_set_a_clip_must_meet_both() -> None:
    reasons = not_selected(CLIPS, copy_top=1, min_score=80)
    assert reasons[0] is None
    assert all(reason is not None and reason.startswith("not-selected") for reason in reasons[1:])


def test_a_clip_without_a_score_cannot_meet_a_minimum() -> None:
    clips = [{"id": "a"}, {"id": "b", "score": True}, {"id": "c", "score": float("nan")}]
    assert not_selected(clips) == [None, None, None]
    assert all("gave this clip no score" in (reason or "") for reason in not_selected(clips, min_score=0))


def test_copy_top_larger_than_the_list_copies_all() -> None:
    assert not_selected(CLIPS, copy_top=10) == [None, None, None]


# -- the preferences that choose ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "", "٣"])
def test_copy_top_is_a_whole_number_from_one(text: str) -> None:
    with pytest.raises(PreferenceError, match="opus-copy-top"):
        parse_metadata({"opus-copy-top": text})


@pytest.mark.parametrize("text", ["101", "-5", "high", "80.5"])
def test_min_score_is_a_whole_number_from_0_to_100(text: str) -> None:
    with pytest.raises(PreferenceError, match="from 0 to 100"):
        parse_metadata({"opus-min-score": text})


def test_the_videos_choice_wins_over_the_deploys() -> None:
    prefs = parse_metadata({"opus-copy-top": "1"}).over(parse_metadata({"opus-copy-top": "5", "opus-min-score": "70"}))
    assert (prefs.copyTop, prefs.minScore) == (1, 70)


def test_neither_is_sent_to_opusclip() -> None:
    prefs = parse_metadata({"opus-copy-top": "2", "opus-min-score": "50", "opus-captions": "true"})
    body = build_command("up_1", prefs)
    assert body == {"videoUrl": "up_1", "renderPref": {"enableCaption": True}}
