"""The deployed functions install exactly the library's runtime dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_ONLY = {"tqdm"}  # the CLI's progress bar: the functions never import it


def requirement_lines(text: str) -> set[str]:
    return {line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()}


def test_functions_requirements_are_pyprojects_runtime_dependencies() -> None:
    """Cloud Functions builds from functions/requirements.txt; pyproject.toml is where they are declared."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {req for req in declared if req.split(">")[0].split("=")[0].split("<")[0].strip() not in CLI_ONLY}
    deployed = requirement_lines((ROOT / "functions" / "requirements.txt").read_text())
    assert deployed == wanted, "regenerate functions/requirements.txt from pyproject.toml (make requirements)"
