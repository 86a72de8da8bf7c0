"""The benchmark measures the code as it is: its measured statements still run."""

from __future__ import annotations

import pytest

from opus_local.bench import ENTRY_POINT_IMPORTS, LATER_IMPORT, import_seconds


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
