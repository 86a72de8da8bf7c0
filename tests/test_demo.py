"""`make demo`'s program, run as a user runs it: the whole event path on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_creates_one_project_from_the_exact_bytes_and_leaves_nothing_running(tmp_path: Path) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "opus_local.demo",
            "--video",
            str(video),
            "--workdir",
            str(tmp_path / "demo"),
            "--summary",
            str(summary_path),
            "--timeout",
            "180",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "project-created" and summary["projectId"]
    assert summary["receivedMd5"] == hashlib.md5(video.read_bytes()).hexdigest()
    assert summary["projects"] == 1
    assert not [pid for pid in summary["pids"] if alive(pid)]
    assert "final status: project-created" in result.stdout
    for function in ("on_video_uploaded", "create_clip_project"):
        log = (tmp_path / "demo" / "stack" / "logs" / f"{function}.log").read_text()
        assert '"WARNING"' not in log and '"ERROR"' not in log and "Traceback" not in log, log[-2000:]
