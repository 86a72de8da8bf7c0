"""The credit book kept spread over objects of ``STATE_BUCKET`` (``gcs/credit_ledger.py``): no object is
written by every video, and the month's count is the sum of a listing."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

from opus_pipeline.domain.credits import Usage
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.credit_ledger import CreditLedger

from conftest import Stack, deliver_concurrently

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
MONTH = "2026-12"
USAGE = Usage(uncapped=False, limit=100, remaining=100, seen_at=NOW)
ONE, TWO = "source/one.mp4#1", "source/two.mp4#1"


def ledger(stack: Stack) -> CreditLedger:
    return CreditLedger(stack.storage, stack.state_bucket, wall=lambda: NOW)


def names(stack: Stack, prefix: str) -> list[str]:
    return [blob.name for blob in stack.storage.list_blobs(stack.state_bucket, prefix=prefix)]


def test_every_admitted_video_holds_a_reservation_object_of_its_own(stack: Stack) -> None:
    book = ledger(stack)
    for key in (ONE, TWO):
        assert book.change(MONTH, lambda b, key=key: b.ask(key, 10, NOW, USAGE, None))

    reserved = names(stack, "credits/")
    assert len(reserved) == 2 and all(name.startswith("credits/reserved/") for name in reserved)
    assert book.read().reserved == {ONE: 10, TWO: 10}


def test_a_video_waiting_for_credits_has_its_place_in_the_one_queue_at_the_credit_gate(stack: Stack) -> None:
    ledger(stack).change(MONTH, lambda b: b.wait(ONE, 10, NOW))

    [place] = stack.storage.list_blobs(stack.state_bucket, prefix="admission/queue/")
    assert json.loads(place.metadata["entry"])["waitingFor"] == "credits"
    assert [w["key"] for w in ledger(stack).read().waiting] == [ONE]
    assert Admission(stack.storage, stack.state_bucket, cap=1).read().waiting == []  # not the slot gate's


def test_the_months_created_credits_are_the_sum_of_its_creations_each_its_own_object(stack: Stack) -> None:
    book = ledger(stack)
    book.change(MONTH, lambda b: b.ask(ONE, 10, NOW, USAGE, None))
    book.change(MONTH, lambda b: b.settle(ONE, True, NOW))
    book.change(MONTH, lambda b: b.settle(TWO, True, NOW, credits=20))
    book.change(MONTH, lambda b: b.spend(1, NOW))

    assert len(names(stack, f"credits/spent/{MONTH}/")) == 3 and names(stack, "credits/reserved/") == []
    assert book.read(MONTH).created == 31
    assert book.read("2027-01").created == 0


def test_a_creation_settled_again_after_a_crash_is_counted_once(stack: Stack) -> None:
    book = ledger(stack)
    book.change(MONTH, lambda b: b.ask(ONE, 10, NOW, USAGE, None))
    book.change(MONTH, lambda b: b.settle(ONE, True, NOW))
    book.change(MONTH, lambda b: b.reserved.update({ONE: 10}))  # as if the reservation's delete was lost

    book.change(MONTH, lambda b: b.settle(ONE, True, NOW, credits=10))

    assert book.read().created == 10 and book.read().reserved == {}
    assert len(names(stack, f"credits/spent/{MONTH}/")) == 1


def test_videos_racing_for_the_last_credits_get_one_reservation_and_the_others_wait(stack: Stack) -> None:
    last = Usage(uncapped=False, limit=100, remaining=10, seen_at=NOW)
    numbers = itertools.count()  # its ``next`` is atomic: one number per thread

    def ask() -> bool:
        key = f"source/v{next(numbers)}.mp4#1"
        return ledger(stack).change(MONTH, lambda b: b.ask(key, 10, NOW, last, None))

    outcomes = deliver_concurrently(ask, times=4)

    book = ledger(stack).read()
    assert outcomes.count(True) == len(book.reserved) == 1
    assert outcomes.count(False) == len(book.waiting) == 3


def test_a_book_kept_as_one_object_before_the_upgrade_is_spread_without_losing_anything(stack: Stack) -> None:
    legacy = {
        "month": MONTH,
        "created": 40,
        "reserved": {ONE: 10},
        "waiting": [{"key": TWO, "credits": 20, "since": NOW - 60}],
        "spent": [],
        "counted": {},
    }
    stack.storage.bucket(stack.state_bucket).blob("credits/book.json").upload_from_string(json.dumps(legacy))

    book = ledger(stack)
    book.change(MONTH, lambda b: None)  # any change of the new book takes the old one over first

    after = book.read()
    assert after.reserved == {ONE: 10} and after.created == 40
    assert [w["key"] for w in after.waiting] == [TWO]
    assert "credits/book.json" not in names(stack, "credits/")
    ledger(stack).change(MONTH, lambda b: None)  # a second instance finds nothing more to take over
    assert ledger(stack).read().created == 40
