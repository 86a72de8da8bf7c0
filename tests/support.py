"""Helpers the test modules share: run the use cases in-process, read what they left behind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opus_local.videos import unique_video
from opus_pipeline import runtime
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.errors import TransientError
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.usecases.create_project import handle_clip_request
from opus_pipeline.usecases.ingest import handle_finalized

from conftest import API_KEY, CHUNK, Stack

CAP_BODY = {"code": "API_MONTHLY_CAP_REACHED", "reset_at": "2026-12-01T00:00:00Z", "upgrade_url": "https://x"}
ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions" / "main.py"


video = unique_video  # a real MP4 of a size, unique: what every test that uploads a video uploads


def services(stack: Stack, **overrides: str) -> runtime.Services:
    svc = runtime.build({**stack.env, **overrides})
    svc.sleep = lambda seconds: None  # backoff is unit-tested; here it would only slow the suite
    return svc


def ingest(stack: Stack, resource: dict, **overrides: str) -> str:
    return handle_finalized(storage_object(resource), services(stack, **overrides))


def create(stack: Stack, request: ClipRequest, **overrides: str) -> str:
    return handle_clip_request(request, services(stack, **overrides))


def uploaded(stack: Stack, metadata: dict | None = None) -> tuple[dict, ClipRequest]:
    """A video really streamed by ingest, and the clip request it published."""
    resource = stack.put("talk.mp4", video(CHUNK + 1), metadata=metadata)
    assert ingest(stack, resource) == states.QUEUED
    [received] = stack.pull()
    return resource, ClipRequest.decode(received.message.data)


def record(stack: Stack, resource: dict) -> VideoRecord | None:
    stored = Ledger(stack.storage, stack.state_bucket).read(storage_object(resource))
    return stored.record if stored else None


def live_metadata(stack: Stack, name: str) -> dict:
    return stack.storage.bucket(stack.source_bucket).get_blob(name).metadata or {}


def only_upload(standin) -> dict:
    uploads = standin.stats()["uploads"]
    assert len(uploads) == 1, uploads
    return next(iter(uploads.values()))


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def fresh_environment() -> dict[str, str]:
    """This machine's environment without the test session's emulators: the demo starts its own."""
    return {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}


def interrupted_upload(stack: Stack, standin, data: bytes) -> tuple[dict, float, runtime.Services]:
    """Stream ``data`` while every request after the first and every status query answers 503, until
    the attempt's time is up: the object resource, the seconds the attempt took (on its own clock) and
    its services. ``data`` must be longer than the first request (``FIRST_PUT_CHUNKS`` chunks)."""
    standin.inject({"endpoint": "chunk", "kind": "status", "status": 503, "times": 1000, "skip": 1})
    standin.inject({"endpoint": "query", "kind": "status", "status": 503, "times": 1000})
    resource = stack.put("talk.mp4", data)
    svc = services(stack)
    now = [0.0]
    svc.clock = lambda: now[0]
    svc.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    with pytest.raises(TransientError, match="resumes there"):
        handle_finalized(storage_object(resource), svc)
    return resource, now[0], svc


SIGNED = "https://storage.googleapis.com/b/o.mp4?X-Goog-Credential=acct%2F20261201&X-Goog-Signature=5f1e2d3c4b5a"


def assert_no_secret(*texts: str) -> None:
    """No API key and no URL signature in any of ``texts``."""
    for text in texts:
        assert API_KEY not in text and "X-Goog-Signature" not in text and "5f1e2d3c4b5a" not in text
