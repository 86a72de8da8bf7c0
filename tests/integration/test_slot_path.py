"""The writes on the path of a project slot: few on any one object, none that holds a slot longer than OpusClip does."""

from __future__ import annotations

import time

import pytest
from test_webhook_budget import HOOK, query_for, running

from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject, storage_object
from opus_pipeline.domain.record import Stored, VideoRecord
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.claims import CHECKPOINT_SECONDS, HeldRecord, Lease
from opus_pipeline.gcs.ledger import Ledger, record_path
from opus_pipeline.usecases import conclude
from opus_pipeline.usecases.conclude import check_project, handle_webhook
from opus_pipeline.usecases.sweep import look_at

from conftest import Stack
from support import services, wait_for


def first_write(ledger: Ledger, obj: StorageObject) -> Stored:
    record = VideoRecord(obj)
    return Stored(record, ledger.cas(obj).create(record.to_json()))


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=2)


def test_progress_noted_within_a_second_of_the_last_write_rides_on_the_next_write(stack: Stack) -> None:
    ledger = Ledger(stack.storage, stack.state_bucket)
    obj = storage_object(stack.put("talk.mp4", b"x"))
    held = HeldRecord(ledger, first_write(ledger, obj), Lease("me", 60.0))
    written = stack.storage.bucket(stack.state_bucket).get_blob(record_path(obj)).generation

    held.checkpoint(stage="QUEUED")
    assert stack.storage.bucket(stack.state_bucket).get_blob(record_path(obj)).generation == written

    held.save(checks=1)
    stored = ledger.read(obj)
    assert (stored.record.stage, stored.record.checks) == ("QUEUED", 1)


def test_progress_noted_a_second_after_the_last_write_is_written_at_once(stack: Stack) -> None:
    ledger = Ledger(stack.storage, stack.state_bucket)
    obj = storage_object(stack.put("talk.mp4", b"x"))
    held = HeldRecord(ledger, first_write(ledger, obj), Lease("me", 60.0))
    time.sleep(CHECKPOINT_SECONDS)

    held.checkpoint(stage="QUEUED")

    assert ledger.read(obj).record.stage == "QUEUED"


def test_a_completed_projects_slot_is_free_before_its_clips_are_copied(stack: Stack, standin, monkeypatch) -> None:
    resource = running(stack)
    key = storage_object(resource).key
    admission = Admission(stack.storage, stack.state_bucket, cap=4)
    assert key in admission.read().in_flight
    held_while_copying = []
    real_copy = conclude.copy_clip

    def copy_clip(*args, **kwargs):
        held_while_copying.append(key in admission.read().in_flight)
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(conclude, "copy_clip", copy_clip)
    ledger = Ledger(stack.storage, stack.state_bucket)
    wait_for(lambda: standin.project(ledger.read(storage_object(resource)).record.project_id)["stage"] == "COMPLETE")

    assert check_project(ledger.read(storage_object(resource)), services(stack, **HOOK), "test") == states.CLIPS_READY
    assert held_while_copying and not any(held_while_copying)


def test_a_webhook_arriving_before_the_projects_creation_is_recorded_waits_for_it(stack: Stack, standin) -> None:
    """A short project can end while ``project-created`` is still being written (a throttled write);
    OpusClip sends its webhook once, so it must not be ignored as ``creating``."""
    resource = running(stack)
    obj = storage_object(resource)
    ledger = Ledger(stack.storage, stack.state_bucket)
    created = ledger.read(obj).record
    wait_for(lambda: standin.project(created.project_id)["stage"] == "COMPLETE")
    blob = stack.storage.bucket(stack.state_bucket).blob(record_path(obj))
    blob.upload_from_string(created.replace(state=states.CREATING, project_id=None).to_json())
    svc = services(stack, **HOOK)

    def creation_recorded(seconds: float) -> None:
        blob.upload_from_string(created.to_json())

    svc.sleep = creation_recorded

    assert handle_webhook(query_for(obj.key), {}, lambda: b"{}", svc) == 200

    handed_on = ledger.read(obj).record
    assert handed_on.webhook_looked_at > 0 and handed_on.next_check <= handed_on.webhook_looked_at
    assert look_at(services(stack), obj.key).concluded == 1  # the sweeper's look the receiver asked for
    assert ledger.read(obj).record.state == states.CLIPS_READY
