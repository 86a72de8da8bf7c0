"""A video's duration from its container header, read through a few ranged reads.

Why: OpusClip bills one credit per minute of source video (at least ten per project), so the pipeline
wants the duration before it streams a source into OpusClip — to estimate the credits and to refuse an
unreadable upload while refusing is still cheap. The source is a Cloud Storage object of up to many GiB
and its duration sits in a few hundred bytes of header, so this module reads box and element headers
only, through a seekable file-like (``RangedReader``) that turns the parser's small reads into a handful
of HTTP range requests. It is transport-free, like google-resumable-media's core: the caller passes
``read_range(start, end_inclusive) -> bytes`` (e.g. ``blob.download_as_bytes(start=, end=)``).

Why a reader of its own rather than a library (measured on a 1 GiB MP4 whose ``moov`` is at the end,
made by padding ffmpeg's output, through a counting file-like; bytes read of the 1,073,741,824):

- pymediainfo 7.0.1: its manylinux x86_64 wheel does bundle libmediainfo.so (15 MB; needs only libz and
  libstdc++), and ``MediaInfo.parse(file_like)`` drives MediaInfo's Open_Buffer API with seeks, so it
  skips ``mdat``. But it reads all of ``moov`` and, by default, some frames: 2,559,282 bytes from a
  2-minute source (parse_speed=0.5, the default), 199,986 at parse_speed=0; from a 1-hour source
  (``moov`` 2.5 MB, as a real 1 GiB video has) 2,639,854 bytes even at parse_speed=0.
- hachoir 3.4.0 (pure Python, ``InputIOStream`` over the file-like): skips ``mdat`` but parses the
  sample tables: 1,066,598 bytes (2-minute source), 1,049,819 (1-hour source), ~414 small reads each;
  0.13 s to import. Over 1 MiB.
- pymp4 1.4.0 (construct 2.8): ``Box.parse_stream`` reads every box whole, ``mdat`` included:
  1,073,748,572 bytes.

None keeps a realistic 1 GiB file under 1 MiB, because a long video's ``moov`` alone is megabytes of
sample tables. Reading ``mvhd`` and skipping every other box by its header does: two 64 KiB requests
for both of those files. WebM/Matroska is the same idea with EBML headers (Segment → SeekHead → Info).
The whole module is stdlib-only, so importing it costs nothing at cold start.

Supported: ISO BMFF (MP4, MOV, M4V; ``moov`` first or last; ``mvhd`` version 0 and 1; fragmented
files through ``mvex/mehd``, else the last fragments found through ``mfra``, else a bounded walk of the
fragments) and EBML (WebM, Matroska; ``Info`` found directly or through the ``SeekHead``). Clusters are
never parsed.

The file is not trusted: anyone who can write to the source bucket can craft one. So a probe has a
budget per file, whatever the nesting (``MAX_PROBE_REQUESTS``, ``MAX_PROBE_BYTES``, ``MAX_PROBE_BOXES``),
every field is read from within its own box, and whatever does not parse — a size smaller than its
header or past its parent, a box too short for its fields, a budget spent — is ``UnreadableVideoError``, a permanent
failure on the first delivery, never an exception that the platform would redeliver. And because the
duration decides the credit estimate, ``mvhd`` is not believed alone: each track's ``mdhd`` and its
sample table (``stts``: sample counts × deltas), and in a fragmented file the fragments' sample
durations (``trun``, ``tfhd``/``trex`` defaults) found cheaply through ``mfra``, are read too, and the
largest duration is the estimate. A WebM/Matroska duration is taken from ``Info`` alone: checking it
would mean reading the ``Cues`` or the last ``Cluster``, which are not cheap to find.
"""

from __future__ import annotations

import io
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple, NoReturn

from opus_pipeline.errors import UnreadableVideoError

WINDOW = 64 * 1024  # one range request: big enough for a header's many small reads, small next to a video
CACHE_WINDOWS = 4
MIN_CREDITS = 10  # OpusClip's minimum per project
MAX_TOP_LEVEL_BOXES = 256  # a real MP4 has a handful; more means garbage or a fragmented file walked too far
MAX_FRAGMENT_BOXES = 64  # the walk of an unindexed fragmented MP4 gives up here (each hop may cost a request)
MAX_SEGMENT_ELEMENTS = 64  # top-level elements of a Matroska Segment looked at before Info is given up on

MAX_PROBE_REQUESTS = 64
"""Range requests one probe may make. A real header costs one to a dozen: two 64 KiB windows for a
``moov`` at either end, a few more to reach the sample-table headers of a long video's tracks or the
fragments that ``mfra`` points at. Without a bound a crafted ``moov`` of 64 MiB of 8-byte boxes, each
header a read, cost ~1,000 requests and 18 s of CPU, and a 1 GiB one outlived the function's timeout
(then Eventarc redelivers it for 24 hours)."""

MAX_PROBE_BYTES = 4 * 1024 * 1024
"""Bytes one probe may fetch: ``MAX_PROBE_REQUESTS`` full windows. The largest legitimate read is a
sample-time table (``stts``, 8 bytes per run of equal sample durations): a 10-hour constant-rate video
has a few runs; a screen recording whose every frame has its own duration, ~500,000 runs (4.8 hours
at 30 frames a second) before the budget is spent."""

MAX_PROBE_BOXES = 4096
"""MP4 boxes or EBML elements one probe may parse, at every level together. A real header has about
25 per track plus a few dozen; a fragmented file walked without an index ``MAX_FRAGMENT_BOXES`` more,
six each. This bounds the CPU a flood of tiny boxes costs within a window already fetched."""


ReadRange = Callable[[int, int], bytes]


class RangedReader(io.RawIOBase):
    """A seekable, read-only file-like over ``read_range(start, end_inclusive)`` of an object of ``size`` bytes.

    Parsers read a few bytes at a time and jump around; each miss fetches one ``window`` (or what a read
    asks for, if more) and keeps the last ``cache_windows`` windows, so a header costs one or two
    requests. A miss near the end fetches the window that ends at the end of the object, which then
    also serves the reads just before it (``mfro`` then ``mfra``, or a ``moov`` at the end).
    ``bytes_read`` and ``requests`` count what was fetched, for tests and logs. Errors of
    ``read_range`` propagate unchanged: the caller knows whether its transport's error is transient.

    The reader is the probe's budget of one file: a fetch that would make more than ``max_requests``
    requests or ``max_bytes`` bytes over its life raises ``UnreadableVideoError`` before it is sent.
    """

    def __init__(
        self,
        read_range: ReadRange,
        size: int,
        *,
        window: int = WINDOW,
        cache_windows: int = CACHE_WINDOWS,
        max_requests: int = MAX_PROBE_REQUESTS,
        max_bytes: int = MAX_PROBE_BYTES,
    ) -> None:
        super().__init__()
        if size < 0 or window <= 0 or cache_windows <= 0 or max_requests <= 0 or max_bytes <= 0:
            raise ValueError("size must be >= 0; window, cache_windows, max_requests and max_bytes > 0")
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._read_range = read_range
        self.size = size
        self.window = window
        self._cache_windows = cache_windows
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self.bytes_read = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}
        if whence not in bases:
            raise ValueError(f"invalid whence {whence}")
        position = bases[whence] + offset
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def readinto(self, buffer: Any) -> int:  # any writable buffer (typing has no Buffer before 3.12)
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._pos)
        done = 0
        while done < wanted:
            start, chunk = self._chunk_at(self._pos, wanted - done)
            skip = self._pos - start
            take = min(wanted - done, len(chunk) - skip)
            if take <= 0:  # the object is shorter than ``size`` said: behave as at its end
                break
            view[done : done + take] = chunk[skip : skip + take]
            done += take
            self._pos += take
        return done

    def _chunk_at(self, position: int, wanted: int) -> tuple[int, bytes]:
        for start, chunk in self._cache.items():
            if start <= position < start + len(chunk):
                self._cache.move_to_end(start)
                return start, chunk
        length = max(self.window, wanted)
        end = min(self.size, position + length)
        start = max(0, end - length) if end - position < length else position
        if self.requests >= self.max_requests or self.bytes_read + (end - start) > self.max_bytes:
            raise UnreadableVideoError(
                f"reading its header would take more than {self.max_requests} range requests or"
                f" {self.max_bytes:,} bytes — the file is damaged or made to be expensive to read;"
                " remux it with `ffmpeg -i IN -c copy OUT.mp4`"
            )
        chunk = bytes(self._read_range(start, end - 1))[: end - start]
        self.requests += 1
        self.bytes_read += len(chunk)
        self._cache[start] = chunk
        self._cache.move_to_end(start)
        while len(self._cache) > self._cache_windows:
            self._cache.popitem(last=False)
        return start, chunk


def credits_estimate(seconds: float) -> int:
    """OpusClip's bill for a video: one credit per started minute, at least ten per project."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, not {seconds!r}")
    return max(MIN_CREDITS, math.ceil(seconds / 60))


def probe_duration(reader: RangedReader | BinaryIO, *, name: str = "") -> float:
    """Seconds of video, from the container header of a seekable binary file-like.

    Raises ``UnreadableVideoError`` for an empty, truncated, damaged or unknown file, for a header
    without a duration and for one that would cost more than the probe's budget to read (a plain
    file-like gets a ``RangedReader`` of its own, so the same budget applies). ``name`` (e.g. the
    object name) starts the message so a person knows which upload it was. Errors of the reader's
    transport propagate unchanged.
    """
    if not isinstance(reader, RangedReader):
        reader = RangedReader(_file_range(reader), reader.seek(0, io.SEEK_END))
    source = _Source(reader, name)
    if source.size == 0:
        source.fail("the file is empty")
    head = source.read(0, 12)
    try:
        if head[:4] == _EBML_MAGIC:
            return _matroska_seconds(source)
        if len(head) >= 8 and head[4:8] in _BMFF_FIRST_BOXES:
            return _mp4_seconds(source)
    except (struct.error, IndexError, ArithmeticError) as exc:  # a field the checks above missed
        source.fail(f"the container header is damaged ({type(exc).__name__}: {exc})")
    source.fail(f"not an MP4, MOV, WebM or Matroska video ({_looks_like(head)})")


def _file_range(stream: BinaryIO) -> ReadRange:
    def read_range(start: int, end: int) -> bytes:
        stream.seek(start)
        return stream.read(end - start + 1)

    return read_range


# --- reading --------------------------------------------------------------------------------------


class _Source:
    """Exact positional reads over the reader, the count of boxes parsed, and errors that name the upload."""

    def __init__(self, stream: RangedReader, name: str) -> None:
        self.stream = stream
        self.name = name
        self.size = stream.seek(0, io.SEEK_END)
        self.boxes = 0

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; fewer only at the end of the file."""
        self.stream.seek(offset)
        parts: list[bytes] = []
        left = length
        while left > 0:
            try:
                part = self.stream.read(left)
            except UnreadableVideoError as exc:  # the reader's budget is spent
                self.fail(str(exc))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def count_box(self) -> None:
        """One more box or element header parsed; past ``MAX_PROBE_BOXES`` the file is refused."""
        self.boxes += 1
        if self.boxes > MAX_PROBE_BOXES:
            self.fail(
                f"its header has more than {MAX_PROBE_BOXES:,} boxes or elements — the file is damaged or made"
                " to be expensive to read; remux it with `ffmpeg -i IN -c copy OUT.mp4`"
            )

    def read_exact(self, offset: int, length: int, what: str) -> bytes:
        data = self.read(offset, length)
        if len(data) < length:
            self.fail(f"the file ends inside the {what} at byte {offset} — is the upload truncated?")
        return data

    def fail(self, message: str) -> NoReturn:
        raise UnreadableVideoError(f"{self.name}: {message}" if self.name else message)


_SIGNATURES = {
    b"\x89PNG": "it starts like a PNG image",
    b"\xff\xd8\xff": "it starts like a JPEG image",
    b"GIF8": "it starts like a GIF image",
    b"%PDF": "it starts like a PDF document",
    b"PK\x03\x04": "it starts like a ZIP archive",
    b"RIFF": "it starts like a RIFF file (AVI or WAV), which is not read here",
    b"ID3": "it starts like an MP3 file",
    b"OggS": "it starts like an Ogg file, which is not read here",
}


def _looks_like(head: bytes) -> str:
    for magic, description in _SIGNATURES.items():
        if head.startswith(magic):
            return description
    if head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "it starts like text"
    return f"it starts with bytes {head[:8].hex(' ')}"


# --- ISO BMFF (MP4, MOV) --------------------------------------------------------------------------

_BMFF_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"moof"}
_UNKNOWN_32 = 0xFFFFFFFF
_UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF


class _Box(NamedTuple):
    kind: bytes
    start: int
    body: int
    end: int  # as declared: beyond the file's size when the file is truncated

    @property
    def label(self) -> str:
        return self.kind.decode("latin-1")


def _box_at(source: _Source, offset: int, limit: int) -> _Box:
    source.count_box()
    head = source.read_exact(offset, min(16, max(8, limit - offset)), "an MP4 box header")
    size, kind = struct.unpack(">I4s", head[:8])
    body = offset + 8
    if size == 1:
        if len(head) < 16:
            source.fail(f"the file ends inside an MP4 box header at byte {offset} — is the upload truncated?")
        size = struct.unpack(">Q", head[8:16])[0]
        body = offset + 16
    elif size == 0:  # "to the end of the file"
        size = limit - offset
    if offset + size < body:
        source.fail(f"the MP4 box at byte {offset} has an impossible size ({size}) — the file is damaged")
    return _Box(kind, offset, body, offset + size)


def _top_level_box_at(source: _Source, offset: int) -> _Box:
    """A top-level box, which must end within the file: one that runs past it was cut short."""
    box = _box_at(source, offset, source.size)
    if box.end > source.size:
        source.fail(
            f"the MP4 '{box.label}' box needs {box.end:,} bytes but the file has {source.size:,}"
            " — is the upload truncated?"
        )
    return box


def _children(source: _Source, parent: _Box) -> Iterator[_Box]:
    """The boxes inside ``parent``; one that runs past it is damage (or a lie), not a box to read."""
    position = parent.body
    end = min(parent.end, source.size)
    while position + 8 <= end:
        box = _box_at(source, position, end)
        if box.end > end:
            source.fail(
                f"the MP4 '{box.label}' box at byte {box.start} runs past the '{parent.label}' box that holds it"
                " — the file is damaged"
            )
        yield box
        position = box.end


def _child(source: _Source, parent: _Box, kind: bytes) -> _Box | None:
    return next((box for box in _children(source, parent) if box.kind == kind), None)


def _fields(source: _Source, box: _Box, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of ``box``'s body, which must hold them: no field is read from the
    bytes of the box after it."""
    if box.body + offset + length > box.end:
        source.fail(
            f"the MP4 '{box.label}' box at byte {box.start} is {box.end - box.body} bytes, too short for its"
            " fields — the file is damaged"
        )
    return source.read_exact(box.body + offset, length, f"'{box.label}' box")


def _version_and_flags(source: _Source, box: _Box) -> tuple[int, int]:
    head = _fields(source, box, 0, 4)
    return head[0], int.from_bytes(head[1:4], "big")


def _timescale_and_duration(source: _Source, box: _Box) -> tuple[int, int]:
    """``mvhd`` and ``mdhd`` share this layout: version 1 has 64-bit times and duration."""
    version, _ = _version_and_flags(source, box)
    if version == 1:
        timescale, duration = struct.unpack(">IQ", _fields(source, box, 20, 12))
        return timescale, 0 if duration == _UNKNOWN_64 else duration
    timescale, duration = struct.unpack(">II", _fields(source, box, 12, 8))
    return timescale, 0 if duration == _UNKNOWN_32 else duration


def _mp4_seconds(source: _Source) -> float:
    """The largest of the durations the header gives: ``mvhd``'s, each track's (``mdhd`` and its
    sample table) and, in a fragmented file, where its fragments end."""
    moov: _Box | None = None
    has_media = False
    first_moof: int | None = None
    position = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if position >= source.size:
            break
        box = _top_level_box_at(source, position)
        if box.kind == b"moov":
            moov = box
        elif box.kind == b"mdat":
            has_media = True
        elif box.kind == b"moof":
            first_moof = box.start
            break  # fragments follow; their duration is found below without visiting each of them
        position = box.end
    else:
        source.fail(f"more than {MAX_TOP_LEVEL_BOXES} top-level MP4 boxes — the file is damaged")
    if moov is None:
        source.fail("no moov box (the MP4 header) in the file — is the upload truncated?")
    header = _movie_header(source, moov)
    if header.timescale == 0:
        source.fail("the MP4 header gives a timescale of 0 — the file is damaged")
    movie = header.duration / header.timescale
    if first_moof is not None:
        movie = max(movie, _fragmented_seconds(source, header, first_moof))
    elif not has_media:
        source.fail("the MP4 has a header but no media data (mdat) — is the upload truncated?")
    elif movie <= 0:  # a complete MP4 always states it; the sample tables alone are not taken for it
        source.fail("no duration in the MP4 header — is the upload truncated?")
    seconds = max([movie] + [track.seconds for track in header.tracks])
    if seconds <= 0:
        source.fail("no duration in the MP4 header — is the upload truncated?")
    return seconds


class _Track:
    """A track: ``end`` is where its samples end so far, in its ``timescale`` — its ``mdhd`` duration or
    its sample table's total, whichever is larger, then advanced by the fragments read."""

    __slots__ = ("default_duration", "end", "timescale")

    def __init__(self, timescale: int, end: int) -> None:
        self.timescale = timescale
        self.end = end
        self.default_duration = 0  # trex's default sample duration

    @property
    def seconds(self) -> float:
        return self.end / self.timescale


class _MovieHeader(NamedTuple):
    timescale: int
    duration: int  # mvhd's, in timescale
    tracks: list[_Track]
    by_id: dict[int, _Track]  # the tracks that name their id (tkhd): fragments refer to them by it
    mehd: int  # the fragmented movie's whole duration, in timescale; 0 when not given


def _movie_header(source: _Source, moov: _Box) -> _MovieHeader:
    mvhd: tuple[int, int] | None = None
    tracks: list[_Track] = []
    by_id: dict[int, _Track] = {}
    defaults: dict[int, int] = {}
    mehd = 0
    for child in _children(source, moov):
        if child.kind == b"mvhd" and mvhd is None:
            mvhd = _timescale_and_duration(source, child)
        elif child.kind == b"trak":
            track_id, track = _track(source, child)
            tracks.append(track)
            if track_id is not None:
                by_id.setdefault(track_id, track)
        elif child.kind == b"mvex":
            for box in _children(source, child):
                if box.kind == b"mehd":
                    version, _ = _version_and_flags(source, box)
                    mehd = int.from_bytes(_fields(source, box, 4, 8 if version == 1 else 4), "big")
                    mehd = 0 if mehd in (_UNKNOWN_32, _UNKNOWN_64) else mehd
                elif box.kind == b"trex":
                    track_id, _, duration = struct.unpack(">III", _fields(source, box, 4, 12))
                    defaults[track_id] = duration
    if mvhd is None:
        source.fail("the MP4 header has no mvhd box — the file is damaged")
    for track_id, duration in defaults.items():
        if track_id in by_id:
            by_id[track_id].default_duration = duration
    return _MovieHeader(mvhd[0], mvhd[1], tracks, by_id, mehd)


def _track(source: _Source, trak: _Box) -> tuple[int | None, _Track]:
    """A ``trak``'s id and its duration: ``mdhd``'s, or its ``stts`` total if that is larger."""
    track_id: int | None = None
    mdhd: tuple[int, int] | None = None
    samples = 0
    for box in _children(source, trak):
        if box.kind == b"tkhd":
            version, _ = _version_and_flags(source, box)
            track_id = int.from_bytes(_fields(source, box, 20 if version == 1 else 12, 4), "big")
        elif box.kind == b"mdia":
            for inner in _children(source, box):
                if inner.kind == b"mdhd" and mdhd is None:
                    mdhd = _timescale_and_duration(source, inner)
                elif inner.kind == b"minf":
                    stbl = _child(source, inner, b"stbl")
                    for table in _children(source, stbl) if stbl else ():
                        if table.kind == b"stts":
                            samples = max(samples, _stts_total(source, table))
    if mdhd is None or mdhd[0] == 0:
        source.fail("an MP4 track has no media timescale (mdhd) — the file is damaged")
    return track_id, _Track(mdhd[0], max(mdhd[1], samples))


def _stts_total(source: _Source, stts: _Box) -> int:
    """The sum of a sample-time table: each entry is a run of ``count`` samples lasting ``delta`` each."""
    count = struct.unpack(">I", _fields(source, stts, 4, 4))[0]
    if 8 + 8 * count > stts.end - stts.body:
        source.fail(f"an MP4 sample-time table (stts) claims {count:,} entries but has no room for them")
    values = struct.unpack(f">{2 * count}I", _fields(source, stts, 8, 8 * count))
    return sum(runs * delta for runs, delta in zip(values[0::2], values[1::2], strict=True))


def _fragmented_seconds(source: _Source, header: _MovieHeader, first_moof: int) -> float:
    """A fragmented MP4: where the last fragments end, and ``mehd`` if the muxer wrote it.

    The last fragments are found through ``mfra`` (the random-access index at the end, whose ``mfro``
    is the file's last 16 bytes); their ``tfdt`` gives the start time, their ``trun`` the sample
    durations. With ``mehd`` and no such index, ``mehd`` is taken as it is: checking it would mean
    reading every fragment. Without either, the fragments are walked from the first, within
    ``MAX_FRAGMENT_BOXES``.
    """
    mehd = header.mehd / header.timescale
    tracks = header.by_id
    if not tracks and not mehd:
        source.fail("the fragmented MP4 header describes no track — the file is damaged")
    start = _last_fragments(source) if tracks else None
    if start is not None:
        ends = {track_id: track.end for track_id, track in tracks.items()}
        if _walk_fragments(source, start, tracks):
            return max(mehd, _latest_end(tracks))
        for track_id, end in ends.items():  # some fragment had no tfdt: only a sum from the first tells
            tracks[track_id].end = end
    if mehd:
        return max(mehd, _latest_end(tracks))
    _walk_fragments(source, first_moof, tracks)
    return _latest_end(tracks)


def _latest_end(tracks: dict[int, _Track]) -> float:
    return max((track.seconds for track in tracks.values()), default=0.0)


def _last_fragments(source: _Source) -> int | None:
    """Offset of the earliest of the tracks' last indexed fragments, from ``mfra``; None without one."""
    if source.size < 24:
        return None
    size, kind, _, mfra_size = struct.unpack(">I4sII", source.read(source.size - 16, 16))
    if kind != b"mfro" or size != 16 or not 24 <= mfra_size <= source.size:
        return None
    mfra = _box_at(source, source.size - mfra_size, source.size)
    if mfra.kind != b"mfra" or mfra.end != source.size:
        return None
    offsets = []
    for tfra in _children(source, mfra):
        if tfra.kind != b"tfra":
            continue
        head = _fields(source, tfra, 0, 16)
        version = head[0]
        lengths, count = struct.unpack(">II", head[8:16])
        entry = (16 if version == 1 else 8) + ((lengths >> 4) & 3) + ((lengths >> 2) & 3) + (lengths & 3) + 3
        if count == 0 or 16 + count * entry > tfra.end - tfra.body:
            continue
        raw = _fields(source, tfra, 16 + (count - 1) * entry, entry)
        offsets.append(struct.unpack(">Q", raw[8:16])[0] if version == 1 else struct.unpack(">I", raw[4:8])[0])
    offsets = [offset for offset in offsets if 0 < offset < mfra.start]
    return min(offsets) if offsets else None


def _walk_fragments(source: _Source, start: int, tracks: dict[int, _Track]) -> bool:
    """Advance the tracks' ends through every fragment from ``start``; False if one had no ``tfdt``."""
    every_fragment_timed = True
    position = start
    for _ in range(MAX_FRAGMENT_BOXES):
        if position >= source.size:
            return every_fragment_timed
        box = _top_level_box_at(source, position)
        if box.kind == b"mfra":
            return every_fragment_timed
        if box.kind == b"moof":
            every_fragment_timed &= _apply_fragment(source, box, tracks)
        position = box.end
    if position >= source.size:
        return every_fragment_timed
    source.fail(
        f"a fragmented MP4 with more than {MAX_FRAGMENT_BOXES // 2} fragments and no index (mehd or mfra):"
        " its duration would need every fragment read — remux it with `ffmpeg -i IN -c copy OUT.mp4`"
    )


def _apply_fragment(source: _Source, moof: _Box, tracks: dict[int, _Track]) -> bool:
    timed = True
    for traf in _children(source, moof):
        if traf.kind != b"traf":
            continue
        track: _Track | None = None
        default = 0
        base: int | None = None
        total = 0
        for box in _children(source, traf):
            if box.kind == b"tfhd":
                track, default = _fragment_track(source, box, tracks)
            elif box.kind == b"tfdt":
                version, _ = _version_and_flags(source, box)
                base = int.from_bytes(_fields(source, box, 4, 8 if version == 1 else 4), "big")
            elif box.kind == b"trun":
                total += _run_duration(source, box, default)
        if track is None:
            continue
        if base is None:
            timed = False
            base = track.end
        track.end = max(track.end, base + total)
    return timed


def _fragment_track(source: _Source, tfhd: _Box, tracks: dict[int, _Track]) -> tuple[_Track | None, int]:
    """The track a ``tfhd`` names, and its fragment's default sample duration (``tfhd``'s, else ``trex``'s)."""
    _, flags = _version_and_flags(source, tfhd)
    track = tracks.get(struct.unpack(">I", _fields(source, tfhd, 4, 4))[0])
    if flags & 0x08:  # default-sample-duration-present, after the optional base offset and description index
        field = 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
        return track, struct.unpack(">I", _fields(source, tfhd, field, 4))[0]
    return track, track.default_duration if track else 0


def _run_duration(source: _Source, trun: _Box, default: int) -> int:
    """A ``trun``'s samples' total duration: their own durations if it lists them, else count × default."""
    _, flags = _version_and_flags(source, trun)
    count = struct.unpack(">I", _fields(source, trun, 4, 4))[0]
    if not flags & 0x100:
        return count * default
    first = 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
    stride = 4 * bin(flags & 0xF00).count("1")
    if first + count * stride > trun.end - trun.body:
        source.fail("an MP4 fragment's sample table is shorter than its sample count — the file is damaged")
    data = _fields(source, trun, first, count * stride)
    return sum(duration for duration, *_ in struct.iter_unpack(f">{stride // 4}I", data))


# --- EBML (WebM, Matroska) ------------------------------------------------------------------------

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_DOCTYPE = 0x4282
_SEGMENT = 0x18538067
_SEEKHEAD = 0x114D9B74
_SEEK = 0x4DBB
_SEEK_ID = 0x53AB
_SEEK_POSITION = 0x53AC
_INFO = 0x1549A966
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_VOID = 0xEC


class _Element(NamedTuple):
    id: int
    start: int
    data: int
    end: int | None  # None: "unknown size" (a live recording's Segment or Cluster)


def _vint(source: _Source, head: bytes, position: int, *, max_length: int, keep_marker: bool) -> tuple[int, int]:
    if position >= len(head) or head[position] == 0:
        source.fail("an EBML element header is damaged or cut short — is the upload truncated?")
    length = 9 - head[position].bit_length()
    if length > max_length or position + length > len(head):
        source.fail("an EBML element header is damaged or cut short — is the upload truncated?")
    value = int.from_bytes(head[position : position + length], "big")
    return (value if keep_marker else value & ((1 << (7 * length)) - 1)), length


def _element_at(source: _Source, offset: int) -> _Element:
    source.count_box()
    head = source.read(offset, 12)
    element_id, id_length = _vint(source, head, 0, max_length=4, keep_marker=True)
    size, size_length = _vint(source, head, id_length, max_length=8, keep_marker=False)
    data = offset + id_length + size_length
    unknown = size == (1 << (7 * size_length)) - 1
    return _Element(element_id, offset, data, None if unknown else data + size)


def _ebml_children(source: _Source, parent: _Element) -> Iterator[_Element]:
    if parent.end is None:
        source.fail(f"an EBML element of unknown size at byte {parent.start} where a header was expected")
    position = parent.data
    end = min(parent.end, source.size)
    while position < end:
        element = _element_at(source, position)
        if element.end is None:
            return
        yield element
        position = element.end


def _payload(source: _Source, element: _Element, what: str) -> bytes:
    assert element.end is not None
    if element.end - element.data > 4096:
        source.fail(f"the Matroska {what} element is {element.end - element.data:,} bytes — the file is damaged")
    return source.read_exact(element.data, element.end - element.data, what)


def _matroska_seconds(source: _Source) -> float:
    header = _element_at(source, 0)
    doctype = next(
        (_payload(source, child, "DocType") for child in _ebml_children(source, header) if child.id == _DOCTYPE), b""
    )
    kind = doctype.rstrip(b"\0").decode("ascii", "replace")
    if kind not in ("webm", "matroska"):
        source.fail(f"an EBML file of type {kind!r}, not a WebM or Matroska video")
    assert header.end is not None
    segment = _element_at(source, header.end)
    while segment.id == _VOID and segment.end is not None:
        segment = _element_at(source, segment.end)
    if segment.id != _SEGMENT:
        source.fail("no Segment after the EBML header — not a valid WebM or Matroska file")
    if segment.end is not None and segment.end > source.size:
        source.fail(
            f"the Matroska Segment needs {segment.end:,} bytes but the file has {source.size:,}"
            " — is the upload truncated?"
        )
    info = _find_info(source, segment)
    scale, duration = 1_000_000, None  # TimecodeScale's default: milliseconds
    for child in _ebml_children(source, info):
        if child.id == _TIMECODE_SCALE:
            raw = _payload(source, child, "TimecodeScale")
            scale = int.from_bytes(raw, "big")
            if not 1 <= len(raw) <= 8 or scale == 0:
                source.fail(f"the Matroska TimecodeScale is {raw.hex() or 'empty'} — the file is damaged")
        elif child.id == _DURATION:
            raw = _payload(source, child, "Duration")
            if len(raw) not in (4, 8):
                source.fail(f"the Matroska Duration is {len(raw)} bytes long, not a float — the file is damaged")
            duration = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
    if duration is None:
        source.fail(
            "no duration in the WebM/Matroska header (Info has no Duration) — a live recording, such as a"
            " browser's MediaRecorder makes, leaves it out; remux it with `ffmpeg -i IN -c copy OUT.webm`"
        )
    seconds = duration * scale / 1e9
    if not math.isfinite(seconds) or seconds <= 0:
        source.fail(f"the WebM/Matroska header gives a duration of {duration!r} — is the upload truncated?")
    return seconds


def _find_info(source: _Source, segment: _Element) -> _Element:
    """The Segment's Info: usually its second child, after SeekHead; else where the SeekHead points."""
    end = source.size if segment.end is None else segment.end
    position = segment.data
    for _ in range(MAX_SEGMENT_ELEMENTS):
        if position >= end:
            break
        element = _element_at(source, position)
        if element.id == _INFO:
            return element
        if element.id == _SEEKHEAD:
            info = _info_through_seekhead(source, segment, element, follow=2)
            if info is not None:
                return info
        if element.end is None:
            source.fail(
                "no Info element before an element of unknown size — a live recording? Remux it with"
                " `ffmpeg -i IN -c copy OUT.webm`"
            )
        position = element.end
    source.fail("no Info element (the header) in the WebM/Matroska Segment — the file is damaged")


def _info_through_seekhead(source: _Source, segment: _Element, seekhead: _Element, follow: int) -> _Element | None:
    targets: dict[int, int] = {}
    for seek in _ebml_children(source, seekhead):
        if seek.id != _SEEK:
            continue
        target, position = None, None
        for field in _ebml_children(source, seek):
            if field.id == _SEEK_ID:
                target = int.from_bytes(_payload(source, field, "SeekID"), "big")
            elif field.id == _SEEK_POSITION:
                position = int.from_bytes(_payload(source, field, "SeekPosition"), "big")
        if target is not None and position is not None:
            targets.setdefault(target, segment.data + position)
    for wanted in (_INFO, _SEEKHEAD):
        offset = targets.get(wanted)
        if offset is None or offset >= source.size or offset == seekhead.start:
            continue
        element = _element_at(source, offset)
        if element.id == _INFO == wanted:
            return element
        if element.id == _SEEKHEAD == wanted and follow > 0:
            return _info_through_seekhead(source, segment, element, follow - 1)
    return None
