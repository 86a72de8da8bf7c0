"""`make up` / `make down`: the background stack, driven by opus-pipeline as a user drives Google Cloud."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opus_local.videos import unique_video

from support import ROOT, fresh_environment, processes_mentioning


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for a parent that will never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def background(workdir: Path, action: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "opus_local.background", action, "--workdir", str(workdir)]
    return subprocess.run(command, cwd=ROOT, env=fresh_environment(), capture_output=True, text=True, timeout=240)


def exported(stdout: str) -> dict[str, str]:
    """The variables of ``export NAME=value`` lines (values are plain here: no quoting to undo)."""
    lines = [line.removeprefix("export ") for line in stdout.splitlines() if line.startswith("export ")]
    return dict(line.split("=", 1) for line in lines)


def test_a_cli_upload_reaches_project_created_and_down_leaves_no_process(tmp_path: Path) -> None:
    workdir = tmp_path / "up"
    started = background(workdir, "up")
    assert started.returncode == 0, started.stderr
    record = json.loads((workdir / "pids.json").read_text())
    pids = [record["serve"][0]] + [pid for pid, _ in record["stack"]]
    try:
        variables = exported(started.stdout)
        assert set(variables) >= {
            "STORAGE_EMULATOR_HOST",
            "PUBSUB_EMULATOR_HOST",
            "STATE_BUCKET",
            "CLIP_REQUESTS_TOPIC",
            "GOOGLE_CLOUD_PROJECT",
            "SOURCE_BUCKET",
        }
        env = {**fresh_environment(), **variables}
        video = tmp_path / "talk.mp4"
        video.write_bytes(unique_video(1024 * 1024 + 3))
        cli = [sys.executable, "-m", "opus_pipeline.cli"]
        source = f"gs://{variables['SOURCE_BUCKET']}"
        upload = subprocess.run(
            [*cli, "upload", str(video), f"{source}/", "--genre", "Podcast"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert upload.returncode == 0, upload.stderr

        watch = subprocess.run(
            [*cli, "status", source, "--watch", "--interval", "0.3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

        assert watch.returncode == 0, watch.stderr
        last_row = watch.stdout.strip().splitlines()[-1].split()
        assert last_row[:2] == [f"{source}/talk.mp4", "clips-ready"]
        assert all(running(pid) for pid in pids)
    finally:
        stopped = background(workdir, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in pids if running(pid)] == []
    assert not processes_mentioning(str(tmp_path))
    assert not (workdir / "pids.json").exists()
