"""The rules behind the protocols, without servers: session answers, the HTTP policy, the state
machine, the read-ahead of the source."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from opus_pipeline import http_policy
from opus_pipeline.domain import states
from opus_pipeline.errors import (
    IllegalTransitionError,
    PermanentError,
    RetryableStatusError,
    SessionExpiredError,
    TransientError,
)
from opus_pipeline.gcs.source import Prefetcher
from opus_pipeline.opus.resumable import Progress, interpret

TOTAL = 1000


# -- what a session's answer means -----------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_a_final_answer_means_complete(status: int) -> None:
    assert interpret(status, {}, TOTAL, "chunk upload") == Progress(committed=TOTAL, complete=True)


def test_308_with_range_continues_after_its_end() -> None:
    assert interpret(308, {"Range": "bytes=0-511"}, TOTAL, "chunk upload") == Progress(512, complete=False)


def test_308_without_range_means_nothing_was_kept() -> None:
    assert interpret(308, {}, TOTAL, "status query") == Progress(0, complete=False)


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_session_needs_a_new_one(status: int) -> None:
    with pytest.raises(SessionExpiredError, match=str(status)):
        interpret(status, {}, TOTAL, "chunk upload")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_answers_are_transient_and_carry_retry_after(status: int) -> None:
    with pytest.raises(RetryableStatusError) as caught:
        interpret(status, {"Retry-After": "7"}, TOTAL, "chunk upload")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 501, 505])
def test_other_answers_are_permanent(status: int) -> None:
    with pytest.raises(PermanentError, match=f"HTTP {status}"):
        interpret(status, {}, TOTAL, "chunk upload")


# -- one HTTP policy for every call ----------------------------------------------------------


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (500, True), (501, False), (400, False)])
def test_retryable_statuses_are_the_same_for_every_call(status: int, retryable: bool) -> None:
    assert http_policy.is_retryable(status) is retryable


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert http_policy.retry_after_seconds("12", now) == 12.0
    assert http_policy.retry_after_seconds("Sat, 28 Nov 2026 12:00:30 GMT", now) == 30.0
    assert http_policy.retry_after_seconds("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0
    assert http_policy.retry_after_seconds("soon", now) is None
    assert http_policy.retry_after_seconds(None, now) is None


@pytest.mark.parametrize("value", ["inf", "1e400", "1796083200000", "7200", "Sun, 29 Nov 2026 12:00:00 GMT"])
def test_a_retry_after_past_an_hour_or_not_finite_is_taken_as_absent(value: str) -> None:
    """A video requeued "not before" it would otherwise wait for ever (an epoch in milliseconds, inf)."""
    assert http_policy.retry_after_seconds(value, datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)) is None


# -- the state machine is checked, not described ---------------------------------------------


def test_the_module_diagram_is_the_transition_table() -> None:
    assert states.diagram() in (states.__doc__ or "")


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (states.PROJECT_CREATED, states.QUEUED),
        (states.RECEIVED, states.CREATING),
        (states.SUPERSEDED, states.UPLOADING),
    ],
)
def test_a_transition_outside_the_table_is_refused(current: str, new: str) -> None:
    with pytest.raises(IllegalTransitionError):
        states.check_transition(current, new)


def test_writing_without_a_state_change_is_always_allowed() -> None:
    for state in states.TRANSITIONS:
        states.check_transition(state, state)


def test_every_target_state_is_in_the_table() -> None:
    targets = {t for ts in states.TRANSITIONS.values() for t in ts}
    assert targets <= set(states.TRANSITIONS)


ME, OTHER, NOW = "me", "other", 1000.0


@pytest.mark.parametrize(
    ("state", "owner", "expires", "step"),
    [
        (states.UPLOADED, None, 0, states.ProjectStep.CREATE),
        (states.UPLOADED, OTHER, NOW + 10, states.ProjectStep.BUSY),  # ingest is still handing it over
        (states.UPLOADED, OTHER, NOW - 1, states.ProjectStep.CREATE),
        (states.QUEUED, None, 0, states.ProjectStep.CREATE),
        (states.CREATING, OTHER, NOW + 10, states.ProjectStep.BUSY),
        (states.CREATING, OTHER, NOW - 1, states.ProjectStep.CREATE),
        (states.CREATING, ME, NOW + 10, states.ProjectStep.CREATE),
        (states.PROJECT_CREATED, None, 0, states.ProjectStep.NOTHING),
        (states.FAILED, None, 0, states.ProjectStep.NOTHING),
        (states.UPLOADING, None, 0, states.ProjectStep.NOTHING),
    ],
)
def test_project_step(state: str, owner: str | None, expires: float, step: states.ProjectStep) -> None:
    assert states.project_step(state, owner, expires, ME, NOW) is step


# -- the read-ahead of the source ------------------------------------------------------------


def pattern(offset: int, view: memoryview) -> None:
    view[:] = bytes((offset + i) % 251 for i in range(len(view)))


def test_prefetcher_yields_every_range_once_in_order_with_a_ragged_tail() -> None:
    chunks = [(offset, bytes(view)) for offset, view in Prefetcher(pattern, 0, 10, 4)]
    assert [offset for offset, _ in chunks] == [0, 4, 8]
    assert b"".join(data for _, data in chunks) == bytes(range(10))


def test_prefetcher_starts_at_the_resume_offset() -> None:
    assert [offset for offset, _ in Prefetcher(pattern, 8, 20, 4)] == [8, 12, 16]


def test_prefetcher_reads_one_chunk_ahead_and_never_holds_more_than_two() -> None:
    reads: list[int] = []
    release = threading.Event()

    def slow_read(offset: int, view: memoryview) -> None:
        reads.append(offset)
        if offset >= 8:
            release.wait(5)

    chunks = iter(Prefetcher(slow_read, 0, 40, 4))
    next(chunks)  # the consumer holds chunk 0; the reader may fill only the other buffer
    threading.Event().wait(0.3)
    assert reads == [0, 4]
    release.set()


def test_prefetcher_raises_the_readers_error_in_the_consumer() -> None:
    def failing(offset: int, view: memoryview) -> None:
        if offset:
            raise TransientError("read failed")

    chunks = iter(Prefetcher(failing, 0, 8, 4))
    next(chunks)
    with pytest.raises(TransientError, match="read failed"):
        next(chunks)


@pytest.mark.parametrize(
    ("state", "owner", "expires", "step"),
    [
        (states.PROJECT_CREATED, None, 0, states.ConcludeStep.CONCLUDE),
        (states.CONCLUDING, OTHER, NOW + 10, states.ConcludeStep.BUSY),
        (states.CONCLUDING, OTHER, NOW - 1, states.ConcludeStep.CONCLUDE),
        (states.CLIPS_READY, None, 0, states.ConcludeStep.NOTHING),
        (states.FAILED, None, 0, states.ConcludeStep.NOTHING),
        (states.CREATING, OTHER, NOW + 10, states.ConcludeStep.NOTHING),
    ],
)
def test_conclude_step(state: str, owner: str | None, expires: float, step: states.ConcludeStep) -> None:
    assert states.conclude_step(state, owner, expires, ME, NOW) is step


def test_the_sweeper_looks_again_after_1_2_4_minutes_up_to_half_an_hour() -> None:
    assert [states.next_check_seconds(n) for n in (1, 2, 3, 6, 20)] == [60, 120, 240, 1800, 1800]
