"""Where each clip file goes: one safe object name per clip, whatever ids OpusClip sends. Pure."""

from __future__ import annotations

import pytest

from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.manifest import clip_file_stem, clip_object_name

SOURCE = StorageObject(bucket="videos", name="talk.mp4", generation=1, size=10)


def name_of(curation_id: str, clip_id: str | None = None) -> str:
    clip = {"id": clip_id or f"P1.{curation_id}", "projectId": "P1", "curationId": curation_id}
    return clip_object_name(SOURCE, clip, 0)


def test_a_plain_curation_id_names_its_file_as_it_is() -> None:
    assert name_of("CU_1") == "talk.mp4/clips/CU_1.mp4"


def test_ids_that_slug_alike_get_different_files() -> None:
    names = {name_of(ident) for ident in ("CU/1", "CU_1", "CU?1", "CU 1", "CU\n1")}
    assert len(names) == 5


@pytest.mark.parametrize("ident", ["..", ".", "...", ".hidden", "../../etc", "", "/", "CU/../x"])
def test_no_file_is_dot_or_dot_dot_or_hidden(ident: str) -> None:
    stem = clip_file_stem(ident)
    assert stem not in (".", "..") and not stem.startswith(".") and "/" not in stem and stem


def test_an_id_that_looks_hashed_cannot_take_another_ids_file() -> None:
    hashed = clip_file_stem("CU/1")
    assert clip_file_stem(hashed) != hashed


def test_a_long_id_gives_a_bounded_name_that_still_differs() -> None:
    first, second = clip_file_stem("x" * 500 + "a"), clip_file_stem("x" * 500 + "b")
    assert first != second and len(first) < 120


def test_two_clips_with_one_curation_id_but_different_ids_get_different_files() -> None:
    assert name_of("CU1") == "talk.mp4/clips/CU1.mp4"
    assert name_of("CU1", clip_id="P1.CU1-copy") != name_of("CU1")
