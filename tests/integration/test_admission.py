"""Admission under OpusClip's caps: the slot table, the shared request budget, waiting videos."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from opus_local.burst import run_burst
from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject, storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.rate_window import (
    MARGIN_SECONDS,
    UPLOAD_LINK_SHARE,
    WINDOW_SECONDS,
    headroom_wait,
    share_of,
    share_wait,
    wait_seconds,
    yielded_limit,
)
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.domain.slots import ADMIT_GRACE_SECONDS, SlotTable
from opus_pipeline.errors import BudgetSpentError, ConflictError, TransientError
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.cas import CasObject
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.queue import place_name
from opus_pipeline.gcs.rate_budget import RateLimiter
from opus_pipeline.usecases.admit import free_slot
from opus_pipeline.usecases.sweep import sweep

from conftest import Stack
from support import create, ingest, live_metadata, record, services, uploaded, video, wait_for

# -- the slot table (pure) --------------------------------------------------------------------


def requested(*keys: str, cap: int) -> SlotTable:
    """A table that ``keys`` asked for a slot, in that order, at t=1."""
    table = SlotTable()
    for key in keys:
        table.request(key, cap=cap, now=1.0)
    return table


def test_slots_are_granted_up_to_the_cap_then_videos_queue_in_order() -> None:
    table = SlotTable()
    grants = [table.request(key, cap=2, now=1.0) for key in ("a", "b", "c", "d")]
    assert [g.granted for g in grants] == [True, True, False, False]
    assert [g.position for g in grants[2:]] == [1, 2]


def test_asking_again_keeps_the_slot_or_the_place() -> None:
    table = requested("a", "b", cap=1)
    assert table.request("a", cap=1, now=2.0).granted
    assert table.request("b", cap=1, now=2.0).position == 1


def test_a_freed_slot_goes_to_the_oldest_waiting_video_not_a_newcomer() -> None:
    table = requested("a", "b", "c", cap=1)
    table.release("a")
    assert table.admit_due(cap=1, now=2.0) == ["b"]
    assert not table.request("newcomer", cap=1, now=2.0).granted
    assert table.request("b", cap=1, now=2.0).granted


def test_several_free_slots_admit_as_many_waiting_videos() -> None:
    table = requested("a", "b", "c", "d", "e", cap=2)
    table.release("a")
    table.release("b")
    assert table.admit_due(cap=2, now=2.0) == ["c", "d"]
    assert table.request("d", cap=2, now=2.0).granted  # either admitted video may arrive first


def test_a_video_refused_for_the_cap_waits_at_the_head_until_its_time() -> None:
    table = requested("a", "b", cap=2)
    table.requeue("b", now=1.0, not_before=61.0)
    assert table.admit_due(cap=2, now=30.0) == []
    assert table.request("c", cap=2, now=30.0).granted  # b is not due: the slot is not kept idle
    table.release("c")
    assert table.admit_due(cap=2, now=61.0) == ["b"]


def test_an_admitted_video_is_not_admitted_again_until_its_request_had_time_to_arrive() -> None:
    table = requested("a", "b", "c", cap=1)
    table.release("a")
    assert table.admit_due(cap=1, now=2.0) == ["b"]
    assert table.admit_due(cap=1, now=3.0) == []
    assert table.admit_due(cap=1, now=2.0 + ADMIT_GRACE_SECONDS) == ["b"]


def test_an_admitted_video_that_finds_its_slot_taken_is_admitted_again_at_the_next_free_slot() -> None:
    table = requested("a", "b", "c", cap=2)
    table.release("a")
    assert table.admit_due(cap=2, now=2.0) == ["c"]
    table.in_flight["x"] = 2.0  # the freed slot went elsewhere before c's request came

    assert table.request("c", cap=2, now=3.0).granted is False
    table.release("x")

    assert table.admit_due(cap=2, now=3.0) == ["c"]  # not after ADMIT_GRACE_SECONDS


# -- the request budget (pure) ---------------------------------------------------------------


def test_a_call_may_go_while_the_window_has_room() -> None:
    assert wait_seconds([10.0, 20.0], per_minute=3, now=30.0) == 0.0


def test_a_full_window_waits_until_its_oldest_grant_leaves() -> None:
    assert wait_seconds([10.0, 20.0, 25.0], per_minute=3, now=30.0) == 10.0 + WINDOW_SECONDS + MARGIN_SECONDS - 30.0


def test_grants_older_than_the_window_do_not_count() -> None:
    assert wait_seconds([0.0, 1.0, 2.0], per_minute=3, now=100.0) == 0.0


# -- shared by instances: real compare-and-swap on the emulator -------------------------------


def race(times: int, action) -> list[object]:
    outcomes: list[object] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            result = action()
        except TransientError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_instances_racing_for_slots_get_exactly_the_cap(stack: Stack) -> None:
    admission = Admission(stack.storage, stack.state_bucket, cap=3)
    counter = iter(range(100))
    outcomes = race(8, lambda: admission.request(f"video-{next(counter)}", time.time()))
    assert sum(1 for o in outcomes if getattr(o, "granted", False)) == 3
    table = admission.read()
    assert len(table.in_flight) == 3 and len(table.waiting) == 5


def test_instances_racing_for_the_budget_get_exactly_the_budget(stack: Stack) -> None:
    limiter = RateLimiter(stack.storage, stack.state_bucket, per_minute=5)
    outcomes = race(9, lambda: limiter.acquire(max_wait=0.0))
    assert outcomes.count(None) == 5
    assert all(isinstance(o, BudgetSpentError) for o in outcomes if o is not None)


def test_one_instance_granting_from_what_it_remembers_stops_at_the_budget(stack: Stack) -> None:
    limiter = RateLimiter(stack.storage, stack.state_bucket, per_minute=3)
    for _ in range(3):
        limiter.acquire(max_wait=0.0)
    with pytest.raises(BudgetSpentError):
        limiter.acquire(max_wait=0.0)


def test_a_slot_another_instance_took_since_it_was_seen_is_never_granted_twice(stack: Stack) -> None:
    first, second = (RateLimiter(stack.storage, stack.state_bucket, per_minute=2) for _ in range(2))
    first.acquire(max_wait=0.0)  # lists the slots and remembers them: the other one looks free
    second.acquire(max_wait=0.0)  # takes that other one
    with pytest.raises(BudgetSpentError):  # a lost compare-and-swap on it, a fresh listing: the window is full
        first.acquire(max_wait=0.0)


def clocked(stack: Stack, per_minute: int) -> tuple[RateLimiter, list[float]]:
    """A budget on a clock that only its own waits move, from t=1000."""
    now = [1000.0]
    limiter = RateLimiter(
        stack.storage,
        stack.state_bucket,
        per_minute=per_minute,
        wall=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    return limiter, now


def test_a_call_waits_for_the_budget_when_it_may(stack: Stack) -> None:
    limiter, now = clocked(stack, per_minute=1)
    limiter.acquire(max_wait=0.0)
    limiter.acquire(max_wait=120.0)
    assert now[0] == pytest.approx(1000.0 + WINDOW_SECONDS + MARGIN_SECONDS)


def test_calls_limited_to_a_share_of_the_window_wait_their_turn_while_the_others_still_go(stack: Stack) -> None:
    limiter = RateLimiter(stack.storage, stack.state_bucket, per_minute=10)
    limiter.acquire(max_wait=0.0, kind="/api/upload-links", share=0.2)
    with pytest.raises(BudgetSpentError, match="share"):  # two a window, the next in half a window
        limiter.acquire(max_wait=0.0, kind="/api/upload-links", share=0.2)
    for _ in range(9):  # the rest of the window is the other calls'
        limiter.acquire(max_wait=0.0)
    with pytest.raises(BudgetSpentError):
        limiter.acquire(max_wait=0.0)


def test_an_upload_link_waits_while_only_the_window_s_headroom_is_left(stack: Stack) -> None:
    limiter = RateLimiter(stack.storage, stack.state_bucket, per_minute=20)
    for _ in range(yielded_limit(20)):
        limiter.acquire(max_wait=0.0, kind="/api/clip-projects")
    with pytest.raises(BudgetSpentError, match="share"):
        limiter.acquire(max_wait=0.0, kind="/api/upload-links")  # also when it may take the whole budget
    limiter.acquire(max_wait=0.0, kind="/api/clip-projects")  # the headroom is the other calls'


def test_a_share_spreads_its_calls_evenly_over_the_window() -> None:
    spacing = (WINDOW_SECONDS + MARGIN_SECONDS) / 2  # two calls a window
    assert share_wait([], per_minute=10, share=0.2, now=100.0) == 0.0
    assert share_wait([100.0], per_minute=10, share=0.2, now=110.0) == pytest.approx(100.0 + spacing - 110.0)
    assert share_wait([100.0], per_minute=10, share=0.2, now=100.0 + spacing) == 0.0


def test_a_full_share_waits_for_its_oldest_call_to_leave_the_window() -> None:
    window = WINDOW_SECONDS + MARGIN_SECONDS
    assert share_wait([100.0, 101.0], per_minute=10, share=0.2, now=140.0) == pytest.approx(100.0 + window - 140.0)


def test_a_call_that_only_prepares_leaves_the_window_s_last_room_to_the_other_calls() -> None:
    window = WINDOW_SECONDS + MARGIN_SECONDS
    others = [100.0 + i for i in range(yielded_limit(100))]  # the window full but for its headroom
    assert yielded_limit(100) == 95 and yielded_limit(30) == 28 and yielded_limit(10) == 9
    assert headroom_wait(others, per_minute=100, now=150.0) == pytest.approx(100.0 + window - 150.0)
    assert headroom_wait(others[1:], per_minute=100, now=150.0) == 0.0


def test_a_call_limited_to_a_share_waits_until_its_own_kind_leaves_the_window(stack: Stack) -> None:
    limiter, now = clocked(stack, per_minute=10)
    limiter.acquire(max_wait=0.0, kind="/api/upload-links", share=0.1)
    now[0] += 5.0
    limiter.acquire(max_wait=0.0)  # another kind: not counted against the share
    limiter.acquire(max_wait=120.0, kind="/api/upload-links", share=0.1)
    window = WINDOW_SECONDS + MARGIN_SECONDS  # one call a window; waiters wake up to half of it apart
    assert 1000.0 + window <= now[0] <= 1000.0 + window * 1.5


def test_a_share_is_at_least_one_call_a_window() -> None:
    assert share_of(30, 0.2) == 6
    assert share_of(3, 0.2) == 1


# -- waiting videos --------------------------------------------------------------------------


def test_a_video_without_a_free_slot_waits_visibly_and_is_acknowledged(stack: Stack, standin) -> None:
    _, first = uploaded(stack)
    assert create(stack, first, OPUS_MAX_PARALLEL_PROJECTS="1") == states.PROJECT_CREATED
    second = stack.put("second.mp4", video())
    assert ingest(stack, second, OPUS_MAX_PARALLEL_PROJECTS="1") == states.WAITING
    request = record(stack, second).clip_request()  # a clip request of it all the same (redelivered, re-driven)

    assert create(stack, request, OPUS_MAX_PARALLEL_PROJECTS="1") == states.WAITING

    assert record(stack, second).state == states.WAITING and standin.calls("clip-projects") == 1
    metadata = live_metadata(stack, "second.mp4")
    assert metadata["opus-status"] == "waiting" and metadata["opus-queue-position"] == "1"


def test_the_conclusion_that_frees_a_slot_admits_the_oldest_waiting_video(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)
    first_resource, first = uploaded(stack)
    create(stack, first, OPUS_MAX_PARALLEL_PROJECTS="1")
    for name in ("second.mp4", "third.mp4"):
        assert ingest(stack, stack.put(name, video()), OPUS_MAX_PARALLEL_PROJECTS="1") == states.WAITING
    project_id = record(stack, first_resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)

    svc = services(stack, OPUS_MAX_PARALLEL_PROJECTS="1")
    svc.wall = lambda: time.time() + 3600
    sweep(svc)

    [admitted] = stack.pull()
    request = ClipRequest.decode(admitted.message.data)
    assert request.source.name == "second.mp4"
    assert create(stack, request, OPUS_MAX_PARALLEL_PROJECTS="1") == states.PROJECT_CREATED


ONE_SLOT = {"OPUS_MAX_PARALLEL_PROJECTS": "1"}


def test_a_first_call_queued_for_a_slot_is_admitted_before_it_writes_waiting(stack: Stack, standin) -> None:
    first = stack.put("first.mp4", video(salt=b"first"))
    second = stack.put("second.mp4", video(salt=b"second"))
    assert ingest(stack, first, **ONE_SLOT) == states.QUEUED
    [first_request] = stack.pull()
    assert create(stack, ClipRequest.decode(first_request.message.data), **ONE_SLOT) == states.PROJECT_CREATED
    assert ingest(stack, second, **ONE_SLOT) == states.WAITING
    ledger = Ledger(stack.storage, stack.state_bucket)
    ledger.update(ledger.read(storage_object(second)), state=states.QUEUED)  # re-driven: its request on its way
    svc = services(stack, **ONE_SLOT)
    assert not svc.admission.request(storage_object(second).key, svc.wall()).granted  # that request asks: queued

    free_slot(svc, storage_object(first).key)  # the first project ends before that call writes ``waiting``

    [admitted] = stack.pull()
    request = ClipRequest.decode(admitted.message.data)
    assert request.source.name == "second.mp4"
    assert create(stack, request, **ONE_SLOT) == states.PROJECT_CREATED


def test_ingests_that_see_one_free_slot_hand_one_video_over_and_line_the_other_up(stack: Stack, standin) -> None:
    first = stack.put("first.mp4", video(salt=b"first"))
    second = stack.put("second.mp4", video(salt=b"second"))

    assert ingest(stack, first, **ONE_SLOT) == states.QUEUED  # its slot taken before its project exists
    assert ingest(stack, second, **ONE_SLOT) == states.WAITING

    [request] = stack.pull()
    assert ClipRequest.decode(request.message.data).source.name == "first.mp4"
    table = Admission(stack.storage, stack.state_bucket, cap=1).read()
    assert list(table.in_flight) == [storage_object(first).key]
    assert [w["key"] for w in table.waiting] == [storage_object(second).key]


def one_project_running(stack: Stack) -> None:
    _, first = uploaded(stack)
    assert create(stack, first, **ONE_SLOT) == states.PROJECT_CREATED


def test_a_video_uploaded_while_every_slot_is_taken_waits_in_line_without_a_clip_request(stack: Stack, standin) -> None:
    one_project_running(stack)
    second = stack.put("second.mp4", video())

    assert ingest(stack, second, **ONE_SLOT) == states.WAITING

    assert stack.pull() == []
    rec = record(stack, second)
    assert (rec.state, rec.waiting_for, rec.upload_complete) == (states.WAITING, "slot", True)
    table = Admission(stack.storage, stack.state_bucket, cap=1).read()
    assert [w["key"] for w in table.waiting] == [rec.source.key]
    metadata = live_metadata(stack, "second.mp4")
    assert metadata["opus-status"] == "waiting" and metadata["opus-queue-position"] == "1"
    assert standin.calls("clip-projects") == 1


def links_spent(stack: Stack, per_minute: int) -> None:
    """Upload links took their share of a ``per_minute`` budget within the last minute (counting
    those the test's videos asked for already)."""
    limiter = RateLimiter(stack.storage, stack.state_bucket, per_minute=per_minute)
    with contextlib.suppress(BudgetSpentError):
        for _ in range(share_of(per_minute, UPLOAD_LINK_SHARE)):
            limiter.acquire(max_wait=0.0, kind="/api/upload-links", share=UPLOAD_LINK_SHARE)


def test_an_upload_link_waits_for_its_share_of_the_budget_once_a_slot_s_worth_of_videos_waits(
    stack: Stack, standin
) -> None:
    one_project_running(stack)
    assert ingest(stack, stack.put("second.mp4", video()), **ONE_SLOT) == states.WAITING
    links_spent(stack, per_minute=10)
    links = standin.calls("upload-links")

    with pytest.raises(BudgetSpentError, match="share"):
        ingest(stack, stack.put("third.mp4", video()), **ONE_SLOT, OPUS_RATE_PER_MINUTE="10")

    assert standin.calls("upload-links") == links


def test_an_upload_link_takes_the_whole_budget_while_no_slot_s_worth_of_videos_waits(stack: Stack, standin) -> None:
    links_spent(stack, per_minute=10)

    assert ingest(stack, stack.put("first.mp4", video()), **ONE_SLOT, OPUS_RATE_PER_MINUTE="10") == states.QUEUED


def test_a_video_ingest_lined_up_is_admitted_and_created_when_the_slot_frees(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)
    first_resource, first = uploaded(stack)
    create(stack, first, **ONE_SLOT)
    second = stack.put("second.mp4", video())
    ingest(stack, second, **ONE_SLOT)
    project_id = record(stack, first_resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)

    svc = services(stack, **ONE_SLOT)
    svc.wall = lambda: time.time() + 3600
    sweep(svc)

    [admitted] = stack.pull()
    request = ClipRequest.decode(admitted.message.data)
    assert request.source.name == "second.mp4"
    assert create(stack, request, **ONE_SLOT) == states.PROJECT_CREATED


def test_a_line_up_cut_short_before_its_queue_entry_is_finished_by_the_next_delivery(stack: Stack) -> None:
    one_project_running(stack)
    second = stack.put("second.mp4", video())
    ingest(stack, second, **ONE_SLOT)
    for blob in stack.storage.list_blobs(stack.state_bucket, prefix="admission/queue/"):
        blob.delete()  # as if ingest died between the ``waiting`` write and the queue entry
    ledger = Ledger(stack.storage, stack.state_bucket)
    stored = ledger.read(storage_object(second))
    ledger.write(stored, stored.record.replace(lease_expires=0.0))

    assert ingest(stack, second, **ONE_SLOT) == states.WAITING

    table = Admission(stack.storage, stack.state_bucket, cap=1).read()
    assert [w["key"] for w in table.waiting] == [stored.record.source.key]
    assert stack.pull() == []


def test_a_concurrent_cap_refusal_that_slips_through_waits_instead_of_retrying(stack: Stack, standin) -> None:
    resource, request = uploaded(stack)
    standin.inject(
        {"endpoint": "clip-projects", "kind": "status", "status": 429, "headers": {"X-Cap-Reason": "concurrent"}}
    )

    assert create(stack, request) == states.WAITING

    assert record(stack, resource).state == states.WAITING
    table = Admission(stack.storage, stack.state_bucket, cap=4).read()
    assert table.in_flight == {} and table.waiting[0]["key"] == request.source.key
    assert table.waiting[0]["notBefore"] > time.time() + 30


def test_a_slot_whose_holder_vanished_is_reclaimed_by_the_sweeper(stack: Stack, standin) -> None:
    admission = Admission(stack.storage, stack.state_bucket, cap=1)
    admission.request("gone-bucket/nothing.mp4#1", time.time())
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource, OPUS_MAX_PARALLEL_PROJECTS="1") == states.WAITING
    report = sweep(services(stack, OPUS_MAX_PARALLEL_PROJECTS="1"))

    assert report.reclaimed == 1
    [admitted] = stack.pull()
    assert ClipRequest.decode(admitted.message.data).source.key == storage_object(resource).key


def test_a_slot_just_taken_by_a_queued_video_on_its_way_to_creation_is_not_reclaimed(stack: Stack, standin) -> None:
    # Its hand-over took the slot; project creation claims the record and marks the call sent next.
    _, request = uploaded(stack)
    assert request.source.key in Admission(stack.storage, stack.state_bucket, cap=1).read().in_flight

    assert sweep(services(stack, OPUS_MAX_PARALLEL_PROJECTS="1")).reclaimed == 0


def test_a_slot_a_queued_video_took_long_ago_is_reclaimed(stack: Stack, standin) -> None:
    _, request = uploaded(stack)
    admission = Admission(stack.storage, stack.state_bucket, cap=1)
    admission.release(request.source.key, time.time())
    admission.request(request.source.key, time.time() - ADMIT_GRACE_SECONDS - 1)  # taken long ago

    assert sweep(services(stack, OPUS_MAX_PARALLEL_PROJECTS="1")).reclaimed == 1


# -- a folder of videos at once --------------------------------------------------------------


def test_thirty_videos_at_once_all_come_back_under_the_caps_without_a_refusal(tmp_path: Path) -> None:
    report = run_burst(tmp_path / "burst", videos=30, cap=3, rate_per_minute=300, project_seconds=3.0)

    assert report.outcomes == {states.CLIPS_READY: 30}
    assert report.projects == 30 and report.dead_letters == 0
    assert report.refused == {"rate": 0, "concurrent": 0, "monthly": 0}
    assert report.max_in_flight <= 3
    # Not a performance figure (``make bench`` measures and prints that): a video left for the
    # scheduled sweep (every 30 s here) instead of admitted when a slot frees would pass 2× the floor.
    assert report.floor_ratio <= 2.0, report


def test_a_granted_video_keeps_its_queue_entry_until_it_gives_the_slot_back(stack: Stack) -> None:
    # Its entry was just written (queued, then marked admitted): a third write within the second is
    # one Cloud Storage throttles on the way to the next project. Read, it no longer waits.
    admission = Admission(stack.storage, stack.state_bucket, cap=1)
    admission.request("a", 1.0)
    admission.request("b", 1.0)  # waits
    admission.release("a", 2.0)  # admits b
    assert admission.request("b", 2.0).granted
    bucket = stack.storage.bucket(stack.state_bucket)
    assert len(list(bucket.list_blobs(prefix="admission/queue/"))) == 1
    table = admission.read()
    assert table.waiting == [] and list(table.in_flight) == ["b"]
    admission.request("c", 3.0)
    assert admission.read().waiting[0]["key"] == "c"  # first in line, not behind b's entry
    admission.release("b", 4.0)
    assert [blob.name for blob in bucket.list_blobs(prefix="admission/queue/")] == [place_name("c")]


def test_a_granted_video_refused_for_the_cap_goes_back_to_the_head_over_its_kept_entry(stack: Stack) -> None:
    admission = Admission(stack.storage, stack.state_bucket, cap=1)
    admission.request("a", 1.0)
    admission.request("b", 1.0)
    admission.release("a", 2.0)
    admission.request("b", 2.0)
    admission.request("c", 3.0)
    admission.requeue("b", 4.0, not_before=10.0)
    table = admission.read()
    assert [w["key"] for w in table.waiting] == ["b", "c"] and table.in_flight == {}
    bucket = stack.storage.bucket(stack.state_bucket)
    assert len(list(bucket.list_blobs(prefix="admission/queue/"))) == 2


def test_stale_entries_are_forgotten_only_as_they_were_read() -> None:
    table = requested("a", "b", cap=1)
    read_slots, read_waiting = dict(table.in_flight), {"b": 1.0}
    table.release("a")
    table.request("b", cap=1, now=5.0)  # admitted since the read: its slot is new, not stale
    table.request("c", cap=1, now=5.0)
    table.forget(read_slots, read_waiting)
    assert table.in_flight == {"b": 5.0} and [w["key"] for w in table.waiting] == ["c"]


def test_a_conditional_write_retried_after_it_landed_is_not_a_conflict(stack: Stack) -> None:
    """The storage client retries a write whose answer was lost; the retry's failed precondition
    must not read as another instance's write."""
    shared = CasObject(stack.storage.bucket(stack.state_bucket), "videos/b/v.mp4#1.json")
    record = VideoRecord(StorageObject(bucket="b", name="v.mp4", generation=1, size=1)).replace()
    first = shared.write(record.to_json(), 0)
    assert shared.write(record.to_json(), 0) == first
    with pytest.raises(ConflictError):
        shared.write(record.replace(state=states.FAILED).to_json(), 0)
