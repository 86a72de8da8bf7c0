"""Nothing OpusClip or a caller sends can make the pipeline loop, overflow or write bad JSON (pure logic)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math

import pytest

from opus_pipeline.domain import manifest, states, webhook
from opus_pipeline.domain.events import StorageObject, pubsub_attributes
from opus_pipeline.domain.messages import SWEEP_ALL, SWEEP_VIDEO, SweepTick
from opus_pipeline.errors import PoisonMessageError

KEY = "the-workspace-first-key"
BODY = b'{"projectId": "P1"}'
SALT = "ab12"
SOURCE = StorageObject("videos", "talk.mp4", 7, 1)


def digest(key: str = KEY) -> bytes:
    return hmac.new(key.encode(), BODY + SALT.encode(), hashlib.sha256).digest()


# -- the sweeper's backoff -----------------------------------------------------------------------


@pytest.mark.parametrize("checks", [1025, 5000, 10**6])
def test_a_project_looked_at_for_weeks_keeps_the_backoff_cap(checks: int) -> None:
    assert states.next_check_seconds(checks) == 1800.0


def test_the_backoff_still_doubles_from_a_minute() -> None:
    assert [states.next_check_seconds(n) for n in (1, 2, 3, 6, 7)] == [60.0, 120.0, 240.0, 1800.0, 1800.0]


# -- slots and renders ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["COMPLETE", "STALLED"])
def test_a_project_opusclip_no_longer_counts_holds_no_slot(stage: str) -> None:
    assert not states.holds_slot(states.PROJECT_CREATED, stage)
    assert not states.holds_slot(states.CONCLUDING, stage)


def test_a_running_or_creating_project_holds_its_slot() -> None:
    assert states.holds_slot(states.PROJECT_CREATED, "CLIPPING")
    assert states.holds_slot(states.CREATING, None)
    assert not states.holds_slot(states.CLIPS_READY, None)


def test_the_render_wait_starts_at_the_first_look_and_ends_after_its_length() -> None:
    assert not states.render_wait_over(0.0, 10_000.0, 3600.0)  # not seen rendering yet
    assert not states.render_wait_over(1000.0, 1000.0 + 3599, 3600.0)
    assert states.render_wait_over(1000.0, 1000.0 + 3600, 3600.0)


# -- NaN and infinity from OpusClip --------------------------------------------------------------


def test_nan_and_infinite_scores_are_written_as_null() -> None:
    clips = [
        {"id": "P.a", "rank": math.nan, "score": math.inf, "durationMs": -math.inf, "timeRanges": [[0, math.nan]]},
        {"id": "P.b", "rank": 2, "score": 80.5},
    ]
    doc = manifest.manifest(SOURCE, "up", "P", "COMPLETE", "t", clips, {})

    text = json.dumps(doc, allow_nan=False)  # raises on NaN or infinity

    entries = {entry["id"]: entry for entry in json.loads(text)["clips"]}
    assert entries["P.a"]["rank"] is None and entries["P.a"]["score"] is None
    assert entries["P.a"]["durationMs"] is None and entries["P.a"]["timeRanges"] == []
    assert entries["P.b"]["rank"] == 2 and entries["P.b"]["score"] == 80.5


def test_a_nan_rank_does_not_order_the_clips() -> None:
    clips = [{"id": "a", "rank": math.nan, "score": 1}, {"id": "b", "rank": 1, "score": 9}]
    assert [c["id"] for c in manifest.best_first(clips)] == ["b", "a"]  # by score, as rank is not all numbers


HUGE = 10**400  # what Python's JSON reader makes of a 401-digit integer: no float holds it


def test_a_rank_or_score_too_big_for_a_float_is_written_as_null() -> None:
    clips = [{"id": "P.a", "rank": HUGE, "score": -HUGE}, {"id": "P.b", "rank": 2, "score": 80.5}]

    doc = manifest.manifest(SOURCE, "up", "P", "COMPLETE", "t", clips, {})

    entries = {entry["id"]: entry for entry in doc["clips"]}
    assert entries["P.a"]["rank"] is None and entries["P.a"]["score"] is None


def test_a_rank_too_big_for_a_float_does_not_order_the_clips() -> None:
    clips = [{"id": "a", "rank": HUGE, "score": 1}, {"id": "b", "rank": 1, "score": 9}]
    assert [c["id"] for c in manifest.best_first(clips)] == ["b", "a"]  # by score, as rank is not all numbers


# -- webhook signatures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        digest().hex(),
        digest().hex().upper(),
        base64.b64encode(digest()).decode(),
        base64.urlsafe_b64encode(digest()).decode().rstrip("="),
    ],
    ids=["hex", "upper-hex", "base64", "base64url-unpadded"],
)
def test_a_signature_verifies_in_hex_or_base64(written: str) -> None:
    assert webhook.verifies((KEY,), BODY, SALT, written)


@pytest.mark.parametrize(
    "written",
    [digest("another-key").hex(), base64.b64encode(digest("another-key")).decode(), "not a digest", "", "00" * 31],
    ids=["hex-other-key", "base64-other-key", "garbage", "empty", "short"],
)
def test_a_signature_of_another_key_or_no_digest_does_not_verify(written: str) -> None:
    assert not webhook.verifies((KEY,), BODY, SALT, written)


def test_the_webhook_secret_is_tried_before_the_api_key() -> None:
    assert webhook.signing_keys("api-key", KEY) == (KEY, "api-key")
    assert webhook.signing_keys("api-key", None) == ("api-key",)
    assert webhook.verifies(webhook.signing_keys("api-key", KEY), BODY, SALT, digest().hex())


def test_a_mis_signed_call_is_a_hint_with_a_warning_unless_signatures_are_required() -> None:
    headers = {"X-Opus-Signature": digest("another-key").hex(), "X-Opus-Salt": SALT}

    hint = webhook.judge_body((KEY,), headers, BODY, require_signature=False)
    refused = webhook.judge_body((KEY,), headers, BODY, require_signature=True)

    assert hint.status is None and "first API key" in hint.warning and "OPUS_WEBHOOK_SECRET" in hint.warning
    assert refused.status == 401 and not refused.warning


def test_a_verified_call_carries_no_warning() -> None:
    headers = {"X-Opus-Signature": base64.b64encode(digest()).decode(), "X-Opus-Salt": SALT}
    assert webhook.judge_body((KEY,), headers, BODY, require_signature=True) == webhook.Verdict(None)


def test_a_call_within_the_minute_is_looked_at_when_the_minute_ends() -> None:
    assert webhook.next_look_at(1000.0, 1000.0 + 1800) == 1000.0 + webhook.LOOK_INTERVAL_SECONDS
    assert webhook.next_look_at(1000.0, 1010.0) == 1010.0  # the schedule had it sooner


# -- the webhook's tick ------------------------------------------------------------------------------


def test_a_webhook_tick_names_its_video_in_the_body() -> None:
    tick = SweepTick("a webhook call", scope=SWEEP_VIDEO, video=SOURCE.key)
    event_data = {"message": {"data": "", "attributes": tick.attributes()}}

    assert SweepTick.scope_of(pubsub_attributes(event_data)) == SWEEP_VIDEO
    assert SweepTick.video_of(tick.encode()) == SOURCE.key
    assert "video" not in tick.attributes()  # a key may be longer than an attribute value may be


@pytest.mark.parametrize("body", [b"{}", b'{"video": ""}', b'{"video": 5}', b"[]", b"\xff"])
def test_a_video_tick_without_a_video_is_refused(body: bytes) -> None:
    with pytest.raises(PoisonMessageError):
        SweepTick.video_of(body)


def test_a_scheduled_tick_still_sweeps_all() -> None:
    assert SweepTick.scope_of({}) == SWEEP_ALL
    assert SweepTick.scope_of({"scope": "VIDEO"}) == SWEEP_ALL
