"""STALLED is not final at OpusClip (its ``stallCount``): the pure rules of watching a stall."""

from __future__ import annotations

from opus_pipeline.domain import states

GRACE = 21_600.0


def test_a_stall_not_yet_seen_is_not_over() -> None:
    assert not states.stall_over(None, 1_000.0, GRACE)


def test_a_stall_is_over_once_watched_for_the_grace() -> None:
    assert not states.stall_over(0.0, GRACE - 1, GRACE)
    assert states.stall_over(0.0, GRACE, GRACE)


def test_a_stalled_project_is_looked_at_as_any_running_one() -> None:
    assert states.next_stall_look(0.0, 1, 100.0, GRACE) == 100.0 + states.next_check_seconds(1)


def test_the_last_look_at_a_stalled_project_is_when_its_grace_ends() -> None:
    assert states.next_stall_look(0.0, 20, GRACE - 10, GRACE) == GRACE


def test_retry_may_follow_a_failed_video_whose_project_moved_on() -> None:
    states.check_transition(states.FAILED, states.PROJECT_CREATED)
