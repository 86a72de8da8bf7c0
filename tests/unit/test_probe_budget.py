"""The probe trusts nothing: crafted headers cost a bounded number of reads and end ``unreadable-video``.

Pure: every file here is built byte by byte in the test, and read through a ``RangedReader`` whose
``read_range`` counts the range requests a Cloud Storage object would have answered.
"""

from __future__ import annotations

import io
import math
import random
import struct

import pytest

from opus_local.videos import mp4_box as box
from opus_local.videos import mp4_full_box as full
from opus_pipeline.domain.media_probe import (
    MAX_PROBE_BOXES,
    MAX_PROBE_BYTES,
    MAX_PROBE_REQUESTS,
    RangedReader,
    probe_duration,
)
from opus_pipeline.errors import UnreadableVideoError

TRACK = 1
FTYP = box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2")
MDAT = box(b"mdat", bytes(64))


class CountingRange:
    """``read_range`` over bytes in memory, counting what a range request would have cost."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests = 0
        self.bytes = 0

    def __call__(self, start: int, end: int) -> bytes:
        self.requests += 1
        chunk = self.data[start : end + 1]
        self.bytes += len(chunk)
        return chunk


def probe(data: bytes) -> tuple[float | UnreadableVideoError, CountingRange]:
    """The probe's answer (a duration or the refusal) and what it read."""
    counted = CountingRange(data)
    try:
        return probe_duration(RangedReader(counted, len(data)), name="crafted.mp4"), counted
    except UnreadableVideoError as refusal:
        return refusal, counted


def refusal(data: bytes) -> str:
    answer, counted = probe(data)
    assert isinstance(answer, UnreadableVideoError), f"expected a refusal, got {answer!r}"
    assert answer.reason == "unreadable-video"
    assert str(answer).startswith("crafted.mp4: ")
    assert counted.requests <= MAX_PROBE_REQUESTS and counted.bytes <= MAX_PROBE_BYTES
    return str(answer)


# --- building MP4s ---------------------------------------------------------------------------------


def mvhd(timescale: int, duration: int) -> bytes:
    return full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, duration), bytes(80))


def mdhd(timescale: int, duration: int) -> bytes:
    return full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, timescale, duration), bytes(4))


def stts(*runs: tuple[int, int]) -> bytes:
    return full(b"stts", 0, 0, struct.pack(">I", len(runs)), *(struct.pack(">II", *run) for run in runs))


def trak(timescale: int, duration: int, *tables: bytes, track_id: int = TRACK) -> bytes:
    tkhd = full(b"tkhd", 0, 0, struct.pack(">III", 0, 0, track_id), bytes(68))
    return box(b"trak", tkhd, box(b"mdia", mdhd(timescale, duration), box(b"minf", box(b"stbl", *tables))))


def movie(*moov: bytes) -> bytes:
    return FTYP + box(b"moov", *moov) + MDAT


def fragment(base: int | None, *runs: bytes, tfhd: bytes | None = None) -> bytes:
    """A ``moof`` of one track fragment; ``base`` is its ``tfdt`` (None: no tfdt)."""
    tfhd = tfhd if tfhd is not None else full(b"tfhd", 0, 0, struct.pack(">I", TRACK))
    tfdt = full(b"tfdt", 1, 0, struct.pack(">Q", base)) if base is not None else b""
    return box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", 1)), box(b"traf", tfhd, tfdt, *runs))


def trun(*durations: int) -> bytes:
    """A run that lists each sample's duration (flag 0x100)."""
    return full(b"trun", 0, 0x100, struct.pack(">I", len(durations)), *(struct.pack(">I", d) for d in durations))


def fragmented(*fragments: bytes, mehd: int | None = None, indexed: bool = False, default: int = 1000) -> bytes:
    """A fragmented MP4 (timescale 1000 throughout), its fragments each followed by an ``mdat``; with
    ``indexed``, an ``mfra`` at the end points at the last one."""
    mvex = box(
        b"mvex",
        full(b"mehd", 0, 0, struct.pack(">I", mehd)) if mehd is not None else b"",
        full(b"trex", 0, 0, struct.pack(">IIIII", TRACK, 1, default, 0, 0)),
    )
    data = FTYP + box(b"moov", mvhd(1000, 0), trak(1000, 0), mvex)
    last = 0
    for moof in fragments:
        last = len(data)
        data += moof + MDAT
    if indexed:
        entry = struct.pack(">QQBBB", 0, last, 1, 1, 1)
        tfra = full(b"tfra", 1, 0, struct.pack(">III", TRACK, 0, 1), entry)
        size = 8 + len(tfra) + 16
        data += box(b"mfra", tfra, full(b"mfro", 0, 0, struct.pack(">I", size)))
    return data


def plain_movie(seconds: int = 60) -> bytes:
    return movie(mvhd(1000, seconds * 1000), trak(1000, seconds * 1000, stts((seconds * 30, 33))))


# --- the budget ------------------------------------------------------------------------------------


def test_a_real_shaped_header_is_read_in_one_request() -> None:
    seconds, counted = probe(plain_movie(60))
    assert seconds == pytest.approx(60.0, abs=0.1)
    assert counted.requests == 1


def test_a_moov_flooded_with_8_byte_boxes_is_refused_after_a_few_reads() -> None:
    flood = box(b"free") * (64 * 1024 * 1024 // 8)  # the 64 MiB that cost ~1,000 requests and 18 s
    answer, counted = probe(movie(flood, mvhd(1000, 60_000)))
    assert isinstance(answer, UnreadableVideoError)
    assert f"more than {MAX_PROBE_BOXES:,} boxes" in str(answer)
    assert counted.requests <= 2


def test_a_flood_after_the_mvhd_is_refused_too() -> None:
    assert "boxes or elements" in refusal(movie(mvhd(1000, 60_000), box(b"free") * 100_000))


def test_boxes_a_window_apart_stop_at_the_request_budget() -> None:
    spread = box(b"free", bytes(100 * 1024)) * (MAX_PROBE_REQUESTS + 20)  # each header costs a request
    message = refusal(movie(mvhd(1000, 60_000), spread))
    assert f"more than {MAX_PROBE_REQUESTS} range requests" in message


def test_boxes_nested_past_the_budget_are_refused() -> None:
    tracks = [trak(1000, 1000, stts((1, 1000)), *(box(b"free") for _ in range(5))) for _ in range(500)]
    assert "boxes or elements" in refusal(movie(mvhd(1000, 1000), *tracks))


def test_a_sample_table_larger_than_the_byte_budget_is_not_fetched() -> None:
    runs = MAX_PROBE_BYTES // 8 + 1
    huge = full(b"stts", 0, 0, struct.pack(">I", runs), struct.pack(">II", 1, 1) * runs)
    assert "range requests or" in refusal(movie(mvhd(1000, 1000), trak(1000, 1000, huge)))


def test_a_plain_file_object_gets_the_same_budget() -> None:
    flood = movie(mvhd(1000, 60_000), box(b"free") * 100_000)
    with pytest.raises(UnreadableVideoError, match="boxes or elements"):
        probe_duration(io.BytesIO(flood))


# --- parse errors are unreadable-video --------------------------------------------------------------


def test_a_12_byte_tfhd_is_unreadable() -> None:
    short_tfhd = full(b"tfhd", 0, 0)  # version and flags, no track id
    assert "too short for its fields" in refusal(fragmented(fragment(0, trun(1000), tfhd=short_tfhd)))


def test_a_tfhd_whose_flags_promise_a_default_duration_it_lacks_is_unreadable() -> None:
    lying = full(b"tfhd", 0, 0x08, struct.pack(">I", TRACK))
    assert "too short for its fields" in refusal(fragmented(fragment(0, trun(1000), tfhd=lying)))


def test_an_empty_trun_is_unreadable() -> None:
    assert "'trun' box" in refusal(fragmented(fragment(0, box(b"trun"))))


def test_a_trun_counting_more_samples_than_it_holds_is_unreadable() -> None:
    lying = full(b"trun", 0, 0x100, struct.pack(">I", 0xFFFFFFFF), struct.pack(">I", 1000))
    assert "shorter than its sample count" in refusal(fragmented(fragment(0, lying)))


def test_an_stts_counting_more_runs_than_it_holds_is_unreadable() -> None:
    lying = full(b"stts", 0, 0, struct.pack(">I", 1 << 30), struct.pack(">II", 1, 1))
    assert "no room" in refusal(movie(mvhd(1000, 1000), trak(1000, 1000, lying)))


def test_a_box_smaller_than_its_header_is_unreadable() -> None:
    assert "impossible size" in refusal(movie(mvhd(1000, 1000), struct.pack(">I4s", 4, b"free")))


def test_a_box_running_past_its_parent_is_unreadable() -> None:
    overrun = struct.pack(">I4s", 4096, b"free")
    assert "runs past the 'moov' box" in refusal(movie(mvhd(1000, 1000), overrun))


def test_an_mvhd_too_short_for_its_duration_is_unreadable() -> None:
    assert "too short" in refusal(movie(full(b"mvhd", 0, 0, bytes(8))))


def test_a_track_without_a_timescale_is_unreadable() -> None:
    assert "no media timescale" in refusal(movie(mvhd(1000, 1000), trak(0, 0, stts((600, 1)))))


def test_a_webm_timescale_too_long_to_be_a_number_is_unreadable() -> None:
    assert "TimecodeScale" in refusal(webm(timecode_scale=b"\xff" * 16))


def test_a_webm_flooded_with_void_elements_is_refused() -> None:
    assert "boxes or elements" in refusal(webm(seekhead=ebml(0x114D9B74, b"\xec\x80" * 5000)))


@pytest.mark.parametrize("kind", ["mp4", "fragmented", "webm"])
def test_no_damage_ends_other_than_a_duration_or_unreadable_video(kind: str) -> None:
    """Random damage to valid files (bytes overwritten, sizes rewritten, cuts): the answer is a finite
    duration or ``unreadable-video`` within the budget — never another exception, which would be a 500
    that Eventarc redelivers for a day."""
    valid = {
        "mp4": plain_movie(600),
        "fragmented": fragmented(fragment(0, trun(500, 500)), fragment(1000, trun(1000)), indexed=True),
        "webm": webm(),
    }[kind]
    assert isinstance(probe(valid)[0], float)
    draw = random.Random(kind)
    for _ in range(1500):
        data = bytearray(valid)
        for _ in range(draw.randint(1, 3)):
            at = draw.randrange(len(data))
            value = draw.choice([0, 1, 7, 8, 0xFF, 0xFFFFFFFF, draw.getrandbits(32)])
            if draw.random() < 0.5:
                data[at] = value & 0xFF
            else:
                data[at : at + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
        if draw.random() < 0.2:
            del data[draw.randrange(1, len(data)) :]
        answer, counted = probe(bytes(data))
        assert isinstance(answer, UnreadableVideoError) or (math.isfinite(answer) and answer > 0), bytes(data).hex()
        assert counted.requests <= MAX_PROBE_REQUESTS and counted.bytes <= MAX_PROBE_BYTES


# --- the duration is cross-checked -----------------------------------------------------------------


def test_an_mvhd_claiming_1_s_over_a_600_s_sample_table_is_600_s() -> None:
    crafted = movie(mvhd(1000, 1000), trak(30, 30, stts((18_000, 1))))
    assert probe(crafted)[0] == pytest.approx(600.0)


def test_a_track_whose_mdhd_is_longer_than_mvhd_sets_the_estimate() -> None:
    assert probe(movie(mvhd(1000, 1000), trak(1000, 90_000, stts((1, 1000)))))[0] == pytest.approx(90.0)


def test_a_sample_table_shorter_than_mvhd_leaves_mvhd_as_the_estimate() -> None:
    assert probe(movie(mvhd(1000, 120_000), trak(1000, 1000, stts((1, 1000)))))[0] == pytest.approx(120.0)


def test_an_mehd_claiming_1_s_over_fragments_ending_at_600_s_is_600_s() -> None:
    crafted = fragmented(fragment(0, trun(1000)), fragment(599_000, trun(1000)), mehd=1000, indexed=True)
    assert probe(crafted)[0] == pytest.approx(600.0)


def test_fragments_without_their_own_durations_use_the_tfhd_default() -> None:
    tfhd = full(b"tfhd", 0, 0x08, struct.pack(">II", TRACK, 2000))
    plain_run = full(b"trun", 0, 0, struct.pack(">I", 300))  # 300 samples, durations not listed
    assert probe(fragmented(fragment(0, plain_run, tfhd=tfhd)))[0] == pytest.approx(600.0)


# --- building WebMs --------------------------------------------------------------------------------


def ebml(element_id: int, body: bytes) -> bytes:
    """An EBML element with an 8-byte size."""
    element = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return element + b"\x01" + len(body).to_bytes(7, "big") + body


def webm(*, timecode_scale: bytes = (1_000_000).to_bytes(3, "big"), seekhead: bytes = b"") -> bytes:
    header = ebml(0x1A45DFA3, ebml(0x4282, b"webm"))
    info = ebml(0x1549A966, ebml(0x2AD7B1, timecode_scale) + ebml(0x4489, struct.pack(">d", 3000.0)))
    return header + ebml(0x18538067, seekhead + info)
