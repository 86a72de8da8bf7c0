"""The burst's and the soak's workdir: emptied before each run, and only when it is theirs."""

from __future__ import annotations

import pytest

from opus_local.workdir import fresh_workdir


def test_a_harness_empties_a_workdir_it_marked(tmp_path) -> None:
    workdir = tmp_path / "burst"
    fresh_workdir(workdir, "burst")
    (workdir / "gcs").mkdir()

    fresh_workdir(workdir, "burst")

    assert sorted(p.name for p in workdir.iterdir()) == [".opus-burst"]


@pytest.mark.parametrize("harness", ["burst", "soak"])
def test_a_harness_empties_what_an_earlier_local_stack_left_there(tmp_path, harness: str) -> None:
    for folder in ("gcs", "logs", "standin"):
        (tmp_path / folder).mkdir()

    fresh_workdir(tmp_path, harness)

    assert sorted(p.name for p in tmp_path.iterdir()) == [f".opus-{harness}"]


def test_a_harness_refuses_to_empty_a_folder_it_did_not_mark(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    with pytest.raises(SystemExit, match="not a burst's workdir"):
        fresh_workdir(tmp_path, "burst")

    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_harness_never_empties_another_harness_workdir(tmp_path) -> None:
    fresh_workdir(tmp_path, "burst")

    with pytest.raises(SystemExit, match="not a soak's workdir"):
        fresh_workdir(tmp_path, "soak")

    assert (tmp_path / ".opus-burst").exists()
