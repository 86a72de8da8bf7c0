"""Which clips are copied when a user wants the best only (opus-copy-top, opus-min-score)."""

from __future__ import annotations

from opus_pipeline.domain.clip_selection import not_selected

CLIPS = [{"id": "a", "score": 93}, {"id": "b", "score": 86}, {"id": "c", "score": 79}]


def test_without_a_choice_every_clip_is_copied() -> None:
    assert not_selected(CLIPS) == [None, None, None]


def test_copy_top_keeps_the_first_of_the_best_first_order() -> None:
    reasons = not_selected(CLIPS, copy_top=2)
    assert reasons[:2] == [None, None]
    assert reasons[2] == "not-selected: clip 3 of the best first is past opus-copy-top=2"


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
