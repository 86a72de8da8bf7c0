"""The deployed entry points, run by functions-framework in their own processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import requests
from cloudevents.conversion import to_binary

from opus_local import emulators
from opus_local.relay import finalized_event

from conftest import API_KEY, CHUNK, Stack, md5_hex
from support import FUNCTIONS, only_upload, video


def deliver(function: emulators.Process, resource: dict, timeout: float = 60) -> int:
    headers, body = to_binary(finalized_event(resource))
    response = requests.post(f"http://127.0.0.1:{function.port}/", headers=headers, data=body, timeout=timeout)
    return response.status_code


def start_ingest(stack: Stack, tmp_path: Path, **overrides: str) -> emulators.Process:
    env = {
        **stack.env,
        "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
        "PUBSUB_EMULATOR_HOST": os.environ["PUBSUB_EMULATOR_HOST"],
        **overrides,
    }
    return emulators.start_function("on_video_uploaded", FUNCTIONS, env, tmp_path / "ingest.log")


def test_function_acknowledges_a_streamed_video(stack: Stack, standin, tmp_path: Path) -> None:
    data = video(2 * CHUNK + 1)
    resource = stack.put("talk.mp4", data)
    function = start_ingest(stack, tmp_path)
    try:
        assert deliver(function, resource) == 200
    finally:
        function.stop()
    assert next(iter(standin.stats()["uploads"].values()))["md5"] == md5_hex(data)
    assert len(stack.pull()) == 1
    log = (tmp_path / "ingest.log").read_text()
    assert API_KEY not in log and "/session/" not in log
    assert all(json.loads(line)["severity"] for line in log.splitlines() if line.startswith("{"))


def test_killed_mid_stream_then_redelivered_resumes_at_the_committed_offset(
    stack: Stack, standin, tmp_path: Path
) -> None:
    size = 16 * CHUNK
    data = video(size)
    resource = stack.put("talk.mp4", data)
    # Each request is answered 2 s after its body arrived: the process is killed while the upload
    # waits for its first request's answer, however fast the machine streams.
    standin.model_link(2.0, None)
    first = start_ingest(stack, tmp_path, LEASE_SECONDS="3")
    threading.Thread(target=lambda: _ignore_errors(deliver, first, resource), daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (standin.stats()["uploads"] and only_upload(standin)["committed"]):
        time.sleep(0.05)
    os.killpg(first.popen.pid, signal.SIGKILL)
    first.popen.wait()
    standin.model_link(None, None)
    killed_at = only_upload(standin)["committed"]

    second = start_ingest(stack, tmp_path, LEASE_SECONDS="3")
    try:
        assert deliver(second, resource) == 500  # the dead invocation's lease is still live: retry later
        sent = len(only_upload(standin)["puts"])  # the requests of the killed invocation
        time.sleep(3.5)
        assert deliver(second, resource) == 200
    finally:
        second.stop()

    stats = standin.stats()
    upload = next(iter(stats["uploads"].values()))
    assert upload["md5"] == md5_hex(data)
    assert stats["calls"]["upload-links"] == 1 and stats["calls"]["start"] == 1
    assert upload["puts"][sent][0] == killed_at  # the redelivery went on from the byte OpusClip confirmed
    killed_requests = upload["puts"][:sent]
    assert stats["bytesReceived"] - size <= max(last - first + 1 for first, last in killed_requests)  # ≤ one request
    assert len(stack.pull()) == 1


def _ignore_errors(func, *args) -> None:
    with contextlib.suppress(requests.RequestException):  # the process is killed mid-request
        func(*args)


def test_a_bad_configuration_is_named_in_one_error_line(stack: Stack, standin, tmp_path: Path) -> None:
    resource = stack.put("talk.mp4", video())
    function = start_ingest(stack, tmp_path, UPLOAD_CHUNK_SIZE="1000")
    try:
        assert deliver(function, resource) == 500  # retried once the configuration is fixed
    finally:
        function.stop()
    errors = [json.loads(x) for x in (tmp_path / "ingest.log").read_text().splitlines() if '"ERROR"' in x]
    assert errors and "UPLOAD_CHUNK_SIZE" in errors[0]["message"] and errors[0]["event"] == "bad_configuration"
    assert standin.stats()["calls"] == {}
