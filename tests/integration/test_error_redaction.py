"""No secret in any text people read: the record's ``error``, the object's ``opus-error``, logs."""

from __future__ import annotations

from opus_local.videos import smallest_video, video_bytes
from opus_pipeline.domain import states

from conftest import API_KEY, Stack
from support import SIGNED, assert_no_secret, create, ingest, live_metadata, record, uploaded

ECHO = {"message": f"bad request Authorization: Bearer {API_KEY} for {SIGNED}"}


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
