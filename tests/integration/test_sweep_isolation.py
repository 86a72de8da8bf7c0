"""One message, one marker or one project can never stop the sweeper; names are checked at the door."""

from __future__ import annotations

import json
import time

import pytest

from opus_local.videos import video_bytes
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.errors import TransientError
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.ledger import record_path
from opus_pipeline.usecases.sweep import SweepReport, sweep

from conftest import CHUNK, Stack
from support import create, ingest, live_metadata, record, services, wait_for

LATER = 24 * 3600.0


def running(stack: Stack, name: str) -> dict:
    """A real video of ``name`` ingested and its project created; its object resource."""
    resource = stack.put(name, video_bytes(CHUNK + 1, salt=name.encode()))
    assert ingest(stack, resource) == states.QUEUED
    [message] = stack.pull()
    assert create(stack, ClipRequest.decode(message.message.data)) == states.PROJECT_CREATED
    return resource


def ended(stack: Stack, standin, resource: dict) -> None:
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)


def sweep_later(stack: Stack, admission: type[Admission] = Admission) -> SweepReport:
    svc = services(stack)
    svc.wall = lambda: time.time() + LATER
    svc.admission = admission(svc.storage, stack.state_bucket, svc.settings.max_parallel_projects)
    return sweep(svc)


class _UnreadableTable(Admission):
    """The real admission table, which storage cannot list (its read fails)."""

    def read(self) -> tuple:
        raise TransientError("Cloud Storage could not list the slot table")


def write_state_object(stack: Stack, name: str, data: bytes) -> None:
    stack.storage.bucket(stack.state_bucket).blob(name).upload_from_string(data)


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=1)


def test_a_marker_that_names_no_video_is_skipped_with_a_log_line(stack: Stack, standin, capsys) -> None:
    write_state_object(stack, f"open/{stack.source_bucket}/#1", b"")  # what `name: ""` used to leave
    write_state_object(stack, "open/not-a-key", b"")
    resource = running(stack, "talk.mp4")
    ended(stack, standin, resource)

    assert sweep_later(stack).concluded == 1

    assert record(stack, resource).state == states.CLIPS_READY
    assert capsys.readouterr().out.count('"bad_open_marker"') == 2


def test_an_unexpected_error_of_one_project_does_not_stop_the_others(stack: Stack, standin, capsys) -> None:
    broken = running(stack, "broken.mp4")  # the oldest: looked at first
    healthy = running(stack, "healthy.mp4")
    ended(stack, standin, healthy)
    write_state_object(stack, record_path(storage_object(broken)), b"{ not a record")

    report = sweep_later(stack)

    assert report.concluded == 1 and report.errors == 1
    assert record(stack, healthy).state == states.CLIPS_READY
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"sweep_error"' in x]
    assert line["severity"] == "ERROR" and "broken.mp4" in line["message"]


def test_a_failed_reclaim_does_not_stop_the_looks(stack: Stack, standin) -> None:
    resource = running(stack, "talk.mp4")

    report = sweep_later(stack, _UnreadableTable)

    assert report.checked == 1 and report.errors == 1
    assert record(stack, resource).checks == 1


def test_a_name_too_long_for_its_state_record_fails_at_once_without_a_retry(stack: Stack, standin, capsys) -> None:
    name = "/".join(["d" * 99] * 10) + ".mp4"  # 1003 bytes: a valid object name, its record's is too long
    resource = stack.put(name, video_bytes(CHUNK + 1))

    assert ingest(stack, resource) == states.FAILED

    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"video_failed"' in x]
    assert line["severity"] == "ERROR" and line["reason"] == "bad-name" and "rename it" in line["message"]
    metadata = live_metadata(stack, name)
    assert metadata["opus-status"] == states.FAILED and "state record" in metadata["opus-error"]
    assert standin.calls("upload-links") == 0
    assert not list(stack.storage.list_blobs(stack.state_bucket, prefix="videos/"))
