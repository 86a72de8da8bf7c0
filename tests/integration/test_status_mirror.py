"""The status on the object: each object's statuses land in order, the latest winning, none waiting for another's."""

from __future__ import annotations

from opus_pipeline.domain.events import storage_object
from opus_pipeline.gcs.status_mirror import StatusMirror

from conftest import Stack
from support import live_metadata


def test_statuses_shown_in_a_row_end_with_the_last_and_keep_every_key(stack: Stack) -> None:
    obj = storage_object(stack.put("talk.mp4", b"x"))
    mirror = StatusMirror(stack.storage)

    mirror.show(obj, "received", extra={"opus-duration": "12.0"}, background=True)
    mirror.show(obj, "uploading", upload_id="up_1", background=True)
    mirror.show(obj, "queued", background=True)
    mirror.wait(obj)

    metadata = live_metadata(stack, "talk.mp4")
    shown = (metadata["opus-status"], metadata["opus-duration"], metadata["opus-upload-id"])
    assert shown == ("queued", "12.0", "up_1")


def test_a_status_shown_without_background_is_on_the_object_when_show_returns(stack: Stack) -> None:
    obj = storage_object(stack.put("talk.mp4", b"x"))
    mirror = StatusMirror(stack.storage)
    mirror.show(obj, "received", background=True)

    mirror.show(obj, "failed", error="the object is empty")

    assert live_metadata(stack, "talk.mp4")["opus-status"] == "failed"


def test_waiting_for_one_object_does_not_wait_for_another(stack: Stack) -> None:
    first, second = (storage_object(stack.put(name, b"x")) for name in ("a.mp4", "b.mp4"))
    mirror = StatusMirror(stack.storage)
    mirror.show(first, "uploading", background=True)
    mirror.show(second, "queued", background=True)

    mirror.wait(second)

    assert live_metadata(stack, "b.mp4")["opus-status"] == "queued"
    mirror.wait()
    assert live_metadata(stack, "a.mp4")["opus-status"] == "uploading"
