"""The public webhook cannot spend the shared budget: one video per URL, one look a minute, no 500s."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.webhook import registered_url, signature
from opus_pipeline.gcs.ledger import record_path
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


def test_thirty_calls_ask_opusclip_once_and_write_the_record_once(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    resource = running(stack)
    query, before = query_for(storage_object(resource).key), record(stack, resource)
    lookups = standin.calls("project-get")

    assert call(stack, query) == 200
    first_look = record_generation(stack, resource)
    statuses = [call(stack, query) for _ in range(29)]

    assert statuses == [200] * 29
    assert standin.calls("project-get") - lookups == 1
    assert record_generation(stack, resource) == first_look  # no write for the 29 calls after the look
    after = record(stack, resource)
    assert after.webhook_looked_at > 0  # the one write: when the look was made
    assert (after.next_check, after.checks, after.stage) == (before.next_check, before.checks, before.stage)


def test_the_url_of_one_video_does_not_open_another(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    first, second = running(stack, "first.mp4"), running(stack, "second.mp4")
    lookups = standin.calls("project-get")
    leaked = query_for(storage_object(first).key)

    assert call(stack, {**leaked, "video": storage_object(second).key}) == 401

    assert standin.calls("project-get") == lookups
    assert call(stack, leaked) == 200 and standin.calls("project-get") == lookups + 1


def test_the_token_is_judged_before_the_body_is_read(stack: Stack, standin) -> None:
    read: list[bool] = []

    def read_body() -> bytes:
        read.append(True)
        return b"{}"

    query = query_for("some-bucket/talk.mp4#1", secret="not-the-deploy-secret")
    assert handle_webhook(query, {}, read_body, services(stack, **HOOK)) == 401
    assert read == []


def test_unsigned_calls_are_refused_when_signatures_are_required(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    query = query_for(storage_object(running(stack)).key)
    body = b'{"projectId": "x"}'
    signed = {"X-Opus-Signature": signature(API_KEY, body, "5a17"), "X-Opus-Salt": "5a17"}
    svc = services(stack, **HOOK, OPUS_WEBHOOK_REQUIRE_SIGNATURE="true")

    assert handle_webhook(query, {}, lambda: body, svc) == 401
    assert handle_webhook(query, signed, lambda: body, svc) == 200


@pytest.mark.parametrize("status", [401, 403])
def test_a_lookup_that_can_never_succeed_is_answered_200_with_an_error_line(
    stack: Stack, standin, capsys, status: int
) -> None:
    standin.configure(projectSeconds=600)
    resource = running(stack)
    standin.inject({"endpoint": "project-get", "kind": "status", "status": status, "body": {"message": "no"}})
    capsys.readouterr()

    assert call(stack, query_for(storage_object(resource).key)) == 200

    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"webhook_error"' in x]
    assert line["severity"] == "ERROR" and line["reason"] == "api-key-refused"
    assert record(stack, resource).state == states.PROJECT_CREATED
