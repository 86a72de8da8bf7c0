"""The burst's floor, and its account of where its time above the floor went."""

from __future__ import annotations

import pytest

from opus_local.burst import floor_seconds, turnovers


def test_a_slot_taken_at_the_end_of_its_last_project_stood_empty_for_no_time() -> None:
    assert turnovers([0.0, 0.0, 3.0, 3.0], cap=2, project_seconds=3.0) == [0.0, 0.0]


def test_each_turnover_is_measured_against_the_project_cap_places_before() -> None:
    assert turnovers([0.0, 1.0, 3.5, 4.25], cap=2, project_seconds=3.0) == pytest.approx([0.5, 0.25])


def test_fewer_projects_than_slots_have_no_turnover() -> None:
    assert turnovers([0.0, 0.1], cap=3, project_seconds=3.0) == []


def test_the_floor_counts_every_call_a_video_costs_when_the_rate_binds() -> None:
    # 100 videos of five calls (upload link, creation, the webhook's look, a page of clips, the
    # transcript) at 60 a minute take 500 s, longer than 34 rounds of 3 s projects
    assert floor_seconds(100, cap=3, rate_per_minute=60, project_seconds=3.0) == 500.0
    assert floor_seconds(100, cap=3, rate_per_minute=300, project_seconds=3.0) == 102.0
