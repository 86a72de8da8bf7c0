"""Real test videos, made by ffmpeg once per session, and the edits that tests of broken uploads need.

Why real files: a duration parser tested on bytes it was written against proves little; these are what
ffmpeg (the tool most uploads pass through) writes, and ``ffprobe_duration`` is the reference a probe is
compared with. Encodes are tiny (160x120, ultrafast) so a test session makes a dozen in a few seconds.

``pad_mp4`` makes "a 1 GiB MP4" in well under a second: it grows the last ``mdat`` at its end with a
sparse hole, so no sample offset (``stco``/``co64``) moves and a ``moov`` that was last stays last.
The other edits (``webm_info_at_end``, ``strip_webm_duration``, ``zero_mp4_duration``, ``add_mp4_mehd``,
``drop_mp4_index``, ``truncate``) read the whole source into memory: they are for these small files.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

CONTAINERS = ("mp4", "mov", "webm", "mkv")
_FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska"}
_COPY_CHUNK = 1024 * 1024


def make_video(
    path: str | os.PathLike[str],
    *,
    seconds: float = 3.0,
    container: str = "mp4",
    faststart: bool = False,
    fragmented: bool = False,
    audio: bool = True,
    size_hint: int | None = None,
    movie_timescale: int | None = None,
) -> Path:
    """A real video of ``seconds`` at ``path``; kept if it already exists (so a session makes each once).

    mp4/mov/mkv are H.264 + AAC, webm is VP8 + Opus. MP4/MOV put ``moov`` last, as ffmpeg does by
    default, unless ``faststart``. ``fragmented`` (mp4) writes ``moof`` fragments with ``mfra`` at
    the end and moof-relative data offsets (``default_base_moof``, as most muxers of fragmented MP4 do).
    ``size_hint`` asks for about that many bytes through a constant bitrate (the WebM test pattern is
    noised so VP8 does not undershoot); use ``pad_mp4`` for an exact size. ``movie_timescale`` above
    about 5e8 makes ffmpeg write a version-1 (64-bit) ``mvhd``.
    """
    target = Path(path)
    if target.exists():
        return target
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {CONTAINERS}, not {container!r}")
    if (faststart or fragmented or movie_timescale) and container not in ("mp4", "mov"):
        raise ValueError("faststart, fragmented and movie_timescale are MP4/MOV options")
    video = f"testsrc=size=160x120:rate=25:duration={seconds}"
    if size_hint and container == "webm":
        video += ",noise=alls=60:allf=t"
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i", video]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if container == "webm":
        args += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
        args += ["-c:a", "libopus", "-b:a", "48k"] if audio else []
    else:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25"]
        args += ["-c:a", "aac", "-b:a", "64k"] if audio else []
    if size_hint:
        rate = max(50_000, int(size_hint * 8 / seconds) - (64_000 if audio else 0))
        args += ["-b:v", str(rate), "-minrate", str(rate), "-maxrate", str(rate), "-bufsize", str(rate)]
        args += ["-x264-params", "nal-hrd=cbr"] if container != "webm" else []
    flags = ("+faststart" if faststart else "") + ("+frag_keyframe+empty_moov+default_base_moof" if fragmented else "")
    args += ["-movflags", flags] if flags else []
    args += ["-movie_timescale", str(movie_timescale)] if movie_timescale else []
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    subprocess.run([*args, "-f", _FORMATS[container], str(partial)], check=True)
    partial.replace(target)
    return target


def make_not_a_video(path: str | os.PathLike[str]) -> Path:
    """A PNG image (one ffmpeg test-pattern frame): the kind of wrong file people do upload."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
        subprocess.run([*args, "-i", "testsrc=size=160x120", "-frames:v", "1", "-f", "image2", str(target)], check=True)
    return target


def ffprobe_duration(path: str | os.PathLike[str]) -> float:
    """ffprobe's ``format=duration``: the reference the probe is compared with."""
    args = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]
    return float(subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip())


def truncate(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep_bytes: int) -> Path:
    """The first ``keep_bytes`` of ``src``: an upload cut short."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        _copy(source, target, 0, keep_bytes)
    return Path(dst)


# --- MP4 ------------------------------------------------------------------------------------------


def _top_level_boxes(path: str | os.PathLike[str]) -> list[tuple[bytes, int, int, int]]:
    """(type, start, header length, size) of each top-level box, reading only their headers."""
    boxes = []
    size_of_file = os.path.getsize(path)
    with open(path, "rb") as source:
        position = 0
        while position + 8 <= size_of_file:
            source.seek(position)
            head = source.read(16)
            size, kind = struct.unpack(">I4s", head[:8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", head[8:16])[0], 16
            elif size == 0:
                size = size_of_file - position
            boxes.append((kind, position, header, size))
            position += size
    return boxes


def _grown_mdat(src: str | os.PathLike[str], grow: int) -> tuple[list[tuple[bytes, int, int, int]], int, int, bytes]:
    """For growing the last ``mdat`` of ``src`` by ``grow`` bytes: its boxes, the mdat's index, where
    its new header starts and the header. Past 4 GiB the ``mdat`` needs a 64-bit size: ffmpeg leaves an
    8-byte ``free`` box before ``mdat`` for exactly that, and it is taken over."""
    boxes = _top_level_boxes(src)
    index = max((i for i, box in enumerate(boxes) if box[0] == b"mdat"), default=None)
    if index is None:
        raise ValueError(f"{src} has no mdat box")
    _, start, header, size = boxes[index]
    new_size = size + grow
    if header == 16:
        return boxes, index, start, struct.pack(">I4sQ", 1, b"mdat", new_size)
    if new_size <= 0xFFFFFFFF:
        return boxes, index, start, struct.pack(">I4s", new_size, b"mdat")
    if index > 0 and boxes[index - 1][0] in (b"free", b"wide") and boxes[index - 1][3] == 8:
        return boxes, index, start - 8, struct.pack(">I4sQ", 1, b"mdat", new_size + 8)
    raise ValueError("growing this mdat past 4 GiB would move its data: no 8-byte free box before it")


def pad_mp4(src: str | os.PathLike[str], dst: str | os.PathLike[str], total_bytes: int) -> Path:
    """A copy of the MP4 ``src`` of exactly ``total_bytes``, still valid, written in pieces.

    The last ``mdat`` grows at its end by a hole of zeros (sparse where the filesystem allows): sample
    offsets point before the hole, so ``stco``/``co64`` stay right, and boxes after ``mdat`` (a
    ``moov`` at the end) stay after it.
    """
    source_size = os.path.getsize(src)
    if total_bytes < source_size:
        raise ValueError(f"cannot pad {source_size:,} bytes down to {total_bytes:,}")
    grow = total_bytes - source_size
    boxes, index, header_start, new_header = _grown_mdat(src, grow)
    _, start, header, size = boxes[index]
    with open(src, "rb") as source, open(dst, "wb") as target:
        _copy(source, target, 0, header_start)
        target.write(new_header)
        _copy(source, target, start + header, size - header)
        target.seek(grow, os.SEEK_CUR)
        _copy(source, target, start + size, source_size - start - size)
        target.truncate(total_bytes)
    return Path(dst)


def zero_mp4_duration(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """``src`` with its ``mvhd`` duration set to 0: a header without a duration."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b"mvhd")
    if at < 0:
        raise ValueError(f"{src} has no mvhd")
    body = at + 4
    if data[body] == 1:
        data[body + 24 : body + 32] = bytes(8)
    else:
        data[body + 16 : body + 20] = bytes(4)
    Path(dst).write_bytes(data)
    return Path(dst)


def mp4_box(kind: bytes, *parts: bytes) -> bytes:
    """An ISO BMFF box of ``kind`` whose body is ``parts`` joined: for tests that craft MP4s byte by byte."""
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def mp4_full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    """A "full box": its body starts with a version byte and 24 bits of flags."""
    return mp4_box(kind, bytes([version]), flags.to_bytes(3, "big"), *parts)


def drop_mp4_index(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """A fragmented MP4 without its ``mfra`` index: what a muxer writing to a pipe may leave."""
    data = Path(src).read_bytes()
    kept = b"".join(data[start : start + size] for kind, start, _, size in _top_level_boxes(src) if kind != b"mfra")
    Path(dst).write_bytes(kept)
    return Path(dst)


def add_mp4_mehd(src: str | os.PathLike[str], dst: str | os.PathLike[str], seconds: float) -> Path:
    """A fragmented MP4 whose ``mvex`` declares ``seconds`` in an ``mehd`` box (ffmpeg writes none).

    The box goes into ``moov``, so everything after it moves by 16 bytes: fine for fragments whose data
    offsets are moof-relative (``make_video(fragmented=True)``), not for ``mfra``, which is dropped.
    """
    data = bytearray(drop_mp4_index(src, dst).read_bytes())
    moov = next((start for kind, start, _, _ in _top_level_boxes(dst) if kind == b"moov"), None)
    mvex = data.find(b"mvex", moov or 0) - 4
    mvhd = data.find(b"mvhd", moov or 0) + 4
    if moov is None or mvex < 0:
        raise ValueError(f"{src} is not a fragmented MP4")
    timescale = struct.unpack(">I", data[mvhd + (20 if data[mvhd] == 1 else 12) :][:4])[0]
    mehd = struct.pack(">I4sII", 16, b"mehd", 0, round(seconds * timescale))
    for box in (moov, mvex):
        struct.pack_into(">I", data, box, struct.unpack_from(">I", data, box)[0] + len(mehd))
    data[mvex + 8 : mvex + 8] = mehd
    Path(dst).write_bytes(data)
    return Path(dst)


# --- WebM -----------------------------------------------------------------------------------------

_SEGMENT, _SEEKHEAD, _SEEK, _INFO, _DURATION, _VOID = 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x4489, 0xEC


def _vint(data: bytes, position: int, keep_marker: bool) -> tuple[int, int]:
    length = 9 - data[position].bit_length()
    value = int.from_bytes(data[position : position + length], "big")
    return (value if keep_marker else value & ((1 << (7 * length)) - 1)), length


def _elements(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(id, start, data start, end) of the EBML elements between ``start`` and ``end``."""
    found = []
    while start < end:
        element_id, id_length = _vint(data, start, True)
        size, size_length = _vint(data, start + id_length, False)
        body = start + id_length + size_length
        found.append((element_id, start, body, body + size))
        start = body + size
    return found


def _void(length: int) -> bytes:
    """An EBML Void element of exactly ``length`` bytes (2 at least)."""
    if length >= 9:
        return bytes([_VOID, 0x01]) + (length - 9).to_bytes(7, "big") + bytes(length - 9)
    if length >= 2:
        return bytes([_VOID, 0x80 | (length - 2)]) + bytes(length - 2)
    raise ValueError("a Void needs 2 bytes")


def _segment(data: bytes) -> tuple[int, int, int]:
    """(start, data start, size length) of the Segment, which must end at the end of the file."""
    header_end = _ebml_header_end(data)
    element_id, id_length = _vint(data, header_end, True)
    size, size_length = _vint(data, header_end + id_length, False)
    body = header_end + id_length + size_length
    if element_id != _SEGMENT or body + size != len(data):
        raise ValueError("expected one Segment of known size that ends the file")
    return header_end, body, size_length


def _ebml_header_end(data: bytes) -> int:
    _, id_length = _vint(data, 0, True)
    size, size_length = _vint(data, id_length, False)
    return id_length + size_length + size


def webm_info_at_end(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """``src`` (an ffmpeg WebM) with its Info element moved to the end of the Segment.

    Info's old place becomes a Void of the same length and the SeekHead's Info entry points to the
    new place (the Void ffmpeg reserves after the SeekHead absorbs its growth), so no Cluster or Cue
    moves: a valid file whose Info can only be found through the SeekHead, after the Clusters and Cues.
    """
    data = Path(src).read_bytes()
    segment_start, segment_body, size_length = _segment(data)
    children = _elements(data, segment_body, len(data))
    ids = [child[0] for child in children]
    if ids[:2] != [_SEEKHEAD, _VOID] or _INFO not in ids:
        raise ValueError("expected ffmpeg's layout: SeekHead, Void, …, Info, …")
    _, seekhead_start, seekhead_body, seekhead_end = children[0]
    void_end = children[1][3]
    info = children[ids.index(_INFO)]
    info_bytes = data[info[1] : info[3]]
    new_info_position = len(data) - segment_body
    entries = b""
    for seek_id, _, seek_body, seek_end in _elements(data, seekhead_body, seekhead_end):
        if seek_id != _SEEK:
            continue
        fields = {field[0]: data[field[2] : field[3]] for field in _elements(data, seek_body, seek_end)}
        position = fields[0x53AC]
        if fields[0x53AB] == _INFO.to_bytes(4, "big"):
            position = new_info_position.to_bytes(max(1, (new_info_position.bit_length() + 7) // 8), "big")
        body = _ebml(0x53AB, fields[0x53AB]) + _ebml(0x53AC, position)
        entries += _ebml(_SEEK, body)
    seekhead = _ebml(_SEEKHEAD, entries)
    head = seekhead + _void(void_end - seekhead_start - len(seekhead))
    out = bytearray(data)
    out[info[1] : info[3]] = _void(len(info_bytes))
    out[seekhead_start:void_end] = head
    out += info_bytes
    out[segment_start + 4 : segment_body] = _size_vint(len(out) - segment_body, size_length)  # Segment's ID: 4 bytes
    Path(dst).write_bytes(bytes(out))
    return Path(dst)


def strip_webm_duration(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """``src`` with Info's Duration replaced by a Void of the same length, as a live recording has none."""
    data = bytearray(Path(src).read_bytes())
    _, segment_body, _ = _segment(bytes(data))
    for element_id, _, body, end in _elements(bytes(data), segment_body, len(data)):
        if element_id == _INFO:
            for field_id, field_start, _, field_end in _elements(bytes(data), body, end):
                if field_id == _DURATION:
                    data[field_start:field_end] = _void(field_end - field_start)
                    Path(dst).write_bytes(data)
                    return Path(dst)
    raise ValueError(f"{src} has no Duration")


def _size_vint(value: int, length: int) -> bytes:
    if value >= (1 << (7 * length)) - 1:
        raise ValueError("size does not fit")
    return (value | (1 << (7 * length))).to_bytes(length, "big")


def _ebml(element_id: int, body: bytes) -> bytes:
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    length = next(n for n in range(1, 9) if len(body) < (1 << (7 * n)) - 1)
    return id_bytes + _size_vint(len(body), length) + body


def _copy(source, target, offset: int, length: int) -> None:
    source.seek(offset)
    while length > 0:
        chunk = source.read(min(_COPY_CHUNK, length))
        if not chunk:
            break
        target.write(chunk)
        length -= len(chunk)


def video_cache() -> Path:
    """Where one session's base videos live (``OPUS_TEST_VIDEOS`` chooses; a temp folder by default)."""
    import tempfile

    return Path(os.environ.get("OPUS_TEST_VIDEOS") or Path(tempfile.gettempdir()) / f"opus-test-videos-{os.getuid()}")


def smallest_video() -> int:
    """The size of the smallest video ``video_bytes`` can make (the base video itself)."""
    return os.path.getsize(_base_video())


def _base_video() -> Path:
    return make_video(video_cache() / "base-2s-faststart.mp4", seconds=2.0, faststart=True, audio=False)


def video_bytes(size: int, *, salt: bytes = b"") -> bytes:
    """A real 2-second MP4 (``moov`` first) of exactly ``size`` bytes, for tests that upload "a
    video of N bytes": its ``mdat`` is padded at the end, and ``salt`` is written into the padding's
    last bytes so that two videos of one size can differ. Raises ``ValueError`` below
    ``smallest_video()``."""
    return b"".join(video_pieces(size, salt=salt))


def video_pieces(size: int, *, salt: bytes = b"", piece: int = _COPY_CHUNK) -> Iterator[bytes]:
    """``video_bytes(size, salt=salt)`` piece by piece (of at most ``piece`` bytes past the first), so
    that a large one is never whole in memory: the base video with its ``mdat`` grown, zeros, the salt."""
    base = _base_video()
    data = base.read_bytes()
    if size - len(salt) < len(data):
        raise ValueError(f"{size:,} bytes leave no room for a {len(data):,}-byte video and a {len(salt)}-byte salt")
    boxes, index, header_start, new_header = _grown_mdat(base, size - len(data))
    _, start, header, _ = boxes[index]
    if index != len(boxes) - 1:
        raise ValueError(f"{base} does not end with its mdat")
    head = data[:header_start] + new_header + data[start + header :]
    yield head
    hole = size - len(head) - len(salt)
    zeros = bytes(min(piece, hole))
    while hole > 0:
        yield zeros[: min(piece, hole)]
        hole -= min(piece, hole)
    if salt:
        yield salt


def make_thumbnail(path: str | os.PathLike[str]) -> Path:
    """A JPEG of the base video's first frame (``-frames:v 1``), as a clip's ``uriForThumbnail``; kept
    if it already exists."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(_base_video())]
        subprocess.run([*args, "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", str(partial)], check=True)
        partial.replace(target)
    return target


SALT_BYTES = 16


def unique_video(size: int = 0, *, salt: bytes | None = None) -> bytes:
    """A real MP4 of ``size`` bytes (at least ``smallest_video()`` and room for the salt) that differs from
    every other one (a random ``salt`` unless one is given): what tests and tools upload where random bytes
    once did, now that ingest reads a video's duration before it sends a byte."""
    return video_bytes(max(size, smallest_video() + SALT_BYTES), salt=salt or os.urandom(SALT_BYTES))
