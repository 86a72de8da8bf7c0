"""The probe's ranged reader over a file (the same calls a range request makes), and the credit
estimate of a duration: pure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opus_pipeline.domain.media_probe import WINDOW, credits_estimate

# --- credits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "credits"), [(0, 10), (59, 10), (600, 10), (601, 11), (36000, 600)])
def test_credits_are_one_per_started_minute_and_at_least_ten(seconds: float, credits: int) -> None:
    assert credits_estimate(seconds) == credits


def test_credits_of_a_negative_duration_are_refused() -> None:
    with pytest.raises(ValueError):
        credits_estimate(-1)


# --- the ranged reader --------------------------------------------------------------------------------


@pytest.fixture
def pattern(tmp_path: Path) -> Path:
    path = tmp_path / "pattern.bin"
    path.write_bytes(bytes(range(256)) * 1024)  # 256 KiB: four windows
    return path


def test_reader_returns_the_files_bytes_wherever_it_reads(reader, pattern: Path) -> None:
    data = pattern.read_bytes()
    probe = reader(pattern)
    for offset, length in [(0, 10), (WINDOW - 5, 10), (100_000, 70_000), (len(data) - 3, 10), (5, 1)]:
        probe.seek(offset)
        assert probe.read(length) == data[offset : offset + length]


def test_reader_serves_many_small_reads_from_one_request(reader, pattern: Path) -> None:
    probe = reader(pattern)
    for offset in range(0, 60_000, 600):
        probe.seek(offset)
        probe.read(8)
    assert (probe.requests, probe.bytes_read) == (1, WINDOW)


def test_reader_near_the_end_fetches_the_window_that_ends_there(reader, pattern: Path) -> None:
    probe = reader(pattern)
    probe.seek(-16, os.SEEK_END)
    probe.read(16)
    probe.seek(-5000, os.SEEK_END)
    probe.read(100)
    assert (probe.requests, probe.bytes_read) == (1, WINDOW)


def test_reader_fetches_a_read_larger_than_a_window_in_one_request(reader, pattern: Path) -> None:
    probe = reader(pattern)
    assert len(probe.read(3 * WINDOW)) == 3 * WINDOW
    assert probe.requests == 1


def test_reader_at_the_end_returns_nothing(reader, pattern: Path) -> None:
    probe = reader(pattern)
    probe.seek(0, os.SEEK_END)
    assert probe.read(10) == b""
    assert probe.requests == 0
