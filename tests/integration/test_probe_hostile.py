"""A crafted video in the source bucket ends ``failed`` as ``unreadable-video`` on its first delivery,
through range reads of the emulated bucket, and costs OpusClip nothing."""

from __future__ import annotations

import struct

from opus_local.videos import mp4_box as box
from opus_local.videos import mp4_full_box as full
from opus_pipeline.domain import states

from conftest import Stack
from support import ingest, live_metadata, record


def test_a_moov_flooded_with_tiny_boxes_fails_on_its_first_delivery_without_an_opusclip_call(
    stack: Stack, standin
) -> None:
    mvhd = full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 60_000), bytes(80))
    flood = box(b"free") * (1024 * 1024 // 8)  # 131,072 boxes of 8 bytes, then the header
    crafted = box(b"ftyp", b"isom", bytes(4)) + box(b"moov", flood, mvhd) + box(b"mdat", bytes(64))
    resource = stack.put("crafted.mp4", crafted)

    assert ingest(stack, resource) == states.FAILED  # returned, not raised: no redelivery

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == "unreadable-video"
    assert "boxes or elements" in rec.error and "crafted.mp4" in rec.error
    assert standin.stats()["calls"] == {}
    assert stack.pull() == []
    metadata = live_metadata(stack, "crafted.mp4")
    assert metadata["opus-status"] == "failed" and metadata["opus-error"] == rec.error
    assert ingest(stack, resource) == states.FAILED  # a duplicate event changes nothing
    assert standin.stats()["calls"] == {}
