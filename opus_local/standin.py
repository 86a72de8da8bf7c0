"""A local stand-in for OpusClip that speaks the documented upload protocol strictly.

Real HTTP on loopback: ``POST /api/upload-links``, the XML resumable session (start → 201 +
Location; chunk PUTs with Content-Range; 308 + Range; status query; final 200), and
``POST/GET /api/clip-projects``. Uploaded bytes go to disk, never whole into memory.

A control API under ``/_standin/`` injects faults, sets the quota, and reports every call so
tests can assert "exactly one". Run it alone with ``python -m opus_local.standin --port N``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import clip_schema

GRANULARITY = 256 * 1024
PIECE = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass
class Upload:
    upload_id: str
    path: Path
    session: str | None = None
    total: int | None = None
    committed: int = 0
    complete: bool = False
    _md5: str | None = None

    @property
    def md5(self) -> str | None:
        """Of the complete upload; hashed when first asked, so that no upload waits for it."""
        if self.complete and self._md5 is None:
            self._md5 = _md5(self.path)
        return self._md5

    def summary(self) -> dict[str, Any]:
        return {
            "uploadId": self.upload_id,
            "total": self.total,
            "committed": self.committed,
            "complete": self.complete,
            "md5": self.md5,
            "sessionStarted": self.session is not None,
        }


@dataclass
class Fault:
    """One injected misbehaviour for calls to ``endpoint`` (upload-links, start, chunk, query,
    clip-projects): after ``skip`` matching calls, the next ``times`` calls get it."""

    endpoint: str
    kind: str  # status | drop | keep_fewer | expire | slow
    times: int = 1
    skip: int = 0
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    fewer_bytes: int = GRANULARITY
    seconds: float = 0.0


class StandIn:
    """State of the stand-in; thread-safe through one lock."""

    def __init__(self, api_key: str, storage_dir: Path, total_amount: int = 100 * 1024**3) -> None:
        self.api_key = api_key
        self.storage_dir = storage_dir
        self.lock = threading.Lock()
        self.total_amount = total_amount
        self.use_amount = 0
        self.reset()

    def reset(self) -> None:
        """Forget every call, fault, project and upload (and delete the uploaded bytes)."""
        with self.lock:
            for upload in getattr(self, "uploads", {}).values():
                upload.path.unlink(missing_ok=True)
            self.uploads: dict[str, Upload] = {}
            self.sessions: dict[str, str] = {}
            self.projects: dict[str, dict[str, Any]] = {}
            self.faults: list[Fault] = []
            self.calls: Counter[str] = Counter()
            self.bytes_received = 0

    def take_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            self.calls[endpoint] += 1
            for fault in self.faults:
                if fault.endpoint != endpoint:
                    continue
                if fault.skip:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "bytesReceived": self.bytes_received,
                "uploads": {k: u.summary() for k, u in self.uploads.items()},
                "projects": dict(self.projects),
                "pendingFaults": len(self.faults),
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own logs
        return

    @property
    def state(self) -> StandIn:
        return self.server.state

    # -- helpers ---------------------------------------------------------------------------

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def _drain(self, count: int) -> int:
        left = count
        while left:
            piece = self.rfile.read(min(PIECE, left))
            if not piece:
                break
            left -= len(piece)
        return count - left

    def _json_body(self) -> Any:
        raw = self.rfile.read(self._length()) if self._length() else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.api_key}":
            return True
        self._send(401, {"message": "Unauthorized"})
        return False

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _apply_fault(self, fault: Fault | None, body_length: int = 0) -> bool:
        """Answer with ``fault`` if it ends the call; return True when the call was answered."""
        if fault is None:
            return False
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "status":
            self._drain(body_length)
            self._send(fault.status, fault.body, fault.headers)
            return True
        return False

    # -- routing ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api/upload-links":
            return self._upload_link()
        if path == "/api/clip-projects":
            return self._create_project()
        if path.startswith("/upload/"):
            return self._start_session(path)
        if path.startswith("/_standin/"):
            return self._control(path)
        self._send(404, {"message": "not found"})

    def do_PUT(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/session/"):
            return self._put(path[len("/session/") :])
        self._send(404, {"message": "not found"})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_standin/stats":
            return self._send(200, self.state.stats())
        if path.startswith("/api/clip-projects/"):
            if not self._authorized():
                return None
            project = self.state.projects.get(path.rsplit("/", 1)[1])
            return self._send(200, project) if project else self._send(404, {"message": "project not found"})
        self._send(404, {"message": "not found"})

    # -- OpusClip API ----------------------------------------------------------------------

    def _upload_link(self) -> None:
        body = self._json_body()
        if self._apply_fault(self.state.take_fault("upload-links")) or not self._authorized():
            return
        if body != {"video": {"usecase": "LocalUpload"}}:
            return self._send(400, {"message": 'body must be {"video": {"usecase": "LocalUpload"}}'})
        upload_id = "up_" + secrets.token_hex(8)
        with self.state.lock:
            self.state.uploads[upload_id] = Upload(upload_id, self.state.storage_dir / upload_id)
            use, total = self.state.use_amount, self.state.total_amount
        self._send(
            200,
            {
                "url": f"{self._base()}/upload/{upload_id}/google-upload",
                "uploadId": upload_id,
                "dnsUrl": self._base(),
                "useAmount": use,
                "totalAmount": total,
            },
        )

    def _start_session(self, path: str) -> None:
        parts = path.split("/")
        length = self._length()
        if self._apply_fault(self.state.take_fault("start"), length):
            return
        upload = self.state.uploads.get(parts[2]) if len(parts) == 4 else None
        if upload is None:
            return self._send(404, {"message": "unknown upload url"})
        if self.headers.get("x-goog-resumable") != "start" or length != 0:
            self._drain(length)
            return self._send(400, {"message": "expected x-goog-resumable: start and an empty body"})
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            upload.session = token
            self.state.sessions[token] = upload.upload_id
        upload.path.touch()
        self._send(201, None, {"Location": f"{self._base()}/session/{token}", "x-goog-resumable-upload-id": token})

    def _create_project(self) -> None:
        body = self._json_body()
        if self._apply_fault(self.state.take_fault("clip-projects")) or not self._authorized():
            return
        problems = clip_schema.problems(body)
        if problems:
            return self._send(400, {"message": problems})
        upload_id = self.headers.get("x-opus-upload-id")
        upload = self.state.uploads.get(upload_id or "")
        if upload_id != body["videoUrl"] or upload is None or not upload.complete:
            return self._send(400, {"message": "x-opus-upload-id must equal videoUrl and name a completed upload"})
        project_id = "P" + secrets.token_hex(6)
        project = {
            "id": project_id,
            "projectId": project_id,
            "sourcePlatform": "UPLOADED",
            "sourceId": upload_id,
            "stage": "QUEUED",
            "curationPref": body.get("curationPref", {}),
            "isDeleted": False,
        }
        with self.state.lock:
            self.state.projects[project_id] = {**project, "request": body}
        self._send(201, project)

    # -- resumable session -----------------------------------------------------------------

    def _session(self, token: str) -> Upload | None:
        upload_id = self.state.sessions.get(token)
        return self.state.uploads.get(upload_id) if upload_id else None

    def _progress(self, upload: Upload) -> None:
        if upload.complete:
            return self._send(200, {"name": upload.upload_id, "size": str(upload.total)})
        headers = {"Range": f"bytes=0-{upload.committed - 1}"} if upload.committed else {}
        self._send(308, None, headers)

    def _put(self, token: str) -> None:
        length = self._length()
        match = _CONTENT_RANGE.match(self.headers.get("Content-Range", ""))
        endpoint = "query" if match and match.group(1) is None else "chunk"
        fault = self.state.take_fault(endpoint)
        if self._apply_fault(fault, length):
            return
        upload = self._session(token)
        if fault is not None and fault.kind == "expire" and upload is not None:
            with self.state.lock:
                self.state.sessions.pop(token, None)
            upload = None
        if upload is None:
            self._drain(length)
            return self._send(404, {"message": "no such upload session"})
        if not match:
            self._drain(length)
            return self._send(400, {"message": "Content-Range must be 'bytes A-B/TOTAL' or 'bytes */TOTAL'"})
        total = None if match.group(3) == "*" else int(match.group(3))
        if total is not None and upload.total is not None and total != upload.total:
            self._drain(length)
            return self._send(400, {"message": "the total size changed"})
        if endpoint == "query":
            self._drain(length)
            return self._progress(upload)
        self._chunk(upload, int(match.group(1)), int(match.group(2)), total, length, fault)

    def _chunk(
        self, upload: Upload, first: int, last: int, total: int | None, length: int, fault: Fault | None
    ) -> None:
        size = last - first + 1
        final = total is not None and last + 1 == total
        problem = None
        if upload.complete:
            problem = "the upload is already complete"
        elif size != length or size <= 0:
            problem = f"Content-Range names {size} bytes, the body has {length}"
        elif first != upload.committed:
            problem = f"the chunk starts at {first}, the session has committed {upload.committed}"
        elif not final and size % GRANULARITY:
            problem = "a non-final chunk must be a multiple of 256 KiB"
        elif total is not None and last >= total:
            problem = "the chunk ends beyond the total"
        if problem:
            self._drain(length)
            return self._send(400, {"message": problem})
        drop_at = fault.after_bytes if fault and fault.kind == "drop" else None
        received = self._receive(upload, first, size, drop_at)
        with self.state.lock:
            self.state.bytes_received += received
        if drop_at is not None or received != size:  # cut short: nothing of it is kept
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        keep = size
        if fault and fault.kind == "keep_fewer" and not final:
            keep = max(0, (size - fault.fewer_bytes) // GRANULARITY * GRANULARITY)
        with self.state.lock:
            upload.committed = first + keep
            upload.total = total if total is not None else upload.total
            if final and keep == size:
                upload.complete = True
        if upload.complete:
            with self.state.lock:
                self.state.use_amount += upload.total or 0
        self._progress(upload)

    def _receive(self, upload: Upload, offset: int, size: int, drop_at: int | None) -> int:
        """Write the body at ``offset`` piece by piece; stop early for a drop fault."""
        limit = size if drop_at is None else min(size, drop_at)
        done = 0
        buffer = memoryview(bytearray(PIECE))  # reused: the stand-in must not be what a benchmark measures
        with open(upload.path, "r+b", buffering=0) as out:
            out.seek(offset)
            while done < limit:
                count = self.rfile.readinto(buffer[: min(PIECE, limit - done)])
                if not count:
                    break
                if drop_at is None:
                    out.write(buffer[:count])
                done += count
            if drop_at is None:
                out.truncate(offset + done)
        return done

    # -- control ---------------------------------------------------------------------------

    def _control(self, path: str) -> None:
        body = self._json_body() or {}
        if path == "/_standin/faults":
            faults = [Fault(**spec) for spec in body.get("faults", [])]
            with self.state.lock:
                if body.get("clear"):
                    self.state.faults.clear()
                self.state.faults.extend(faults)
            return self._send(200, {"pending": len(self.state.faults)})
        if path == "/_standin/quota":
            with self.state.lock:
                self.state.total_amount = int(body.get("totalAmount", self.state.total_amount))
                self.state.use_amount = int(body.get("useAmount", self.state.use_amount))
            return self._send(200, {})
        if path == "/_standin/reset":
            self.state.reset()
            return self._send(200, {})
        self._send(404, {"message": "unknown control path"})


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as source:
        while piece := source.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StandIn


def serve(host: str, port: int, api_key: str, storage_dir: Path) -> _Server:
    """Create the server (bound, not yet serving); ``serve_forever`` it on a thread or here."""
    server = _Server((host, port), Handler)
    server.state = StandIn(api_key, storage_dir)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="OpusClip stand-in (dev only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    # The key comes from the environment, not argv: a process list shows arguments to everyone.
    parser.add_argument("--api-key-env", default="OPUS_STANDIN_API_KEY", help="variable holding the Bearer key")
    parser.add_argument("--storage-dir", type=Path, default=None)
    args = parser.parse_args()
    storage = args.storage_dir or Path(tempfile.mkdtemp(prefix="opus-standin-"))
    storage.mkdir(parents=True, exist_ok=True)
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        parser.error(f"set {args.api_key_env} to the API key the stand-in accepts")
    server = serve(args.host, args.port, api_key, storage)
    print(f"OpusClip stand-in on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
