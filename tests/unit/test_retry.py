"""The one retry policy: exponential waits with jitter up to a cap, a short Retry-After honoured."""

from __future__ import annotations

import pytest

from opus_pipeline.errors import PermanentError, TransientError
from opus_pipeline.retry import Backoff, retried


def test_waits_grow_exponentially_to_the_cap_each_drawn_below_its_bound() -> None:
    backoff = Backoff(cap=32.0)
    for bound in (1, 2, 4, 8, 16, 32, 32, 32):
        assert 0.0 <= backoff.next_wait() <= bound


def test_a_short_retry_after_wins_a_long_one_does_not() -> None:
    backoff = Backoff(cap=32.0)
    assert backoff.next_wait(TransientError("busy", retry_after=5.0)) == 5.0
    assert backoff.next_wait(TransientError("busy", retry_after=3600.0)) <= 2.0


def test_restart_begins_the_waits_again_from_the_first() -> None:
    backoff = Backoff(cap=32.0, initial=1.0)
    for _ in range(6):
        backoff.next_wait()
    backoff.restart()
    assert backoff.next_wait() <= 1.0


def test_a_transient_failure_is_tried_again_until_it_succeeds() -> None:
    outcomes: list[object] = [TransientError("cut"), TransientError("503"), "done"]
    slept: list[float] = []

    def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    assert retried(operation, attempts=5, sleep=slept.append) == "done"
    assert len(slept) == 2


def test_the_last_transient_failure_is_raised_after_every_attempt() -> None:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise TransientError(f"failure {len(calls)}")

    with pytest.raises(TransientError, match="failure 3"):
        retried(operation, attempts=3, sleep=lambda _: None)
    assert len(calls) == 3


def test_a_permanent_failure_is_raised_at_once() -> None:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise PermanentError("refused")

    with pytest.raises(PermanentError):
        retried(operation, attempts=5, sleep=lambda _: None)
    assert calls == [1]
