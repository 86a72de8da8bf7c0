"""docs/configuration.md names every variable the functions read."""

from __future__ import annotations

from pathlib import Path

from opus_pipeline import config

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_every_variable_the_functions_read_is_on_the_configuration_page() -> None:
    assert [name for name in config.ENV_VARS if f"`{name}`" not in PAGE] == []
