"""Credits cannot be skipped, and a monthly cap makes a video wait wherever OpusClip says it: an
ingest request goes through the same gate as a first upload, a creation without a reservation is
counted, a 403 cap on upload-links or api-usage waits, and a video whose hand-back was lost is found."""

from __future__ import annotations

import pytest

from opus_pipeline.domain import states
from opus_pipeline.domain.credits import WAITING_FOR_CREDITS
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest, IngestRequest
from opus_pipeline.errors import TransientError
from opus_pipeline.usecases.ingest import handle_ingest_request
from opus_pipeline.usecases.sweep import sweep

from conftest import API_KEY, Stack
from support import CAP_BODY, create, ingest, live_metadata, record, services, video

OPUS_CAP_BODY = {
    "errorName": "API_MONTHLY_CAP_REACHED",
    "errorMessage": "monthly cap",
    "reset_at": CAP_BODY["reset_at"],
}


def waiting_for_credits(stack: Stack, standin) -> tuple[dict, dict]:
    """Two videos in a month of 10 credits: the first created, the second waiting (nothing reserved)."""
    standin.configure(monthlyCreditLimit=10)
    first, second = stack.put("one.mp4", video()), stack.put("two.mp4", video())
    ingest(stack, first)
    assert create(stack, ClipRequest.decode(stack.pull()[0].message.data)) == states.PROJECT_CREATED
    assert ingest(stack, second) == states.WAITING
    return first, second


def test_a_forged_ingest_request_for_a_waiting_video_uploads_nothing(stack: Stack, standin) -> None:
    _, second = waiting_for_credits(stack, standin)
    links = standin.calls("upload-links")

    assert handle_ingest_request(IngestRequest(storage_object(second)), services(stack)) == states.WAITING

    assert standin.calls("upload-links") == links and record(stack, second).upload_id is None
    book = services(stack).credit_ledger.read()
    assert [w["key"] for w in book.waiting] == [storage_object(second).key] and not book.reserved


def test_an_ingest_request_does_not_admit_a_queued_video_out_of_turn_the_sweeper_does(stack: Stack, standin) -> None:
    _, second = waiting_for_credits(stack, standin)
    standin.new_month()
    request = IngestRequest(storage_object(second))

    assert handle_ingest_request(request, services(stack)) == states.WAITING  # its turn is the sweeper's to give
    assert sweep(services(stack)).admitted_for_credits == 1
    assert services(stack).credit_ledger.read().reserved == {storage_object(second).key: 10}
    assert handle_ingest_request(request, services(stack)) == states.QUEUED


def test_a_clip_request_without_a_reservation_waits_when_its_credits_do_not_fit(stack: Stack, standin) -> None:
    """``opus-pipeline retry`` of a failed video (its reservation given up) or a forged request: project
    creation asks the credit gate as a first upload does, and nothing is created past the month."""
    standin.configure(monthlyCreditLimit=10)
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource)
    request = ClipRequest.decode(stack.pull()[0].message.data)
    services(stack).credit_ledger.change("", lambda book: book.reserved.clear())  # given up, as at a failure
    standin.create_project(API_KEY).raise_for_status()  # the month's 10 credits spent by another tool
    created = standin.calls("clip-projects")

    assert create(stack, request) == states.WAITING

    assert standin.calls("clip-projects") == created
    assert record(stack, resource).waiting_for == WAITING_FOR_CREDITS
    assert [w["key"] for w in services(stack).credit_ledger.read().waiting] == [storage_object(resource).key]


def test_a_refused_usage_lookup_at_the_credit_gate_fails_nothing_and_creates_nothing(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource)
    request = ClipRequest.decode(stack.pull()[0].message.data)
    standin.inject({"endpoint": "api-usage", "kind": "status", "status": 400, "body": {"message": "Bad Request"}})

    with pytest.raises(TransientError, match="credit gate"):
        create(stack, request, OPUS_MONTHLY_CREDIT_BUDGET="100")

    assert record(stack, resource).state == states.QUEUED and standin.calls("clip-projects") == 0


def test_a_creation_without_a_reservation_is_counted_against_the_budget(stack: Stack, standin) -> None:
    standin.configure(monthlyCreditLimit=None)
    budget = {"OPUS_MONTHLY_CREDIT_BUDGET": "100"}
    resource = stack.put("talk.mp4", video())
    ingest(stack, resource, **budget)
    request = ClipRequest.decode(stack.pull()[0].message.data)
    svc = services(stack, **budget)
    svc.credit_ledger.change("", lambda book: book.reserved.clear())  # a lost reservation

    assert create(stack, request, **budget) == states.PROJECT_CREATED

    assert services(stack, **budget).credit_ledger.read().created == record(stack, resource).credits == 10


@pytest.mark.parametrize("body", [CAP_BODY, OPUS_CAP_BODY], ids=["code", "errorName"])
def test_a_monthly_cap_on_the_upload_link_makes_the_video_wait(stack: Stack, standin, body: dict) -> None:
    resource = stack.put("talk.mp4", video())
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": 403, "body": body})

    assert ingest(stack, resource) == states.WAITING

    rec = record(stack, resource)
    assert rec.waiting_for == "credits" and rec.reset_at == CAP_BODY["reset_at"]
    assert live_metadata(stack, "talk.mp4")["opus-waiting-for"] == "credits"
    [place] = services(stack).credit_ledger.read().waiting
    assert place["key"] == storage_object(resource).key and place["credits"] == rec.credits == 10


def test_a_monthly_cap_on_the_usage_lookup_makes_the_video_wait(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    standin.inject({"endpoint": "api-usage", "kind": "status", "status": 403, "body": OPUS_CAP_BODY})

    assert ingest(stack, resource) == states.WAITING
    assert record(stack, resource).waiting_for == "credits" and standin.calls("upload-links") == 0


def test_opusclips_own_error_body_is_shown(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video())
    body = {"errorName": "INVALID_REQUEST", "errorMessage": "the usecase is unknown"}
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": 400, "body": body})

    assert ingest(stack, resource) == states.FAILED
    assert "INVALID_REQUEST: the usecase is unknown" in record(stack, resource).error


def test_a_video_admitted_whose_hand_back_was_lost_is_handed_back_by_the_sweeper(stack: Stack, standin) -> None:
    """As after a crash between ``waiting`` and the ingest-request publish: reserved, waiting, no request."""
    _, second = waiting_for_credits(stack, standin)
    key = storage_object(second).key
    services(stack).credit_ledger.change("", lambda book: book.waiting.clear() or book.reserved.update({key: 10}))
    standin.new_month()

    sweep(services(stack))

    [message] = stack.pull(subscription=stack.ingest_subscription)
    assert handle_ingest_request(IngestRequest.decode(message.message.data), services(stack)) == states.QUEUED
