"""The shared objects under Cloud Storage's write limit: pure rules of the spread budget and hand-over."""

from __future__ import annotations

import random

import pytest

from opus_pipeline.domain import states
from opus_pipeline.domain.rate_window import free_slots
from opus_pipeline.domain.slots import SlotTable


def test_a_grant_slot_is_free_again_only_once_its_last_grant_left_the_window() -> None:
    assert free_slots({0: 100.0, 1: 10.0}, per_minute=2, now=101.0, wanted=2, rng=random.Random(1)) == [1]


def test_a_budget_whose_slots_all_granted_within_the_window_has_no_free_slot() -> None:
    assert free_slots({0: 100.0, 1: 90.0}, per_minute=2, now=101.0, wanted=2, rng=random.Random(1)) == []


def test_grants_in_slots_past_a_lowered_budget_still_count() -> None:
    assert free_slots({5: 100.0, 6: 100.0}, per_minute=2, now=101.0, wanted=2, rng=random.Random(1)) == []


@pytest.mark.parametrize("state", [states.QUEUED, states.WAITING])
def test_a_handed_over_record_whose_ingest_lease_lapsed_is_handed_over_again_by_a_delivery(state: str) -> None:
    """Queued (its clip request published) or waiting (lined up for a slot) by ingest, lease left to lapse."""
    assert states.ingest_step(state, "gone", 0.0, "me", 10.0) is states.IngestStep.PUBLISH
    assert states.ingest_step(state, "other", 20.0, "me", 10.0) is states.IngestStep.NOTHING  # its holder is at it
    assert states.ingest_step(state, None, 0.0, "me", 10.0) is states.IngestStep.NOTHING  # handed over by others


def test_a_request_that_holds_a_slot_clears_its_leftover_queue_entry() -> None:
    table = SlotTable(in_flight={"a": 1.0}, waiting=[{"key": "a", "since": 1.0, "notBefore": 0.0}])
    assert table.request("a", cap=1, now=2.0).granted and table.waiting == []


def test_a_slot_is_free_for_a_newcomer_only_after_the_due_waiters_ahead() -> None:
    table = SlotTable(in_flight={"a": 1.0}, waiting=[{"key": "w", "since": 1.0, "notBefore": 0.0}])
    assert table.free_for("w", cap=2, now=2.0)
    assert not table.free_for("new", cap=2, now=2.0)
    assert table.free_for("new", cap=3, now=2.0)


def test_taking_a_free_slot_takes_none_and_no_place_when_none_is_free_for_it() -> None:
    table = SlotTable(in_flight={"a": 1.0}, waiting=[{"key": "w", "since": 1.0, "notBefore": 0.0}])
    assert not table.take("new", cap=2, now=2.0)  # the one free slot is the waiter's
    assert table.in_flight == {"a": 1.0} and [w["key"] for w in table.waiting] == ["w"]
    assert table.take("w", cap=2, now=2.0)
    assert table.in_flight == {"a": 1.0, "w": 2.0} and table.waiting == []


def test_lining_up_takes_no_slot_and_keeps_an_existing_place() -> None:
    table = SlotTable(in_flight={"a": 1.0}, waiting=[{"key": "w", "since": 1.0, "notBefore": 0.0, "admittedAt": 1.5}])
    assert table.enqueue("new", now=2.0) == 2
    assert table.enqueue("w", now=3.0) == 1 and table.waiting[0]["admittedAt"] == 1.5
    assert table.in_flight == {"a": 1.0}
