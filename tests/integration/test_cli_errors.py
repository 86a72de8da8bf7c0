"""Every error of opus-pipeline is one line saying what to do, also without credentials or emulators."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opus_local.emulators import free_port


def opus_pipeline(home: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI as a user without Google credentials runs it: an empty HOME, no emulators, no GCE metadata server."""
    bare = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "NO_GCE_CHECK": "true",  # otherwise google.auth probes the metadata server for seconds
        "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}",
        "GCE_METADATA_IP": f"127.0.0.1:{free_port()}",
    }
    command = [sys.executable, "-m", "opus_pipeline.cli", *argv]
    return subprocess.run(command, env={**bare, **env}, capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("opus-pipeline: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


class _RefusingTokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    """An OAuth token endpoint on loopback that refuses every grant, as Google does for a revoked key."""
    server = HTTPServer(("127.0.0.1", 0), _RefusingTokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()
    thread.join(timeout=10)


def test_without_credentials_it_says_how_to_log_in(tmp_path: Path) -> None:
    result = opus_pipeline(tmp_path, "status", "gs://videos", "--state-bucket", "state")
    assert_one_line(result, "gcloud auth application-default login", "STORAGE_EMULATOR_HOST")


def test_an_unreadable_credentials_file_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text("{not json")
    result = opus_pipeline(tmp_path, "status", "gs://videos", GOOGLE_APPLICATION_CREDENTIALS=str(key))
    assert_one_line(result, "gcloud auth application-default login")


def test_refused_credentials_say_to_log_in_again(tmp_path: Path, token_endpoint: str) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = tmp_path / "key.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "1",
                "private_key": private_key.decode(),
                "client_email": "cli@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_endpoint,
            }
        )
    )
    result = opus_pipeline(
        tmp_path, "status", "gs://videos", "--state-bucket", "s", GOOGLE_APPLICATION_CREDENTIALS=str(key)
    )
    assert_one_line(result, "refused your credentials", "invalid_grant", "gcloud auth application-default login")


@pytest.mark.parametrize("argv", [["status", "gs://videos", "--state-bucket", "s"], ["retry", "gs://videos/talk.mp4"]])
def test_an_emulator_that_is_not_running_is_named_at_once(tmp_path: Path, argv: list[str]) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    result = opus_pipeline(tmp_path, *argv, STORAGE_EMULATOR_HOST=host)
    assert_one_line(result, f"STORAGE_EMULATOR_HOST={host}", "make up")


def test_a_usage_error_is_one_line(tmp_path: Path) -> None:
    assert_one_line(opus_pipeline(tmp_path, "status"), "required: path", "opus-pipeline status --help")
