"""The benchmark measures the code as it is: what it measures still runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opus_local.bench import ENTRY_POINT_IMPORTS, LATER_IMPORT, import_seconds

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINT_IMPORTS))
def test_each_entry_points_cold_import_statement_runs_in_a_fresh_interpreter(entry_point: str) -> None:
    entry, bare = ENTRY_POINT_IMPORTS[entry_point]
    assert import_seconds(entry) > 0.0
    assert import_seconds(bare) > 0.0


def test_a_measured_statement_that_fails_says_what_failed() -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        import_seconds("1 / 0")


def test_ingests_later_import_runs_in_a_fresh_interpreter() -> None:
    assert import_seconds(LATER_IMPORT) > 0.0


def test_a_small_streaming_bench_runs_to_its_ratios() -> None:
    """The whole streaming bench on one 16 MiB video, one round: every measurement it prints still
    runs against the pipeline as it is (it once fed ingest random bytes, which ingest now refuses)."""
    args = ["--size", "16", "--link-size", "16", "--clip-size", "--repeat", "1", "--link-repeat", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "opus_local.bench", *args, "--import-runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ingest÷curl throughput" in run.stdout
    assert "modelled link" in run.stdout and "in 1 requests" in run.stdout
