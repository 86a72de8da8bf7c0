"""The public webhook cannot spend the shared budget: one video per URL, one look a minute handed on
to the sweeper, none asked in the request, no 500s."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.webhook import LOOK_INTERVAL_SECONDS, registered_url, signature
from opus_pipeline.gcs.ledger import Ledger, record_path
from opus_pipeline.usecases.conclude import handle_webhook

from conftest import API_KEY, CHUNK, Stack
from support import create, ingest, record, services

SECRET = "whk-" + "9d2e4f6a8b0c1d3e5f7a9b1c"
HOOK = {"OPUS_WEBHOOK_URL": "https://hooks.example.com/opus", "OPUS_WEBHOOK_TOKEN": SECRET}


def running(stack: Stack, name: str = "talk.mp4") -> dict:
    resource = stack.put(name, video_bytes(CHUNK + 1, salt=name.encode()))
    assert ingest(stack, resource) == states.QUEUED
    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data), **HOOK) == states.PROJECT_CREATED
    return resource


def query_for(key: str, secret: str = SECRET) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(registered_url(HOOK["OPUS_WEBHOOK_URL"], secret, key)).query))


def call(stack: Stack, query: dict[str, str], body: bytes = b"{}", **settings: str) -> int:
    return handle_webhook(query, {}, lambda: body, services(stack, **HOOK, **settings))


def record_generation(stack: Stack, resource: dict) -> int:
    return stack.storage.bucket(stack.state_bucket).get_blob(record_path(storage_object(resource))).generation


def test_thirty_calls_hand_one_look_on_and_write_the_record_once(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    resource = running(stack)
    query, before = query_for(storage_object(resource).key), record(stack, resource)
    lookups = standin.calls("project-get")

    assert call(stack, query) == 200
    first_look = record_generation(stack, resource)
    statuses = [call(stack, query) for _ in range(29)]

    assert statuses == [200] * 29
    assert standin.calls("project-get") == lookups  # the receiver asks OpusClip nothing
    assert record_generation(stack, resource) == first_look  # no write for the 29 calls after the first
    after = record(stack, resource)
    assert after.webhook_looked_at > 0 and after.next_check <= after.webhook_looked_at  # looked at now
    assert (after.checks, after.stage) == (before.checks, before.stage)


def test_a_call_within_the_minute_brings_the_next_look_to_its_end(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    resource = running(stack)
    ledger = Ledger(stack.storage, stack.state_bucket)
    now = time.time()
    # looked at 10 s ago by a webhook, and the sweeper's backoff has reached its 30 minutes
    ledger.update(ledger.read(storage_object(resource)), webhook_looked_at=now - 10, next_check=now + 1800)

    assert call(stack, query_for(storage_object(resource).key)) == 200

    after = record(stack, resource)
    assert after.next_check == after.webhook_looked_at + LOOK_INTERVAL_SECONDS == pytest.approx(now + 50)
    moved = record_generation(stack, resource)
    assert call(stack, query_for(storage_object(resource).key)) == 200
    assert record_generation(stack, resource) == moved  # a later call in the same minute writes nothing


def test_the_url_of_one_video_does_not_open_another(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    first, second = running(stack, "first.mp4"), running(stack, "second.mp4")
    leaked = query_for(storage_object(first).key)

    assert call(stack, {**leaked, "video": storage_object(second).key}) == 401

    assert record(stack, second).webhook_looked_at == 0
    assert call(stack, leaked) == 200 and record(stack, first).webhook_looked_at > 0


def test_the_token_is_judged_before_the_body_is_read(stack: Stack, standin) -> None:
    read: list[bool] = []

    def read_body() -> bytes:
        read.append(True)
        return b"{}"

    query = query_for("some-bucket/talk.mp4#1", secret="not-the-deploy-secret")
    assert handle_webhook(query, {}, read_body, services(stack, **HOOK)) == 401
    assert read == []


@pytest.mark.parametrize("salt", [None, "5a17"], ids=["unsigned", "signed-with-another-key"])
def test_calls_without_a_verifying_signature_are_refused_when_signatures_are_required(
    stack: Stack, standin, salt: str | None
) -> None:
    standin.configure(projectSeconds=600)
    query = query_for(storage_object(running(stack)).key)
    body = b'{"projectId": "x"}'
    signed = {"X-Opus-Signature": signature(API_KEY, body, "5a17"), "X-Opus-Salt": "5a17"}
    wrong = {"X-Opus-Signature": signature("another-key", body, salt), "X-Opus-Salt": salt} if salt else {}
    svc = services(stack, **HOOK, OPUS_WEBHOOK_REQUIRE_SIGNATURE="true")

    assert handle_webhook(query, wrong, lambda: body, svc) == 401
    assert handle_webhook(query, signed, lambda: body, svc) == 200


def test_opus_webhook_secret_names_the_signing_key(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    query = query_for(storage_object(running(stack)).key)
    body = b'{"projectId": "x"}'
    first_key = "first-key-of-the-workspace"
    signed = {"X-Opus-Signature": signature(first_key, body, "5a17"), "X-Opus-Salt": "5a17"}

    required = {"OPUS_WEBHOOK_REQUIRE_SIGNATURE": "true"}
    assert handle_webhook(query, signed, lambda: body, services(stack, **HOOK, **required)) == 401
    svc = services(stack, **HOOK, **required, OPUS_WEBHOOK_SECRET=first_key)
    assert handle_webhook(query, signed, lambda: body, svc) == 200
