"""One message, one marker or one project can never stop the sweeper, nor can projects whose looks keep
failing starve the others; names are checked at the door."""

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
from opus_pipeline.usecases.sweep import LOOKS_SECONDS, SweepReport, sweep

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


def sweep_later(stack: Stack, admission: type[Admission] = Admission, **overrides: str) -> SweepReport:
    svc = services(stack, **overrides)
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


def test_projects_whose_looks_fail_do_not_starve_a_healthy_one(stack: Stack, standin) -> None:
    failing = [running(stack, f"failing{n}.mp4") for n in range(3)]  # the oldest: looked at first
    healthy = running(stack, "healthy.mp4")
    ended(stack, standin, healthy)
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 500, "times": 3})
    assert sweep_later(stack, SWEEP_MAX_CALLS="3").errors == 3  # every look of the run refused

    report = sweep_later(stack, SWEEP_MAX_CALLS="3")

    assert report.concluded == 1 and record(stack, healthy).state == states.CLIPS_READY
    assert all(record(stack, r).checks == 1 and record(stack, r).next_check > time.time() + LATER for r in failing)


def test_a_look_the_rate_limit_refused_ends_the_runs_looks_and_puts_nobody_off(stack: Stack, standin) -> None:
    first = running(stack, "first.mp4")
    running(stack, "second.mp4")
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 429})
    before = record(stack, first)

    report = sweep_later(stack)

    assert report.errors == 1 and report.checked == 1 and standin.calls("project-get") == 1
    after = record(stack, first)
    assert (after.checks, after.next_check) == (before.checks, before.next_check)  # the key's trouble, not its


def test_no_look_starts_once_the_runs_time_for_looks_is_spent(stack: Stack, standin) -> None:
    running(stack, "talk.mp4")
    svc = services(stack)
    svc.wall = lambda: time.time() + LATER
    readings = iter([0.0])  # the run's start; every later reading is LOOKS_SECONDS into it
    svc.clock = lambda: next(readings, LOOKS_SECONDS)

    report = sweep(svc)

    assert report.open == 1 and report.checked == 0 and standin.calls("project-get") == 0


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
