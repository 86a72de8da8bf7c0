"""The pure rules of a create call that may have been acted on: headers read leniently, a project
found in OpusClip's project list, what an ambiguous creation does next, credits never counted free."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
import urllib3

from opus_pipeline import http_policy
from opus_pipeline.domain.creation import (
    CLOCK_SKEW_SECONDS,
    MAX_CREATE_ATTEMPTS,
    Found,
    Next,
    Sought,
    decide,
    find_project,
    listing_complete,
    project_id_of,
)
from opus_pipeline.domain.credits import CreditBook, Usage, reset_moment
from opus_pipeline.opus.client import _detail

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
SENT = NOW - 30
SOUGHT = Sought(upload_id="up_1", title="talk", since=SENT)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def item(project_id: str = "P1", **fields) -> dict:
    return {"projectId": project_id, "createdAt": iso(SENT + 1), "sourceInfo": {"title": "talk"}, **fields}


# -- X-RateLimit-Reset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1796083200", "2026-12-01T00:00:00Z"),
        ("1796083200000", "2026-12-01T00:00:00Z"),
        ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("3600", iso(NOW + 3600)),
    ],
    ids=["epoch-seconds", "epoch-milliseconds", "iso", "seconds-from-now"],
)
def test_a_rate_limit_reset_is_read_as_seconds_milliseconds_or_iso(raw: str, expected: str) -> None:
    assert reset_moment(raw, NOW) == expected


@pytest.mark.parametrize("raw", ["soon", "-5", "nan", "inf", "1e400", "99999999999999999999", "", None])
def test_an_unreadable_rate_limit_reset_is_ignored(raw: str | None) -> None:
    assert reset_moment(raw, NOW) is None


def test_odd_rate_limit_headers_never_fail_an_answer() -> None:
    headers = {"X-RateLimit-Limit": "900", "X-RateLimit-Remaining": "880", "X-RateLimit-Reset": "1796083200000"}
    usage = Usage.from_headers(headers, NOW)
    assert usage is not None and usage.remaining == 880 and usage.reset_at == "2026-12-01T00:00:00Z"
    assert Usage.from_headers({"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "1"}, NOW) is None


# -- the project list ---------------------------------------------------------------------------


def test_the_item_naming_the_upload_is_the_project() -> None:
    items = [item("P2", sourceId="up_2"), item("P1", sourceId="up_1")]
    assert find_project(items, SOUGHT) == (Found.ONE, [items[1]])


def test_the_upload_id_within_a_longer_source_names_it() -> None:
    items = [item("P1", sourceId="UPLOADED_up_1", sourceInfo={"title": "other"})]
    assert find_project(items, SOUGHT) == (Found.ONE, items)
    assert find_project([item("P1", sourceUri="https://files.example/up_1.mp4?sig=x")], SOUGHT)[0] is Found.ONE


def test_an_item_naming_another_upload_of_the_same_kind_is_never_taken_for_it_whatever_its_title() -> None:
    assert find_project([item("P2", sourceId="up_2")], SOUGHT) == (Found.NONE, [])
    assert find_project([item("P10", sourceId="up_10")], SOUGHT) == (Found.NONE, [])


def test_a_project_of_the_upload_made_before_the_first_attempt_is_not_it() -> None:
    """The project the upload had before ``retry --new-project`` asked for another."""
    old = item("P0", sourceId="up_1", createdAt=iso(SENT - CLOCK_SKEW_SECONDS - 1))
    assert find_project([old], SOUGHT) == (Found.NONE, [])


def test_a_longer_upload_id_does_not_name_a_shorter_one() -> None:
    assert find_project([item("P10", sourceId="up_10", sourceInfo={"title": "other"})], SOUGHT) == (Found.NONE, [])


def test_a_source_that_does_not_name_the_upload_falls_back_to_title_and_time() -> None:
    """OpusClip's OpenAPI requires a sourceId on every project and does not say what an upload's holds."""
    items = [item("P1", sourcePlatform="UPLOADED", sourceId="YT_tEXaoozFRes")]
    assert find_project(items, SOUGHT) == (Found.ONE, items)


def test_an_item_imported_from_another_platform_is_never_taken_for_it_whatever_its_title() -> None:
    assert find_project([item("P2", sourcePlatform="YOUTUBE", sourceId="YT_x")], SOUGHT) == (Found.NONE, [])


def test_an_item_naming_no_source_is_matched_by_title_and_a_creation_after_the_attempt() -> None:
    items = [item("P9", sourceInfo={"title": "other"}), item("P1")]
    assert find_project(items, SOUGHT) == (Found.ONE, [items[1]])


@pytest.mark.parametrize("created", [(SENT + 1) * 1000, SENT + 1], ids=["epoch-milliseconds", "epoch-seconds"])
def test_a_numeric_creation_time_is_read_in_seconds_or_milliseconds(created: float) -> None:
    assert find_project([item("P1", createdAt=created)], SOUGHT)[0] is Found.ONE


def test_an_item_created_before_the_first_attempt_is_not_it() -> None:
    old = item("P0", createdAt=iso(SENT - CLOCK_SKEW_SECONDS - 1))
    assert find_project([old], SOUGHT) == (Found.NONE, [])


def test_two_items_that_fit_only_by_title_are_not_told_apart() -> None:
    assert find_project([item("P1"), item("P2")], SOUGHT) == (Found.SEVERAL, [])


def test_a_project_listed_on_two_pages_is_one_project() -> None:
    assert find_project([item("P1"), item("P1")], SOUGHT) == (Found.ONE, [item("P1")])
    assert find_project([item("P1", sourceId="up_1")] * 2, SOUGHT) == (Found.ONE, [item("P1", sourceId="up_1")])


def test_two_projects_naming_the_upload_are_both_found_the_oldest_first() -> None:
    newer = item("P2", sourceId="up_1", createdAt=iso(SENT + 20))
    older = item("P1", sourceId="up_1", createdAt=iso(SENT + 1))
    assert find_project([newer, older], SOUGHT) == (Found.ONE, [older, newer])


def test_an_item_without_a_usable_project_id_is_skipped() -> None:
    assert find_project([{"projectId": "p\r\n", "sourceId": "up_1"}], SOUGHT) == (Found.NONE, [])
    assert project_id_of({"id": "", "projectId": "P1"}) == "P1"


# -- how far the project list is read -----------------------------------------------------------


def test_a_short_page_ends_the_listing() -> None:
    assert listing_complete([item("P1")], page_size=100, since=SENT)


def test_a_full_page_reaching_back_past_the_first_attempt_ends_the_listing() -> None:
    page = [item("P1"), item("P0", createdAt=iso(SENT - CLOCK_SKEW_SECONDS - 1))]
    assert listing_complete(page, page_size=2, since=SENT)


def test_a_full_page_of_projects_made_since_the_attempt_asks_for_the_next() -> None:
    assert not listing_complete([item("P2"), item("P1")], page_size=2, since=SENT)


# -- what an ambiguous creation does next -------------------------------------------------------


def test_within_the_grace_nothing_is_created() -> None:
    assert decide(Found.NONE, 1, NOW - 10, NOW, grace=300) is Next.WAIT


def test_past_the_grace_with_an_attempt_left_it_is_created_again() -> None:
    assert decide(Found.NONE, 1, NOW - 301, NOW, grace=300) is Next.CREATE


def test_a_listing_that_never_reached_the_first_attempt_never_creates_again() -> None:
    assert decide(Found.NONE, 1, NOW - 301, NOW, grace=300, complete=False) is Next.GIVE_UP


def test_past_the_last_attempt_it_gives_up() -> None:
    assert decide(Found.NONE, MAX_CREATE_ATTEMPTS, NOW - 301, NOW, grace=300) is Next.GIVE_UP


def test_several_projects_that_may_be_it_give_up_at_once() -> None:
    assert decide(Found.SEVERAL, 1, NOW, NOW, grace=300) is Next.GIVE_UP


# -- was the request sent? ----------------------------------------------------------------------


def test_a_connection_never_made_proves_nothing_was_sent() -> None:
    refused = requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(None, "refused"))
    )
    assert not http_policy.may_have_been_sent(refused)
    assert not http_policy.may_have_been_sent(requests.ConnectTimeout())


@pytest.mark.parametrize("exc", [requests.ReadTimeout(), requests.ConnectionError("Connection aborted")])
def test_a_lost_answer_may_have_been_acted_on(exc: requests.RequestException) -> None:
    assert http_policy.may_have_been_sent(exc)


# -- OpusClip's error body, credits -------------------------------------------------------------


def test_opusclips_own_error_body_is_read() -> None:
    assert _detail({"errorName": "INVALID_VIDEO", "errorMessage": "the upload is not a video"}) == (
        "INVALID_VIDEO: the upload is not a video"
    )


def test_a_creation_without_a_reservation_is_counted_at_the_records_estimate() -> None:
    book = CreditBook(month="2026-12")
    book.settle("b/v.mp4#1", created=True, now=NOW, credits=12)
    assert book.created == 12


def test_a_creation_settled_twice_is_counted_once() -> None:
    book = CreditBook(month="2026-12", reserved={"k": 10})
    book.settle("k", created=True, now=NOW)
    book.reserved["k"] = 10  # as left by a crash before the reservation was given up
    book.settle("k", created=True, now=NOW, credits=10)
    assert book.created == 10 and book.reserved == {}


def test_a_creation_from_the_queue_is_counted_at_its_place_estimate() -> None:
    book = CreditBook(month="2026-12", waiting=[{"key": "k", "credits": 20, "since": NOW, "notBefore": None}])
    book.settle("k", created=True, now=NOW)
    assert book.created == 20 and book.waiting == []
