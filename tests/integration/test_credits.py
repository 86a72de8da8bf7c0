"""Credits, the third cap: the probe before upload, the refusals, waiting for this month's credits,
the sweeper's admission, and the stand-in's monthly cap. Against fake-gcs-server, the Pub/Sub
emulator and the stand-in over HTTP."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests

from opus_local import videos
from opus_local.credit_month import run_credit_month
from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.credits import CreditBook, Refusal, Usage, estimate, refusal, running_low
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest, IngestRequest
from opus_pipeline.errors import PoisonMessageError
from opus_pipeline.gcs.credit_ledger import CREDITS_PREFIX
from opus_pipeline.usecases.conclude import check_project
from opus_pipeline.usecases.ingest import handle_ingest_request
from opus_pipeline.usecases.sweep import sweep

from conftest import API_KEY, Stack
from support import create, ingest, live_metadata, record, services, video

# -- pure: the estimate, the book, OpusClip's numbers ---------------------------------------


def test_the_estimate_is_a_credit_a_started_minute_at_least_ten_of_the_range_when_set() -> None:
    assert estimate(125.0, None) == 10
    assert estimate(3600.0, None) == 60
    assert estimate(3600.0, (0, 1830)) == 31


def test_the_book_admits_oldest_first_and_lets_a_smaller_one_behind_a_big_one_go() -> None:
    book, usage = CreditBook(), Usage(uncapped=False, limit=100, remaining=50)
    book.wait("big", 60, now=1.0)
    book.wait("small", 20, now=2.0)
    book.wait("medium", 40, now=3.0)
    assert book.admit_due(usage, None, now=4.0) == ["small"]
    assert book.reserved == {"small": 20} and [w["key"] for w in book.waiting] == ["big", "medium"]


def test_a_remaining_seen_before_a_creation_does_not_hand_out_its_credits_twice() -> None:
    book = CreditBook()
    seen_before = Usage(uncapped=False, limit=20, remaining=20, seen_at=10.0)
    assert book.ask("a", 10, 11.0, seen_before, None) and book.ask("b", 10, 11.0, seen_before, None)
    book.settle("a", created=True, now=12.0)  # OpusClip charged it after the numbers were seen
    assert not book.ask("c", 10, 13.0, seen_before, None)
    assert book.room(Usage(uncapped=False, limit=20, remaining=10, seen_at=13.5), None) == 0  # b holds the rest


def test_the_budget_counts_the_projects_created_this_month_and_starts_again_next_month() -> None:
    book, uncapped = CreditBook(), Usage(uncapped=True)
    book.roll("2026-12")
    assert book.ask("a", 10, 0.0, uncapped, budget=15)
    book.settle("a", created=True, now=0.0)
    assert not book.ask("b", 10, 0.0, uncapped, budget=15)
    book.roll("2027-01")
    assert book.admit_due(uncapped, 15, now=1.0) == ["b"]


def test_credits_run_low_below_the_oldest_waiting_estimate_or_a_tenth_of_the_limit() -> None:
    assert running_low(Usage(uncapped=False, limit=900, remaining=80), oldest_waiting=0)
    assert running_low(Usage(uncapped=False, limit=900, remaining=100), oldest_waiting=120)
    assert not running_low(Usage(uncapped=False, limit=900, remaining=100), oldest_waiting=60)
    assert not running_low(Usage(uncapped=True), oldest_waiting=60)


def test_retry_leaves_a_video_waiting_for_credits_to_the_sweeper() -> None:
    assert states.retry_action(states.WAITING, upload_complete=False, lease_live=False) is states.RetryAction.NONE
    assert states.retry_action(states.WAITING, upload_complete=True, lease_live=False) is states.RetryAction.REPUBLISH


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 2}',
        b'{"schemaVersion": 1, "source": {"bucket": "b", "name": "n"}}',
        b'{"schemaVersion": 1, "source": {"bucket": "b", "name": "n", "generation": "12x"}}',
    ],
)
def test_an_ingest_request_that_is_not_one_is_poison(body: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        IngestRequest.decode(body)


def test_the_rate_limit_headers_are_the_monthly_numbers() -> None:
    usage = Usage.from_headers(
        {"X-RateLimit-Limit": "900", "X-RateLimit-Remaining": "120", "X-RateLimit-Reset": "1798761600"}, now=5.0
    )
    assert usage == Usage(False, 780, 900, 120, "2027-01-01T00:00:00Z", 5.0)
    assert Usage.from_headers({}, now=5.0) is None
    iso = {"X-RateLimit-Limit": "900", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2027-01-01T00:00:00Z"}
    assert Usage.from_headers(iso, now=5.0).reset_at == "2027-01-01T00:00:00Z"


def test_an_uncapped_answer_is_believed_an_hour_a_capped_one_a_minute() -> None:
    assert Usage(uncapped=True, seen_at=0.0).fresh(3599.0)
    assert not Usage(uncapped=False, seen_at=0.0).fresh(61.0)


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_4xx_refusing_an_upload_that_waited_out_a_monthly_cap_sends_the_video_again(status: int) -> None:
    assert refusal(status, upload_waited=True, reuploads=0) is Refusal.UPLOAD_AGAIN


@pytest.mark.parametrize("status", [401, 402, 403, 429, 500, None])
def test_a_refusal_about_the_key_the_credits_or_the_rate_never_sends_the_video_again(status: int | None) -> None:
    assert refusal(status, upload_waited=True, reuploads=0) is Refusal.FAIL


def test_a_4xx_refusing_an_upload_that_never_waited_fails_as_it_says() -> None:
    assert refusal(400, upload_waited=False, reuploads=0) is Refusal.FAIL


def test_a_video_is_sent_again_at_most_once() -> None:
    assert refusal(400, upload_waited=True, reuploads=1) is Refusal.GONE_AGAIN
    assert refusal(400, upload_waited=False, reuploads=1) is Refusal.GONE_AGAIN


# -- the probe and the refusals before any byte ------------------------------------------------


def assert_refused_before_any_byte(stack: Stack, standin, resource: dict, reason: str) -> str:
    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == reason
    assert standin.calls("upload-links") == 0 and standin.stats()["bytesReceived"] == 0
    return live_metadata(stack, resource["name"])["opus-error"]


def test_the_record_and_the_object_show_the_duration_and_the_credits(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.QUEUED
    rec = record(stack, resource)
    assert rec.duration_seconds == pytest.approx(2.0, abs=0.05) and rec.credits == 10
    metadata = live_metadata(stack, "talk.mp4")
    assert float(metadata["opus-duration"]) == pytest.approx(2.0, abs=0.05) and metadata["opus-credits"] == "10"


def test_a_video_longer_than_max_video_seconds_is_refused(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource, MAX_VIDEO_SECONDS="1") == states.FAILED
    assert "MAX_VIDEO_SECONDS" in assert_refused_before_any_byte(stack, standin, resource, "too-long")


@pytest.mark.parametrize("broken", ["truncated", "not-a-video"])
def test_an_unreadable_video_costs_no_credit(stack: Stack, standin, tmp_path: Path, broken: str) -> None:
    source = videos.make_video(videos.video_cache() / "credits-3s.mp4", seconds=3.0)
    if broken == "truncated":
        path = videos.truncate(source, tmp_path / "cut.mp4", source.stat().st_size // 2)
    else:
        path = videos.make_not_a_video(tmp_path / "notes.mp4")
    resource = stack.put("talk.mp4", path.read_bytes())
    assert ingest(stack, resource) == states.FAILED
    assert_refused_before_any_byte(stack, standin, resource, "unreadable-video")
    assert standin.credits_used() == 0


def test_a_range_that_ends_after_the_video_is_refused(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video(), metadata={"opus-range": "0-30"})
    assert ingest(stack, resource) == states.FAILED
    assert "opus-range ends at 30 s" in assert_refused_before_any_byte(stack, standin, resource, "bad-range")


def test_a_video_overwritten_before_its_probe_is_superseded_without_a_byte_sent(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.SUPERSEDED
    assert standin.calls("upload-links") == 0


def test_a_bad_preference_is_reported_as_such_before_the_probe(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", b"not a video", metadata={"opus-genre": "Polka"})
    assert ingest(stack, resource) == states.FAILED
    assert record(stack, resource).reason == "bad-metadata"


# -- waiting for credits and being admitted ----------------------------------------------------


def ingest_request(stack: Stack) -> IngestRequest:
    [message] = stack.pull(subscription=stack.ingest_subscription)
    return IngestRequest.decode(message.message.data)


def test_a_video_whose_estimate_does_not_fit_waits_without_uploading(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=15)
    first, second = stack.put("one.mp4", video()), stack.put("two.mp4", video())
    assert ingest(stack, first) == states.QUEUED
    assert ingest(stack, second) == states.WAITING
    rec = record(stack, second)
    assert rec.waiting_for == "credits" and rec.upload_id is None and rec.credits == 10
    assert live_metadata(stack, "two.mp4")["opus-waiting-for"] == "credits"
    assert standin.calls("upload-links") == 1
    assert ingest(stack, second) == states.WAITING  # a duplicate event uploads nothing either
    assert standin.calls("upload-links") == 1


def test_after_the_month_resets_the_sweeper_hands_the_waiting_video_back_to_ingest(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=10)
    first, second = stack.put("one.mp4", video()), stack.put("two.mp4", video())
    ingest(stack, first)
    assert create(stack, ClipRequest.decode(stack.pull()[0].message.data)) == states.PROJECT_CREATED
    assert ingest(stack, second) == states.WAITING
    assert sweep(services(stack)).admitted_for_credits == 0  # the month is used up

    standin.new_month()
    assert sweep(services(stack)).admitted_for_credits == 1
    request = ingest_request(stack)
    assert request.source.key == storage_object(second).key
    assert handle_ingest_request(request, services(stack)) == states.QUEUED
    assert record(stack, second).upload_complete and standin.calls("upload-links") == 2


def test_the_sweep_logs_the_months_numbers_and_warns_when_they_run_low(stack: Stack, standin, capsys) -> None:
    one_waiting(stack, standin)
    assert create(stack, ClipRequest.decode(stack.pull()[0].message.data)) == states.PROJECT_CREATED
    capsys.readouterr()
    sweep(services(stack))
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"event": "credits"' in x]
    assert line["severity"] == "WARNING" and line["low"] is True  # 5 left, the oldest waiting needs 10
    assert (line["remaining"], line["limit"], line["reserved"], line["oldest_waiting"]) == (5, 15, 0, 10)


def test_an_ingest_request_for_a_video_not_waiting_for_credits_is_ignored(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource)
    assert handle_ingest_request(IngestRequest(storage_object(resource)), services(stack)) == states.QUEUED
    assert standin.calls("upload-links") == 1


def test_a_raised_budget_admits_the_waiting_video(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    first, second = stack.put("one.mp4", video()), stack.put("two.mp4", video())
    ingest(stack, first, OPUS_MONTHLY_CREDIT_BUDGET="10")
    assert create(stack, ClipRequest.decode(stack.pull()[0].message.data)) == states.PROJECT_CREATED
    assert ingest(stack, second, OPUS_MONTHLY_CREDIT_BUDGET="10") == states.WAITING
    assert sweep(services(stack, OPUS_MONTHLY_CREDIT_BUDGET="10")).admitted_for_credits == 0
    assert sweep(services(stack, OPUS_MONTHLY_CREDIT_BUDGET="20")).admitted_for_credits == 1


def test_an_uncapped_workspace_keeps_no_book_and_asks_once(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    svc = services(stack)
    for name in ("one.mp4", "two.mp4"):
        assert ingest_with(svc, stack.put(name, video())) == states.QUEUED
    assert standin.calls("api-usage") == 1
    assert not list(stack.storage.bucket(stack.state_bucket).list_blobs(prefix=CREDITS_PREFIX))


def test_requests_of_one_instance_asking_at_once_share_one_usage_lookup(stack: Stack, standin) -> None:
    """A cold instance's first requests all need the numbers: one call of the request budget, not one each."""
    standin.configure(monthlyCreditLimit=None)
    opus = services(stack).opus
    meeting = threading.Barrier(6, timeout=20)

    def ask() -> None:
        meeting.wait()
        opus.usage()

    askers = [threading.Thread(target=ask) for _ in range(6)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join(timeout=30)
    assert standin.calls("api-usage") == 1


def ingest_with(svc, resource: dict) -> str:
    from opus_pipeline.usecases.ingest import handle_finalized

    return handle_finalized(storage_object(resource), svc)


def test_a_monthly_cap_at_creation_waits_for_reset_at_then_creates_from_the_same_upload(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource)
    request = ClipRequest.decode(stack.pull()[0].message.data)
    standin.configure(monthlyCreditLimit=5, monthResetAt="2020-01-01T00:00:00Z")  # a shared workspace used it
    assert create(stack, request) == states.WAITING
    rec = record(stack, resource)
    assert rec.waiting_for == "credits" and rec.upload_complete

    standin.configure(monthlyCreditLimit=None)  # reset_at has passed: the month is OpusClip's again
    assert sweep(services(stack)).admitted_for_credits == 1
    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data)) == states.PROJECT_CREATED
    assert standin.calls("upload-links") == 1 and len(standin.stats()["uploads"]) == 1  # no second upload
    [project] = standin.stats()["projects"].values()
    assert project["sourceId"] == rec.upload_id == record(stack, resource).upload_id


# -- an upload OpusClip no longer has after a cap wait -------------------------------------------


def capped_at_creation(stack: Stack, standin) -> dict:
    """A video admitted and uploaded whole whose create then met OpusClip's monthly cap (another tool
    of the workspace spent the month): waiting for credits until a ``reset_at`` already past."""
    standin.configure(
        monthlyCreditLimit=10, monthResetAt="2020-01-01T00:00:00Z", projectSeconds=0, clipsPerProject=1, clipBytes=1024
    )
    resource = stack.put("talk.mp4", video())
    assert ingest(stack, resource) == states.QUEUED
    request = ClipRequest.decode(stack.pull()[0].message.data)
    assert standin.create_project(API_KEY).status_code == 201  # the other tool's project: 10 credits
    assert create(stack, request) == states.WAITING
    rec = record(stack, resource)
    assert rec.waiting_for == "credits" and rec.upload_complete and rec.upload_waited
    return resource


def admitted_after_the_reset(stack: Stack, standin) -> ClipRequest:
    """The month resets and the sweeper hands the waiting video's clip request back."""
    standin.new_month()
    assert sweep(services(stack)).admitted_for_credits == 1
    [message] = stack.pull()
    return ClipRequest.decode(message.message.data)


def sent_again(stack: Stack, resource: dict) -> ClipRequest:
    """Ingest takes up the ingest request the refused create published: the clip request of the new upload."""
    assert handle_ingest_request(ingest_request(stack), services(stack)) == states.QUEUED
    [message] = stack.pull()
    return ClipRequest.decode(message.message.data)


def test_an_upload_opusclip_no_longer_has_after_a_cap_wait_is_sent_again_and_comes_back(stack: Stack, standin) -> None:
    resource = capped_at_creation(stack, standin)
    gone, links = record(stack, resource).upload_id, standin.calls("upload-links")
    standin.forget_uploads()

    assert create(stack, admitted_after_the_reset(stack, standin)) == states.WAITING
    assert create(stack, sent_again(stack, resource)) == states.PROJECT_CREATED
    stored = services(stack).ledger.read(storage_object(resource))
    assert check_project(stored, services(stack), "test") == states.CLIPS_READY

    rec = record(stack, resource)
    assert rec.upload_id not in (None, gone) and rec.reuploads == 1 and rec.reason is None
    assert standin.calls("upload-links") == links + 1 and standin.upload(rec.upload_id)["complete"]
    assert [p["sourceId"] for p in standin.stats()["projects"].values() if p["sourceId"] in (gone, rec.upload_id)] == [
        rec.upload_id
    ]


def test_a_video_sent_again_keeps_its_credits_gives_its_slot_up_and_says_so_in_one_line(
    stack: Stack, standin, capsys
) -> None:
    resource = capped_at_creation(stack, standin)
    gone = record(stack, resource).upload_id
    standin.forget_uploads()
    request = admitted_after_the_reset(stack, standin)
    capsys.readouterr()

    assert create(stack, request) == states.WAITING

    rec, svc = record(stack, resource), services(stack)
    assert (rec.upload_id, rec.committed, rec.upload_complete, rec.upload_waited) == (None, 0, False, False)
    assert svc.credit_ledger.read().reserved == {storage_object(resource).key: 10}
    assert storage_object(resource).key not in svc.admission.read().in_flight
    assert live_metadata(stack, "talk.mp4")["opus-waiting-for"] == "credits"
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"upload_gone"' in x]
    assert line["severity"] == "WARNING" and gone in line["message"] and "again" in line["message"]
    assert ingest_request(stack).source.key == storage_object(resource).key


def test_a_video_whose_new_upload_cannot_be_asked_for_is_handed_back_by_the_sweeper(stack: Stack, standin) -> None:
    resource = capped_at_creation(stack, standin)
    standin.forget_uploads()
    request = admitted_after_the_reset(stack, standin)
    missing = stack.topic.replace("clip-requests", "no-such-topic")  # Pub/Sub refuses the publish

    assert create(stack, request, INGEST_REQUESTS_TOPIC=missing) == states.WAITING

    book, key = services(stack).credit_ledger.read(), storage_object(resource).key
    assert [w["key"] for w in book.waiting] == [key] and key not in book.reserved
    assert sweep(services(stack)).admitted_for_credits == 1
    assert handle_ingest_request(ingest_request(stack), services(stack)) == states.QUEUED


def test_an_upload_refused_again_after_it_was_sent_again_fails_for_good(stack: Stack, standin) -> None:
    resource = capped_at_creation(stack, standin)
    links = standin.calls("upload-links")
    standin.forget_uploads()
    assert create(stack, admitted_after_the_reset(stack, standin)) == states.WAITING
    request = sent_again(stack, resource)
    standin.forget_uploads()  # OpusClip does not keep the new upload either
    creates = standin.calls("clip-projects")

    assert create(stack, request) == states.FAILED

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == "upload-gone" and rec.reuploads == 1
    assert "`opus-pipeline retry` sends the video anew" in live_metadata(stack, "talk.mp4")["opus-error"]
    assert create(stack, request) == states.FAILED  # a redelivery calls OpusClip no more
    assert sweep(services(stack)).admitted_for_credits == 0
    assert standin.calls("clip-projects") == creates + 1 and standin.calls("upload-links") == links + 1
    assert stack.pull(subscription=stack.ingest_subscription) == []


def test_retry_sends_a_video_whose_new_upload_was_refused_too_anew(stack: Stack, standin, monkeypatch) -> None:
    resource = capped_at_creation(stack, standin)
    standin.forget_uploads()
    assert create(stack, admitted_after_the_reset(stack, standin)) == states.WAITING
    request = sent_again(stack, resource)
    standin.forget_uploads()
    assert create(stack, request) == states.FAILED
    monkeypatch.setenv("STATE_BUCKET", stack.state_bucket)
    monkeypatch.setenv("CLIP_REQUESTS_TOPIC", stack.topic)

    assert cli.main(["retry", f"gs://{stack.source_bucket}/talk.mp4"]) == 0

    live = stack.storage.bucket(stack.source_bucket).get_blob("talk.mp4")
    assert int(live.generation) > int(resource["generation"])  # a new generation: ingested from the start
    assert stack.pull() == []  # not the clip request of the refused upload


# -- showing it ----------------------------------------------------------------------------------


def one_waiting(stack: Stack, standin) -> dict:
    standin.configure(monthlyCreditLimit=15)
    ingest(stack, stack.put("one.mp4", video()))
    waiting = stack.put("two.mp4", video())
    assert ingest(stack, waiting) == states.WAITING
    return waiting


def test_usage_prints_the_month_what_is_reserved_and_one_line_per_waiting_video(
    stack: Stack, standin, monkeypatch, capsys
) -> None:
    waiting = one_waiting(stack, standin)
    monkeypatch.setenv("OPUS_API_KEY", API_KEY)
    monkeypatch.setenv("OPUS_API_BASE_URL", standin.base_url)
    capsys.readouterr()
    assert cli.main(["usage", f"gs://{stack.source_bucket}", "--state-bucket", stack.state_bucket]) == 0
    out = capsys.readouterr().out
    assert "0 of 15 credits used, 15 remaining" in out
    assert "reserved by 1 admitted videos not yet created: 10 credits" in out
    [line] = [x for x in out.splitlines() if x.startswith("  gs://")]
    assert line.startswith(f"  gs://{stack.source_bucket}/two.mp4#{waiting['generation']}  10 credits")


def test_status_shows_why_a_video_waits(stack: Stack, standin, capsys) -> None:
    one_waiting(stack, standin)
    capsys.readouterr()
    args = ["status", f"gs://{stack.source_bucket}/two", "--state-bucket", stack.state_bucket]
    assert cli.main(args) == 0
    assert "waiting/credits" in capsys.readouterr().out
    assert cli.main([*args, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["waitingFor"] == "credits" and row["credits"] == 10


# -- the stand-in's monthly cap ------------------------------------------------------------------


def api(standin, path: str) -> requests.Response:
    return requests.get(standin.base_url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)


def test_the_standin_answers_usage_and_stamps_every_api_answer(standin) -> None:
    standin.configure(monthlyCreditLimit=900, concurrentProjects=4)
    answer = api(standin, "/api/api-usage?q=mine")
    body = answer.json()
    assert body["uncapped"] is False and body["concurrent"] == {"used": 0, "limit": 4}
    assert {k: body["monthly"][k] for k in ("used", "limit", "remaining")} == {
        "used": 0,
        "limit": 900,
        "remaining": 900,
    }
    assert answer.headers["X-RateLimit-Limit"] == "900" and answer.headers["X-RateLimit-Remaining"] == "900"
    assert "X-RateLimit-Reset" in api(standin, "/api/clip-projects/unknown").headers
    standin.configure(monthlyCreditLimit=None)
    assert api(standin, "/api/api-usage?q=mine").json() == {"uncapped": True}


def test_the_standin_charges_by_duration_refuses_over_the_cap_and_resets_the_month(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=15)
    ingest(stack, stack.put("talk.mp4", video()))
    request = ClipRequest.decode(stack.pull()[0].message.data)
    assert create(stack, request) == states.PROJECT_CREATED
    assert standin.credits_used() == 10
    refused = standin.create_project(API_KEY)  # another 10 credits: over the 15
    assert refused.status_code == 403 and refused.json()["code"] == "API_MONTHLY_CAP_REACHED"
    assert refused.json()["reset_at"].endswith("Z")
    standin.new_month()
    assert standin.credits_used() == 0
    assert json.loads(api(standin, "/api/api-usage?q=mine").text)["monthly"]["remaining"] == 15


# -- the story: a folder twice the month ---------------------------------------------------------


def test_a_folder_twice_the_month_waits_for_the_reset_then_all_come_back_each_uploaded_once(tmp_path: Path) -> None:
    report = run_credit_month(tmp_path / "month", videos=30, monthly_limit=150)

    assert report.before_reset == {states.CLIPS_READY: 15, "waiting/credits": 15}
    assert report.uploads_before_reset == 15  # a waiting video sends no byte
    assert report.after_reset == {states.CLIPS_READY: 30}
    assert report.dead_letters == 0
    assert report.uploads == 30 and report.bytes_sent == report.folder_bytes  # no upload sent twice
    assert report.credits_used == 150  # this month's: the second half
