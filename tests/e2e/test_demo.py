"""`make demo`'s program, run as a user runs it: the whole event path on this machine."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from opus_local.videos import unique_video

from support import ROOT, alive, fresh_environment, processes_mentioning


def demo_command(tmp_path: Path, *args: str) -> list[str]:
    """The demo as a user runs it, with its work files and summary in ``tmp_path``."""
    workdir, summary = str(tmp_path / "demo"), str(tmp_path / "summary.json")
    return [sys.executable, "-m", "opus_local.demo", "--workdir", workdir, "--summary", summary, *args]


def test_demo_creates_one_project_from_the_exact_bytes_and_leaves_nothing_running(tmp_path: Path) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(unique_video(3 * 1024 * 1024 + 17))
    summary_path = tmp_path / "summary.json"

    result = subprocess.run(
        demo_command(tmp_path, "--video", str(video), "--timeout", "180"),
        cwd=ROOT,
        env=fresh_environment(),
        capture_output=True,
        text=True,
        timeout=400,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "clips-ready" and summary["projectId"]
    assert summary["receivedMd5"] == hashlib.md5(video.read_bytes()).hexdigest()
    assert summary["projects"] == 1
    assert not [pid for pid in summary["pids"] if alive(pid)]
    assert not processes_mentioning(str(tmp_path))
    assert "final status: clips-ready" in result.stdout
    assert summary["clips"] and all(clip["copied"] for clip in summary["clips"])
    assert all(clip["gcsUri"] in result.stdout for clip in summary["clips"])
    for function in ("on_video_uploaded", "create_clip_project", "on_project_concluded"):
        log = (tmp_path / "demo" / "stack" / "logs" / f"{function}.log").read_text()
        assert '"WARNING"' not in log and '"ERROR"' not in log and "Traceback" not in log, log[-2000:]


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    demo = subprocess.Popen(
        demo_command(tmp_path, "--sample-bytes", "50000000"),
        cwd=ROOT,
        env=fresh_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not summary_path.exists() and time.monotonic() < deadline and demo.poll() is None:
        time.sleep(0.2)
    pids = json.loads(summary_path.read_text())["pids"]
    assert len(pids) == 8 and all(alive(pid) for pid in pids)

    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=60)

    assert demo.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert not [pid for pid in pids if alive(pid)]
    assert not processes_mentioning(str(tmp_path))  # no grandchild either (the emulator's java)
