"""Caption files of one clip (SubRip ``.srt`` and WebVTT ``.vtt``) from the project's transcript.

Pure logic. OpusClip's ``GET /api/transcripts?q=findByProjectId`` answers a ``TranscriptResponse``:
``data[0]`` is a list of paragraphs whose ``words`` carry ``word``, ``start``, ``end`` (seconds in the
source video) and ``isFillerWord``; ``data[0]`` is null while there is none. A clip is one or more
``timeRanges`` of the source, played one after the other; its captions are the words whose start
lies inside a range, timed from the clip's own start and never past its end.

``timeRanges`` are documented in seconds, but the OpenAPI example (``[[192170, 211630]]`` beside
``durationMs: 19478``) is plainly milliseconds: the unit is the one whose total length is nearer
the clip's ``durationMs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opus_pipeline.domain.numbers import finite

LINE_CHARS = 42  # the usual broadcast limit of one caption line
CUE_LINES = 2
CUE_GAP_SECONDS = 1.5  # a longer silence starts a new cue rather than keep the last one on screen
_SPACE = re.compile(r"\s+")
_DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds in the source video
    end: float
    filler: bool = False


@dataclass(frozen=True)
class Cue:
    start: float  # seconds from the clip's start
    end: float
    lines: tuple[str, ...]


_number = finite  # a time or a range end that no float holds is not trusted: ``domain/numbers.py``


def transcript_words(answer: object) -> list[Word] | None:
    """The words of a ``TranscriptResponse`` in time order; None when it holds no transcript
    (``data[0]`` null or missing). Malformed paragraphs and words are skipped, never trusted."""
    data = answer.get("data") if isinstance(answer, Mapping) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], list):
        return None
    words = []
    for paragraph in data[0]:
        if not isinstance(paragraph, Mapping) or not isinstance(paragraph.get("words"), list):
            continue
        for raw in paragraph["words"]:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("word"), str):
                continue
            text = _SPACE.sub(" ", raw["word"]).strip()
            start, end = _number(raw.get("start")), _number(raw.get("end"))
            if text and start is not None and end is not None and start >= 0:
                words.append(Word(text, start, max(start, end), raw.get("isFillerWord") is True))
    return sorted(words, key=lambda word: word.start)


def time_ranges_seconds(clip: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The clip's ``timeRanges`` as ``(start, end)`` seconds of the source, in OpusClip's order;
    malformed or empty ranges are left out. Milliseconds when their total length is nearer
    ``durationMs`` read as milliseconds than read as seconds (without ``durationMs``: when a range
    ends past a day, which no seconds value does)."""
    pairs = []
    for item in clip.get("timeRanges") or ():
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            start, end = _number(item[0]), _number(item[1])
            if start is not None and end is not None and 0 <= start < end:
                pairs.append((start, end))
    if not pairs:
        return []
    total = sum(end - start for start, end in pairs)
    duration_ms = _number(clip.get("durationMs"))
    if duration_ms is not None and duration_ms > 0:
        in_ms = abs(total - duration_ms) < abs(total - duration_ms / 1000)
    else:
        in_ms = max(end for _, end in pairs) > _DAY_SECONDS
    scale = 1000.0 if in_ms else 1.0
    return [(start / scale, end / scale) for start, end in pairs]


def clip_cues(words: Sequence[Word], ranges: Sequence[tuple[float, float]], keep_fillers: bool = True) -> list[Cue]:
    """The cues of a clip made of ``ranges`` (seconds of the source, in play order): each of at most
    ``CUE_LINES`` lines of at most ``LINE_CHARS`` characters (a longer word has a line of its own),
    timed from the clip's start. A cue never spans two ranges (they are cut together) or a long
    silence, and never ends past the end of its range, hence of the clip."""
    cues: list[Cue] = []
    offset = 0.0
    for range_start, range_end in ranges:
        inside = [w for w in words if range_start <= w.start < range_end and (keep_fillers or not w.filler)]
        group: list[Word] = []
        for word in inside:
            if group and (word.start - group[-1].end > CUE_GAP_SECONDS or len(_lines([*group, word])) > CUE_LINES):
                cues.append(_cue(group, range_start, range_end, offset))
                group = []
            group.append(word)
        if group:
            cues.append(_cue(group, range_start, range_end, offset))
        offset += range_end - range_start
    return cues


def _lines(words: Sequence[Word]) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word.text) <= LINE_CHARS:
            lines[-1] += " " + word.text
        else:
            lines.append(word.text)
    return lines


def _cue(group: Sequence[Word], range_start: float, range_end: float, offset: float) -> Cue:
    start = offset + group[0].start - range_start
    end = offset + min(max(word.end for word in group), range_end) - range_start
    return Cue(round(start, 3), round(max(end, start), 3), tuple(_lines(group)))


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each."""
    return "".join(
        f"{n}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n" + "\n".join(cue.lines) + "\n\n"
        for n, cue in enumerate(cues, start=1)
    )


def _vtt_text(line: str) -> str:
    """Cue text is markup in WebVTT: ``&``, ``<`` and ``>`` are escaped, so a word can be no tag
    and no ``-->``."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT, as a ``<track>`` of the clips page reads it: ``HH:MM:SS.mmm`` times."""
    body = "".join(
        f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n" + "\n".join(map(_vtt_text, cue.lines)) + "\n\n"
        for cue in cues
    )
    return "WEBVTT\n\n" + body
