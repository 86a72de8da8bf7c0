"""The upload session URL lives in ``sessions/`` of STATE_BUCKET while the upload runs, never in the record."""

from __future__ import annotations

import json
import threading

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.gcs.ledger import record_path
from opus_pipeline.gcs.sessions import UploadSessions, session_path
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS, start

from conftest import CHUNK, Stack, md5_hex
from support import ingest, interrupted_upload, only_upload, record, wait_for


def state_object(stack: Stack, name: str):
    return stack.storage.bucket(stack.state_bucket).get_blob(name)


def test_an_upload_under_way_keeps_its_session_outside_the_state_record(stack: Stack, standin) -> None:
    resource, _, _ = interrupted_upload(stack, standin, video_bytes((FIRST_PUT_CHUNKS + 2) * CHUNK))
    standin.clear_faults()
    obj = storage_object(resource)

    rec = record(stack, resource)
    assert rec.state == states.UPLOADING
    assert "/session/" not in state_object(stack, record_path(obj)).download_as_text()
    kept = json.loads(state_object(stack, session_path(obj)).download_as_text())
    assert kept["sessionUrl"].startswith(stack.standin_url) and "/session/" in kept["sessionUrl"]
    assert kept["uploadId"] == rec.upload_id


def test_the_retry_resumes_the_kept_session_and_then_deletes_it(stack: Stack, standin) -> None:
    data = video_bytes((FIRST_PUT_CHUNKS + 2) * CHUNK)
    resource, _, _ = interrupted_upload(stack, standin, data)
    standin.clear_faults()

    assert ingest(stack, resource) == states.QUEUED

    assert standin.calls("upload-links") == 1 and only_upload(standin)["md5"] == md5_hex(data)
    assert state_object(stack, session_path(storage_object(resource))) is None


def test_a_video_that_fails_mid_upload_leaves_no_session_behind(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "chunk", "kind": "status", "status": 400, "skip": 1})
    resource = stack.put("talk.mp4", video_bytes((FIRST_PUT_CHUNKS + 2) * CHUNK))  # two requests

    assert ingest(stack, resource) == states.FAILED

    assert standin.calls("start") == 1
    assert state_object(stack, session_path(storage_object(resource))) is None


def test_an_upload_under_way_is_recorded_uploading_within_a_second_or_so_of_its_first_byte(
    stack: Stack, standin
) -> None:
    standin.inject({"endpoint": "chunk", "kind": "slow", "seconds": 4, "times": 1})
    resource = stack.put("talk.mp4", video_bytes(CHUNK))
    ingesting = threading.Thread(target=ingest, args=(stack, resource))
    ingesting.start()
    try:
        # noted at the session's start, written by the lease's keeper while the slow request runs
        wait_for(lambda: standin.stats()["uploads"] and record(stack, resource).state == states.UPLOADING, timeout=3.5)
        [upload_id] = standin.stats()["uploads"]
        assert record(stack, resource).upload_id == upload_id
    finally:
        ingesting.join()
    assert record(stack, resource).state == states.QUEUED


def test_a_kept_session_of_another_upload_than_the_record_names_is_resumed_under_its_own(stack: Stack, standin) -> None:
    # the record says ``uploading`` an upload whose session expired; the invocation that opened a new
    # session (and kept it) died before the new upload id rode on a write of the record
    data = video_bytes((FIRST_PUT_CHUNKS + 2) * CHUNK)
    resource, _, svc = interrupted_upload(stack, standin, data)
    standin.clear_faults()
    link = svc.opus.create_upload_link()
    UploadSessions(stack.storage, stack.state_bucket).keep(
        storage_object(resource), start(svc.opus.http, link.url), link.upload_id
    )

    assert ingest(stack, resource) == states.QUEUED

    [message] = stack.pull()
    assert ClipRequest.decode(message.message.data).upload_id == link.upload_id
    assert standin.stats()["uploads"][link.upload_id]["md5"] == md5_hex(data)
