"""No secret in any text people read: the record's ``error``, the object's ``opus-error``, logs."""

from __future__ import annotations

import pytest

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline import logs
from opus_pipeline.domain import states
from opus_pipeline.errors import OpusApiError, PermanentError
from opus_pipeline.redaction import redact

from conftest import API_KEY, Stack
from support import create, ingest, live_metadata, record, uploaded

SIGNED = "https://storage.googleapis.com/b/o.mp4?X-Goog-Credential=acct%2F20261201&X-Goog-Signature=5f1e2d3c4b5a"
ECHO = {"message": f"bad request Authorization: Bearer {API_KEY} for {SIGNED}"}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text and "X-Goog-Signature" not in text and "5f1e2d3c4b5a" not in text


# -- the rule, pure -----------------------------------------------------------------------------


def test_a_registered_secret_is_masked_in_an_error_message() -> None:
    logs.register_secret("sk-registered-123456")
    assert str(PermanentError("key sk-registered-123456 refused")) == "key [REDACTED] refused"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"see {SIGNED} now", "see https://storage.googleapis.com/b/o.mp4?[query removed] now"),
        ("at https://user:pw@api.opus.pro/x", "at https://api.opus.pro/x"),
        ('"http://127.0.0.1:9/session?upload_id=abc#frag"', '"http://127.0.0.1:9/session?[query removed]"'),
        ("gs://bucket/what?.mp4 stays", "gs://bucket/what?.mp4 stays"),
    ],
)
def test_urls_lose_their_query_and_user_info(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_an_error_of_every_kind_is_redacted_as_it_is_made() -> None:
    error = OpusApiError(f"rejected: {SIGNED}", reason="opus-rejected")
    assert_no_secret(str(error))


# -- through OpusClip's answers ------------------------------------------------------------------


def test_an_upload_link_refusal_that_echoes_secrets_leaves_none_in_the_record_metadata_or_logs(
    stack: Stack, standin, capsys
) -> None:
    standin.inject({"endpoint": "upload-links", "kind": "status", "status": 400, "body": ECHO})
    resource = stack.put("talk.mp4", video_bytes(smallest_video()))

    assert ingest(stack, resource) == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == "opus-rejected" and "bad request" in rec.error
    assert_no_secret(rec.error, live_metadata(stack, "talk.mp4")["opus-error"], capsys.readouterr().out)


def test_a_project_refusal_that_echoes_secrets_leaves_none_in_the_record_metadata_or_logs(
    stack: Stack, standin, capsys
) -> None:
    resource, request = uploaded(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 400, "body": ECHO})

    assert create(stack, request) == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == "opus-rejected"
    assert_no_secret(rec.error, live_metadata(stack, "talk.mp4")["opus-error"], capsys.readouterr().out)
