"""The duration probe on real ffmpeg videos, read through ``RangedReader`` (pure: no server but the last test).

ffprobe is the reference; the byte counts show that a 1 GiB upload costs two small range requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud import storage

from opus_local import videos
from opus_pipeline.domain.media_probe import RangedReader, probe_duration
from opus_pipeline.errors import UnreadableVideoError

GiB = 1024**3
MiB = 1024**2


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def make(video_dir: Path) -> Callable[..., Path]:
    """A cached ``videos.make_video``: each distinct video is encoded once per session."""

    def make(name: str, **options) -> Path:
        return videos.make_video(video_dir / name, **options)

    return make


KINDS = {
    "mp4-moov-last": dict(container="mp4"),
    "mp4-faststart": dict(container="mp4", faststart=True),
    "mov": dict(container="mov"),
    "webm-vp8-opus": dict(container="webm"),
    "webm-no-audio": dict(container="webm", audio=False),
    "mkv": dict(container="mkv"),
    "mp4-fragmented": dict(container="mp4", fragmented=True, seconds=5.0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_duration_equals_ffprobes(kind: str, make, reader) -> None:
    options = {"seconds": 3.0, **KINDS[kind]}
    path = make(f"{kind}.{options['container']}", **options)
    assert probe_duration(reader(path)) == pytest.approx(videos.ffprobe_duration(path), abs=0.1)


def test_moov_at_end_of_a_1_gib_mp4_is_read_with_at_most_1_mib(make, reader, tmp_path: Path) -> None:
    source = make("mp4-moov-last.mp4", seconds=3.0)
    big = videos.pad_mp4(source, tmp_path / "big.mp4", GiB)
    probe = reader(big)
    seconds = probe_duration(probe, name="big.mp4")
    print(f"1 GiB moov-at-end MP4: {probe.bytes_read:,} bytes in {probe.requests} requests")
    assert seconds == pytest.approx(videos.ffprobe_duration(big), abs=0.1)
    assert probe.bytes_read <= MiB
    assert probe.requests == 2


def test_mdat_over_4_gib_with_a_64_bit_size_is_skipped(make, reader, tmp_path: Path) -> None:
    big = videos.pad_mp4(make("mp4-moov-last.mp4", seconds=3.0), tmp_path / "huge.mp4", 5 * GiB)
    assert probe_duration(reader(big)) == pytest.approx(3.0, abs=0.1)


def test_mvhd_version_1_duration_is_read(make, reader) -> None:
    path = make("mvhd-v1.mp4", seconds=3.0, movie_timescale=2_000_000_000)
    data = path.read_bytes()
    assert data[data.index(b"mvhd") + 4] == 1, "ffmpeg was expected to write a 64-bit mvhd"
    assert probe_duration(reader(path)) == pytest.approx(videos.ffprobe_duration(path), abs=0.1)


def test_webm_info_after_the_clusters_is_found_through_the_seekhead(make, reader, tmp_path: Path) -> None:
    path = videos.webm_info_at_end(make("webm-vp8-opus.webm", seconds=3.0, container="webm"), tmp_path / "late.webm")
    probe = reader(path, window=4096)
    assert probe_duration(probe) == pytest.approx(videos.ffprobe_duration(path), abs=0.1)
    assert probe.requests == 2, "the head, then the tail where Info is: no walk through the clusters"


def test_fragmented_mp4_without_mfra_is_walked(make, reader, tmp_path: Path) -> None:
    source = make("mp4-fragmented.mp4", seconds=5.0, fragmented=True)
    path = videos.drop_mp4_index(source, tmp_path / "no-index.mp4")
    assert probe_duration(reader(path)) == pytest.approx(videos.ffprobe_duration(path), abs=0.1)


def test_fragmented_mp4_mehd_is_taken_as_the_duration(make, reader, tmp_path: Path) -> None:
    source = make("mp4-fragmented.mp4", seconds=5.0, fragmented=True)
    path = videos.add_mp4_mehd(source, tmp_path / "mehd.mp4", seconds=42.0)
    assert probe_duration(reader(path)) == pytest.approx(42.0)


def test_plain_binary_file_can_be_probed(make) -> None:
    path = make("webm-vp8-opus.webm", seconds=3.0, container="webm")
    with open(path, "rb") as handle:
        assert probe_duration(handle) == pytest.approx(videos.ffprobe_duration(path), abs=0.1)


# --- unreadable uploads -----------------------------------------------------------------------------


def unreadable(reader: RangedReader, name: str) -> str:
    with pytest.raises(UnreadableVideoError) as caught:
        probe_duration(reader, name=name)
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    return message


def test_truncated_mp4_with_moov_at_end_is_unreadable(make, reader, tmp_path: Path) -> None:
    source = make("mp4-moov-last.mp4", seconds=3.0)
    cut = videos.truncate(source, tmp_path / "cut.mp4", source.stat().st_size // 2)
    assert "truncated" in unreadable(reader(cut), "cut.mp4")


def test_truncated_faststart_mp4_is_unreadable(make, reader, tmp_path: Path) -> None:
    source = make("mp4-faststart.mp4", seconds=3.0, faststart=True)
    cut = videos.truncate(source, tmp_path / "cut.mp4", source.stat().st_size - 1000)
    assert "truncated" in unreadable(reader(cut), "cut.mp4")


def test_mp4_cut_inside_its_header_is_unreadable(make, reader, tmp_path: Path) -> None:
    cut = videos.truncate(make("mp4-faststart.mp4", seconds=3.0, faststart=True), tmp_path / "cut.mp4", 100)
    assert "truncated" in unreadable(reader(cut), "cut.mp4")


def test_truncated_webm_is_unreadable(make, reader, tmp_path: Path) -> None:
    source = make("webm-vp8-opus.webm", seconds=3.0, container="webm")
    cut = videos.truncate(source, tmp_path / "cut.webm", source.stat().st_size // 2)
    assert "truncated" in unreadable(reader(cut), "cut.webm")


def test_mp4_with_zero_duration_is_unreadable(make, reader, tmp_path: Path) -> None:
    path = videos.zero_mp4_duration(make("mp4-moov-last.mp4", seconds=3.0), tmp_path / "zero.mp4")
    assert "no duration" in unreadable(reader(path), "zero.mp4")


def test_webm_without_duration_is_unreadable(make, reader, tmp_path: Path) -> None:
    source = make("webm-vp8-opus.webm", seconds=3.0, container="webm")
    path = videos.strip_webm_duration(source, tmp_path / "live.webm")
    assert "no duration" in unreadable(reader(path), "live.webm")


def test_image_is_not_a_video(reader, video_dir: Path) -> None:
    path = videos.make_not_a_video(video_dir / "frame.png")
    assert "not an MP4, MOV, WebM or Matroska video (it starts like a PNG image)" in unreadable(reader(path), "a.png")


def test_text_file_is_not_a_video(reader, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("ffmpeg -i in.mov out.mp4\n" * 10)
    assert "it starts like text" in unreadable(reader(path), "notes.txt")


def test_empty_file_is_unreadable(reader, tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert "empty" in unreadable(reader(path), "empty.mp4")


# --- over HTTP ----------------------------------------------------------------------------------------


def test_probe_over_range_requests_to_fake_gcs(gcs: str, make, tmp_path: Path) -> None:
    """The composition the function uses: ``blob.download_as_bytes(start=, end=)`` as ``read_range``."""
    path = videos.pad_mp4(make("mp4-moov-last.mp4", seconds=3.0), tmp_path / "five.mp4", 5 * MiB)
    client = storage.Client()
    bucket = client.create_bucket(f"probe-{os.getpid()}-{tmp_path.name[-8:]}".lower().replace("_", "-"))
    bucket.blob("uploads/five.mp4").upload_from_filename(str(path), content_type="video/mp4")
    blob = bucket.get_blob("uploads/five.mp4")
    probe = RangedReader(lambda start, end: blob.download_as_bytes(start=start, end=end), blob.size)
    seconds = probe_duration(probe, name=blob.name)
    print(f"5 MiB moov-at-end MP4 over fake-gcs-server: {probe.bytes_read:,} bytes in {probe.requests} requests")
    assert seconds == pytest.approx(videos.ffprobe_duration(path), abs=0.1)
    assert probe.requests == 2
