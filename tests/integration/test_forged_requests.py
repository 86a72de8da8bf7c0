"""Clip requests are not trusted: only a video the ledger knows is acted on, and on the record's word."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject, storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.preferences import Preferences
from opus_pipeline.errors import TransientError
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.pubsub.publish import Message, Publisher
from opus_pipeline.usecases.create_project import REFUSED, handle_clip_request
from opus_pipeline.usecases.ingest import handle_finalized
from opus_pipeline.usecases.sweep import sweep

from conftest import CHUNK, Stack, object_resource
from support import create, ingest, record, services, wait_for

FORGED_TEMPLATE = "forged-template"


def real_upload(stack: Stack, metadata: dict | None = None) -> tuple[dict, ClipRequest]:
    """A real video streamed by ingest, and the clip request it published."""
    resource = stack.put("talk.mp4", video_bytes(CHUNK + 1), metadata=metadata)
    assert ingest(stack, resource) == states.QUEUED
    [received] = stack.pull()
    return resource, ClipRequest.decode(received.message.data)


def forged(request: ClipRequest, **source: object) -> ClipRequest:
    """``request`` with another source and a brand template of the forger's choosing."""
    prefs = Preferences.from_message({**request.preferences.to_message(), "brandTemplateId": FORGED_TEMPLATE})
    return dataclasses.replace(request, source=dataclasses.replace(request.source, **source), preferences=prefs)


def requests_sent(standin) -> list[dict]:
    return [project["request"] for project in standin.stats()["projects"].values()]


def refusals(capsys) -> list[dict]:
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("event") == "clip_request_refused"]


def test_forged_generations_of_a_real_upload_create_no_project_and_leave_its_clips_alone(
    stack: Stack, standin, capsys
) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=2)
    resource, request = real_upload(stack)
    assert create(stack, request) == states.PROJECT_CREATED
    [project_id] = standin.stats()["projects"]
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    later = services(stack)
    later.wall = lambda: time.time() + 3600
    assert sweep(later).concluded == 1
    manifest = stack.storage.bucket(stack.output_bucket).get_blob("talk.mp4/clips.json")
    capsys.readouterr()

    outcomes = [create(stack, forged(request, generation=generation)) for generation in (111, 222, 333)]

    assert outcomes == [REFUSED] * 3 and len(refusals(capsys)) == 3
    assert list(standin.stats()["projects"]) == [project_id]
    assert all("brandTemplateId" not in sent for sent in requests_sent(standin))
    assert sweep(later).open == 0
    after = stack.storage.bucket(stack.output_bucket).get_blob("talk.mp4/clips.json")
    assert after.generation == manifest.generation
    assert record(stack, resource).state == states.CLIPS_READY


def test_the_project_is_made_with_the_records_preferences_not_the_messages(stack: Stack, standin) -> None:
    resource, request = real_upload(stack, metadata={"opus-genre": "Vlog"})

    assert create(stack, forged(request)) == states.PROJECT_CREATED

    [sent] = requests_sent(standin)
    assert sent["curationPref"] == {"genre": "Vlog", "clipDurations": [[0, 90]]} and "brandTemplateId" not in sent
    assert sent["videoUrl"] == record(stack, resource).upload_id


def test_a_request_for_a_video_with_no_record_is_refused_with_what_to_do(stack: Stack, standin, capsys) -> None:
    source = StorageObject(bucket=stack.source_bucket, name="gone.mp4", generation=7, size=CHUNK)
    request = ClipRequest("upload-of-someone", source, Preferences(), "2026-01-01T00:00:00Z")

    assert create(stack, request) == REFUSED

    [line] = refusals(capsys)
    assert line["severity"] == "WARNING" and "no record" in line["message"]
    assert "copy gs://" in line["message"] and "onto itself" in line["message"]
    assert standin.calls("clip-projects") == 0
    assert not list(stack.storage.list_blobs(stack.state_bucket, prefix="videos/"))


def test_a_request_for_another_bucket_is_refused_before_the_ledger_is_read(stack: Stack, standin, capsys) -> None:
    _, request = real_upload(stack)

    assert create(stack, forged(request, bucket="someone-elses-videos")) == REFUSED

    [line] = refusals(capsys)
    assert "SOURCE_BUCKET" in line["message"] and "someone-elses-videos" in line["message"]
    assert standin.calls("clip-projects") == 0


def test_a_finalize_event_of_another_bucket_is_refused_and_its_object_not_touched(
    stack: Stack, standin, capsys
) -> None:
    stack.storage.create_bucket(other := f"{stack.source_bucket}-other")
    blob = stack.storage.bucket(other).blob("talk.mp4")
    blob.upload_from_string(video_bytes(CHUNK + 1), content_type="video/mp4")

    assert handle_finalized(storage_object(object_resource(blob)), services(stack)) == states.SKIPPED

    assert "SOURCE_BUCKET" in capsys.readouterr().out
    assert stack.storage.bucket(other).get_blob("talk.mp4").metadata is None
    assert standin.calls("upload-links") == 0


class _FailingRelease(Admission):
    """The real admission table, whose slot release fails (storage trouble after the call)."""

    def release(self, key: str, now: float) -> list[str]:
        raise TransientError("Cloud Storage could not write the slot table")


def test_a_refusal_by_opusclip_is_recorded_even_if_freeing_the_slot_fails(stack: Stack, standin) -> None:
    resource, request = real_upload(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 400, "body": {"message": "no"}})
    svc = services(stack)
    svc.admission = _FailingRelease(svc.storage, stack.state_bucket, svc.settings.max_parallel_projects)

    with pytest.raises(TransientError):
        handle_clip_request(request, svc)

    assert record(stack, resource).state == states.FAILED
    assert create(stack, request) == states.FAILED  # the redelivery does not ask OpusClip again
    assert standin.calls("clip-projects") == 1


@pytest.mark.parametrize("body", [{"stage": "QUEUED"}, {"id": ""}, {"id": "p\r\n1"}], ids=["none", "empty", "crlf"])
def test_an_accepted_request_without_a_project_id_is_looked_up_before_it_is_sent_again(
    stack: Stack, standin, body: dict
) -> None:
    """OpusClip may have made (and charged for) a project all the same: the video stays ``creating``,
    its slot is freed, and it is created again only when the project list shows none after the grace."""
    resource, request = real_upload(stack)
    standin.inject({"endpoint": "clip-projects", "kind": "status", "status": 200, "body": body})

    with pytest.raises(TransientError, match="without a usable project id"):
        create(stack, request)

    rec = record(stack, resource)
    assert rec.state == states.CREATING and rec.project_id is None and rec.create_sent_at is not None
    table = services(stack).admission.read()
    assert resource_key(resource) not in table.in_flight
    time.sleep(1.05)  # the local OPUS_CREATE_GRACE_SECONDS: the project list shows nothing of it
    assert create(stack, request) == states.PROJECT_CREATED
    assert len(standin.stats()["projects"]) == 1 and standin.calls("project-list") == 1


def resource_key(resource: dict) -> str:
    return storage_object(resource).key


class _ConsumedAtOnce(Publisher):
    """Pub/Sub delivering the clip request to create-project before ingest's publish returns."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.outcomes: list[object] = []

    def publish(self, topic: str, message: Message, what: str) -> str:
        message_id = super().publish(topic, message, what)
        try:
            self.outcomes.append(create(self.stack, ClipRequest.decode(message.encode())))
        except TransientError as exc:
            self.outcomes.append(exc)
        return message_id


def test_a_clip_request_consumed_during_the_hand_over_creates_the_one_project_at_once(stack: Stack, standin) -> None:
    """Ingest records ``queued`` before it publishes: a request delivered before the publish returns
    finds the hand-over done, and the redelivery of that same message creates nothing more."""
    resource = stack.put("talk.mp4", video_bytes(CHUNK + 1))
    svc = services(stack)
    svc.publisher = early = _ConsumedAtOnce(stack)

    assert handle_finalized(storage_object(resource), svc) == states.QUEUED

    assert early.outcomes == [states.PROJECT_CREATED] and standin.calls("clip-projects") == 1
    [received] = stack.pull()
    create(stack, ClipRequest.decode(received.message.data))
    assert standin.calls("clip-projects") == 1 and record(stack, resource).state == states.PROJECT_CREATED
