"""Caption files of a clip from OpusClip's transcript: which words, timed how, cut into which cues."""

from __future__ import annotations

import itertools

import pytest

from opus_pipeline.domain.captions import (
    CUE_LINES,
    LINE_CHARS,
    Cue,
    Word,
    clip_cues,
    time_ranges_seconds,
    to_srt,
    to_vtt,
    transcript_words,
)


def words(*spec: tuple[str, float]) -> list[Word]:
    """Words of 0.4 s starting at the given seconds."""
    return [Word(text, start, start + 0.4) for text, start in spec]


def answer(*paragraphs: list[dict]) -> dict:
    return {"data": [[{"id": n, "start": 0, "end": 1, "text": "", "words": w} for n, w in enumerate(paragraphs)]]}


# -- the transcript --------------------------------------------------------------------------------


def test_the_words_of_every_paragraph_come_in_time_order() -> None:
    later = [{"word": "world", "start": 2.0, "end": 2.4}]
    earlier = [
        {"word": " hello ", "start": 1.0, "end": 1.4, "isFillerWord": False},
        {"word": "um", "start": 1.5, "end": 1.6, "isFillerWord": True},
    ]
    assert transcript_words(answer(later, earlier)) == [
        Word("hello", 1.0, 1.4),
        Word("um", 1.5, 1.6, filler=True),
        Word("world", 2.0, 2.4),
    ]


@pytest.mark.parametrize("body", [{"data": [None]}, {"data": []}, {}, [], None, {"data": "x"}])
def test_no_transcript_is_none(body: object) -> None:
    assert transcript_words(body) is None


def test_malformed_words_are_skipped() -> None:
    bad = [
        {"word": "", "start": 1, "end": 2},
        {"word": "x", "start": "1", "end": 2},
        {"word": "y", "start": -1, "end": 2},
        {"word": 5, "start": 1, "end": 2},
        {"word": "z", "start": float("nan"), "end": 2},
        "w",
        {"word": "ok", "start": 3, "end": 3.5},
    ]
    assert transcript_words(answer(bad)) == [Word("ok", 3, 3.5)]


# -- the clip's ranges -----------------------------------------------------------------------------


def test_time_ranges_in_milliseconds_are_recognised_by_the_duration() -> None:
    clip = {"durationMs": 19478, "timeRanges": [[192170, 211630]]}  # the OpenAPI's own example
    assert time_ranges_seconds(clip) == [(192.17, 211.63)]


def test_time_ranges_in_seconds_are_kept() -> None:
    clip = {"durationMs": 19478, "timeRanges": [[192.17, 211.63]]}
    assert time_ranges_seconds(clip) == [(192.17, 211.63)]


def test_several_ranges_are_judged_by_their_total_length() -> None:
    clip = {"durationMs": 20_000, "timeRanges": [[10_000, 20_000], [30_000, 40_000]]}
    assert time_ranges_seconds(clip) == [(10.0, 20.0), (30.0, 40.0)]
    in_seconds = {"durationMs": 20_000, "timeRanges": [[10, 20], [30, 40]]}
    assert time_ranges_seconds(in_seconds) == [(10, 20), (30, 40)]


def test_without_a_duration_only_values_past_a_day_are_milliseconds() -> None:
    assert time_ranges_seconds({"timeRanges": [[100, 120]]}) == [(100, 120)]
    assert time_ranges_seconds({"timeRanges": [[100_000, 120_000]]}) == [(100, 120)]


@pytest.mark.parametrize("ranges", [None, [], [[5]], [[5, 5]], [[6, 5]], [["a", 5]], "05", [[True, 5]], [[0, 10**400]]])
def test_malformed_ranges_give_none(ranges: object) -> None:
    assert time_ranges_seconds({"durationMs": 1000, "timeRanges": ranges}) == []


# -- cues ------------------------------------------------------------------------------------------


def test_cue_times_count_from_the_clip_start() -> None:
    cues = clip_cues(words(("before", 9.5), ("one", 10.2), ("two", 10.8), ("after", 20.1)), [(10.0, 20.0)])
    assert cues == [Cue(0.2, 1.2, ("one two",))]


def test_a_word_running_past_the_clip_end_is_cut_at_it() -> None:
    assert clip_cues([Word("last", 19.8, 20.6)], [(10.0, 20.0)]) == [Cue(9.8, 10.0, ("last",))]


def test_several_ranges_play_one_after_the_other() -> None:
    said = words(("first", 10.5), ("gap", 15.0), ("second", 30.5))
    cues = clip_cues(said, [(10.0, 12.0), (30.0, 33.0)])
    assert cues == [Cue(0.5, 0.9, ("first",)), Cue(2.5, 2.9, ("second",))]  # 2 s of the first range, then 0.5 s
    assert all(cue.end <= 5.0 for cue in cues)


def test_a_cue_never_spans_two_ranges() -> None:
    cues = clip_cues(words(("a", 11.5), ("b", 30.0)), [(10.0, 12.0), (30.0, 31.0)])
    assert [cue.lines for cue in cues] == [("a",), ("b",)]


def test_lines_hold_at_most_42_characters_and_cues_two_lines() -> None:
    said = [Word(f"word{n:02d}", 0.3 * n, 0.3 * n + 0.25) for n in range(40)]
    cues = clip_cues(said, [(0.0, 60.0)])
    assert all(len(cue.lines) <= CUE_LINES and all(len(line) <= LINE_CHARS for line in cue.lines) for cue in cues)
    assert [w for cue in cues for line in cue.lines for w in line.split()] == [w.text for w in said]
    assert cues[0].lines == ("word00 word01 word02 word03 word04 word05", "word06 word07 word08 word09 word10 word11")
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))


def test_a_word_longer_than_a_line_gets_a_line_of_its_own() -> None:
    long = "x" * 50
    assert clip_cues(words(("a", 1.0), (long, 1.5), ("b", 2.0)), [(0.0, 5.0)])[0].lines == ("a", long)


def test_a_long_silence_starts_a_new_cue() -> None:
    cues = clip_cues(words(("before", 1.0), ("after", 4.0)), [(0.0, 10.0)])
    assert [cue.lines for cue in cues] == [("before",), ("after",)]


def test_filler_words_stay_unless_they_were_removed_from_the_clip() -> None:
    said = [Word("so", 1.0, 1.2), Word("um", 1.3, 1.5, filler=True), Word("yes", 1.6, 1.9)]
    assert clip_cues(said, [(0.0, 5.0)])[0].lines == ("so um yes",)
    assert clip_cues(said, [(0.0, 5.0)], keep_fillers=False)[0].lines == ("so yes",)


# -- the files -------------------------------------------------------------------------------------


def test_srt_numbers_its_cues_with_comma_milliseconds() -> None:
    cues = [Cue(0.5, 1.7, ("hello", "world")), Cue(3661.25, 3662.0, ("later",))]
    assert to_srt(cues) == (
        "1\n00:00:00,500 --> 00:00:01,700\nhello\nworld\n\n2\n01:01:01,250 --> 01:01:02,000\nlater\n\n"
    )


def test_vtt_has_its_header_dot_milliseconds_and_escaped_text() -> None:
    cues = [Cue(0.5, 1.7, ("<b>bold</b> & -->",))]
    assert to_vtt(cues) == "WEBVTT\n\n00:00:00.500 --> 00:00:01.700\n&lt;b&gt;bold&lt;/b&gt; &amp; --&gt;\n\n"


def test_no_words_make_files_with_no_cues() -> None:
    assert to_vtt(clip_cues([], [(0.0, 1.0)])) == "WEBVTT\n\n" and to_srt([]) == ""
