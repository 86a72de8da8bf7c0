"""``make up`` / ``make down``: the local stack kept running in the background, for the CLI to use.

``up`` starts ``serve`` as a detached process (a session of its own: closing the terminal does not
stop it), waits until the stack is ready, and prints the ``export`` lines that point
``opus-pipeline`` at it as at Google Cloud (``eval "$(make -s up)"`` applies them). ``serve`` runs
the local stack (see ``stack.py``) until SIGTERM. ``down`` stops ``serve``, which stops the stack;
any recorded process still there after that is killed by its PID, and nothing else is touched.
Each ``up`` starts from empty buckets and topics.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .stack import OUTPUT_BUCKET, PROJECT, SOURCE_BUCKET, STATE_BUCKET, LocalStack

READY_SECONDS = 180
STOP_SECONDS = 60


def _paths(root: Path) -> tuple[Path, Path]:
    """The pid file (every process ``up`` started, with its start time) and the exports, written when ready."""
    return root / "pids.json", root / "env.sh"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (None if gone or a zombie): a PID alone may be reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _recorded(pids: Path) -> list[tuple[int, int]]:
    """The (pid, start time) pairs of the pid file that still name the processes that were started."""
    if not pids.exists():
        return []
    record = json.loads(pids.read_text())
    return [(pid, start) for pid, start in [record["serve"], *record["stack"]] if _start_time(pid) == start]


def _write_pids(pids: Path, serve: int, stack: list[int]) -> None:
    entry = [serve, _start_time(serve)]
    pids.write_text(json.dumps({"serve": entry, "stack": [[pid, _start_time(pid)] for pid in stack]}))


def serve(root: Path) -> int:
    """Run the stack until SIGTERM, SIGINT or SIGHUP, then stop every process of it."""
    pids, ready = _paths(root)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        with LocalStack(root / "stack") as stack:
            _write_pids(pids, os.getpid(), stack.pids())
            exports = {
                "STORAGE_EMULATOR_HOST": stack.env["STORAGE_EMULATOR_HOST"],
                "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "STATE_BUCKET": STATE_BUCKET,
                "CLIP_REQUESTS_TOPIC": stack.topic("clip-requests"),
                "SOURCE_BUCKET": SOURCE_BUCKET,
                "OUTPUT_BUCKET": OUTPUT_BUCKET,
                "CLIP_RESULTS_TOPIC": stack.topic("clip-results"),
            }
            ready.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()))
            while True:
                time.sleep(3600)
    finally:
        ready.unlink(missing_ok=True)


def up(root: Path) -> int:
    """Start ``serve`` detached (unless it runs already) and print its ``export`` lines."""
    pids, ready = _paths(root)
    if _recorded(pids) and ready.exists():
        print(f"the local stack is running already (stop it with `make down`); logs in {root}", file=sys.stderr)
        print(ready.read_text(), end="")
        return 0
    down(root, quiet=True)  # whatever a crashed run left
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    with open(root / "serve.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "opus_local.background", "serve", "--workdir", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _write_pids(pids, process.pid, [])
    deadline = time.monotonic() + READY_SECONDS
    try:
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                down(root, quiet=True)
                print(f"the local stack did not start; see {root / 'serve.log'}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        down(root, quiet=True)
        return 130
    print(ready.read_text(), end="")
    print(
        f"local stack running (PID {process.pid}); logs in {root / 'stack' / 'logs'}; "
        'apply the lines above with `eval "$(make -s up)"` or `source ' + str(ready) + "`; stop with `make down`",
        file=sys.stderr,
    )
    return 0


def down(root: Path, quiet: bool = False) -> int:
    """Stop ``serve`` (which stops its stack); then kill, by PID, any recorded process left."""
    pids, ready = _paths(root)
    alive = _recorded(pids)
    if alive:
        serve_pid, serve_start = json.loads(pids.read_text())["serve"]
        if _start_time(serve_pid) == serve_start:
            os.kill(serve_pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while _recorded(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid, start in _recorded(pids):  # each was started as the leader of its own process group
            if _start_time(pid) == start:
                os.killpg(pid, signal.SIGKILL)
    pids.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    if not quiet:
        print(f"stopped the local stack ({len(alive)} processes)" if alive else "no local stack was running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opus_local.background", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "serve"))
    parser.add_argument("--workdir", default=".demo/up")
    args = parser.parse_args(argv)
    root = Path(args.workdir).resolve()
    return {"up": up, "down": down, "serve": serve}[args.action](root)


if __name__ == "__main__":
    sys.exit(main())
