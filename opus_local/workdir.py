"""A harness's working folder (the burst's, the soak's), emptied before each run, and only when it is one.

fake-gcs-server keeps its buckets on disk: a run interrupted earlier (or simply an earlier run) left
them in the folder, and the next run's buckets would exist already (a 409 on ``create_bucket``). A
folder holding anything but the harness's own mark and what a local stack leaves is not the
harness's to empty, whatever ``--workdir`` names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

STACK_FOLDERS = frozenset({"gcs", "logs", "standin", "contention"})  # what a ``LocalStack`` leaves


def fresh_workdir(workdir: Path, harness: str) -> None:
    """An empty ``workdir`` marked as ``harness``'s (``.opus-<harness>``)."""
    mark = f".opus-{harness}"
    found = {entry.name for entry in workdir.iterdir()} if workdir.exists() else set()
    if not found <= STACK_FOLDERS | {mark}:
        raise SystemExit(f"{workdir} is not empty and not a {harness}'s workdir; name another with --workdir")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / mark).touch()
