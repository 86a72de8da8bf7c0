"""A local stand-in for OpusClip that speaks the documented upload protocol strictly.

Real HTTP on loopback: ``POST /api/upload-links``, the XML resumable session (start → 201 +
Location; chunk PUTs with Content-Range; 308 + Range; status query; final 200), and
``POST/GET /api/clip-projects``. Uploaded bytes go to disk, never whole into memory.

What OpusClip does after creation is simulated too, so that the pipeline's poller, webhook receiver
and clip downloader meet the same shapes and limits as in production: a project walks through its
stages to COMPLETE (or STALLED) over ``projectSeconds``; ``GET /api/exportable-clips`` pages its
clips; the clips' files are served under ``/media/``; WEBHOOK conclusion actions are POSTed, signed
as OpusClip signs them; and, when configured, the per-key rate limit and the in-flight-project cap
answer 429 as OpusClip's "Limitations" page describes.

A control API under ``/_standin/`` injects faults, sets the quota and the configuration, stalls
projects, and reports every call so tests can assert "exactly one". Run it alone with
``python -m opus_local.standin --port N``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import requests

from . import clip_schema

GRANULARITY = 256 * 1024
PIECE = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")

# A project's working stages, in order, and their shares of ``projectSeconds``. QUEUED takes half,
# so that a project read back soon after creation is still QUEUED, as the POST answered.
STAGES = ("QUEUED", "IMPORT", "CURATE", "REFINE", "RENDER", "UPLOAD")
STAGE_SHARES = (5, 1, 1, 1, 1, 1)
ORG_ID = "org_StandIn000000001"
USER_ID = "standin|000000000000000000001"
STORAGE_DAYS = 30  # OpusClip keeps a project's files 30 days (the OpenAPI example's storageExpireAt)
MAX_PAGE_SIZE = 100  # OpusClip documents no maximum; the stand-in's own bound, above the 50 clients use
WEBHOOK_TIMEOUT = 10
# The files of one clip, by name suffix: the HD export, the SD preview and the thumbnail.
MEDIA_KINDS = {".mp4": "video/mp4", ".preview.mp4": "video/mp4", ".jpg": "image/jpeg"}
_MEDIA_PATH = re.compile(r"^/media/(P[0-9a-f]+)/(CU[0-9a-f]+)(\.mp4|\.preview\.mp4|\.jpg)$")
_POSITIVE = re.compile(r"^[1-9][0-9]{0,8}$")


def _count(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


DEFAULT_CONFIG: dict[str, Any] = {
    "projectSeconds": 2.0,  # creation → COMPLETE/STALLED
    "clipsPerProject": 3,
    "clipBytes": 4096,  # size of every clip file
    "clipsEnvelope": "array",  # "array" as the OpenAPI shows, "data" for {"data": [...]} as Opus's own tools read
    "scoredClips": "alternate",  # which clips carry the undocumented rank/score/isBonusClip/uriForThumbnail
    "mediaBaseUrl": None,  # where uriForExport points; None: the stand-in itself
    "rateLimitPerMinute": None,  # accepted /api/* calls per key per window; None: no limit
    "rateWindowSeconds": 60,  # the window of that limit: a minute, as OpusClip's, unless a test cannot wait
    "concurrentProjects": None,  # projects neither COMPLETE nor STALLED; None: no cap
}
_CONFIG_CHECKS: dict[str, Callable[[Any], bool]] = {
    "projectSeconds": _seconds,
    "clipsPerProject": _count(0),
    "clipBytes": _count(1),
    "clipsEnvelope": lambda v: v in ("array", "data"),
    "scoredClips": lambda v: v in ("all", "none", "alternate"),
    "mediaBaseUrl": _optional(lambda v: isinstance(v, str) and v.startswith(("http://", "https://"))),
    "rateLimitPerMinute": _optional(_count(1)),
    "rateWindowSeconds": lambda v: _seconds(v) and v > 0,
    "concurrentProjects": _optional(_count(0)),
}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
class Project:
    """A created project. Its stage is computed from the clock when asked, so nothing runs in the
    background to move it; the duration, clip count and clip size are fixed at creation, so that a
    later configuration change does not rewrite a project's past or its files."""

    id: str
    upload_id: str
    request: dict[str, Any]
    created: float
    seconds: float
    clip_count: int
    clip_bytes: int
    stalls: bool = False

    @property
    def ends(self) -> float:
        return self.created + self.seconds

    def stage(self, now: float) -> tuple[str, float]:
        """The stage at ``now`` and when it began."""
        if now >= self.ends:
            return ("STALLED" if self.stalls else "COMPLETE"), self.ends
        unit = self.seconds / sum(STAGE_SHARES)
        since = self.created
        for stage, share in zip(STAGES[:-1], STAGE_SHARES, strict=False):
            if now < since + share * unit:
                return stage, since
            since += share * unit
        return STAGES[-1], since

    def in_flight(self, now: float) -> bool:
        return now < self.ends

    def curation_ids(self) -> list[str]:
        """Stable per project, so that a clip id names the same clip on every page and call."""
        return [
            "CU" + hashlib.sha256(f"{self.id}/{n}".encode()).hexdigest()[:10] for n in range(1, self.clip_count + 1)
        ]

    def representation(self, now: float) -> dict[str, Any]:
        """The ClipProjectRepresentation OpusClip answers, every field the OpenAPI requires."""
        stage, since = self.stage(now)
        done = stage == "COMPLETE"
        return {
            "id": self.id,
            "projectId": self.id,
            "userId": USER_ID,
            "orgId": ORG_ID,
            "isDeleted": False,
            "isPurged": False,
            "sourcePlatform": "UPLOADED",
            "sourceId": self.upload_id,
            "sourceUri": None,
            "labels": [],
            "productTier": "PRO",
            "stage": stage,
            "model": "ClipBasic",
            "error": "the project stalled" if stage == "STALLED" else None,
            "stallCount": 1 if stage == "STALLED" else 0,
            "workerUrl": None,
            "curationPref": self.request.get("curationPref", {}),
            "importPref": self.request.get("importPref", {}),
            "storageSize": self.clip_count * self.clip_bytes if done else 0,
            "storageStatus": "TEMPORARY",
            "storageExpireAt": _iso(self.created + STORAGE_DAYS * 86400),
            "refundStatus": None,
            "createdAt": _iso(self.created),
            "updatedAt": _iso(since),
            "clusterJobId": f"FP.{self.id}:{self.run_id}",
            "cluster": "standin",
            "visibility": "DEFAULT",
            "permissions": ["PROJECT_SHARE", "PROJECT_EDIT", "PROJECT_VIEW"],
            "promptRecommendations": [],
        }

    @property
    def run_id(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y%m%d%H%M%S%f")[:17] + ".FP"

    def clips(self, media_base: str, scored: str) -> list[dict[str, Any]]:
        """The ExportableClips of a COMPLETE project, best first. ``scored`` says which carry the fields
        OpusClip's own tools read but the OpenAPI omits, so that clients are tested with and without them.
        ``timeRanges`` are milliseconds, as the OpenAPI's example suggests despite saying "seconds"."""
        genre = self.request.get("curationPref", {}).get("genre", "Auto")
        finished = _iso(self.ends)
        clips = []
        for rank, curation_id in enumerate(self.curation_ids(), start=1):
            start_ms, duration_ms = 60_000 * rank, 15_000 + 5_000 * rank
            base = f"{media_base}/media/{self.id}/{curation_id}"
            clip = {
                "id": f"{self.id}.{curation_id}",
                "projectId": self.id,
                "runId": self.run_id,
                "curationId": curation_id,
                "orgId": ORG_ID,
                "userId": USER_ID,
                "uriForPreview": f"{base}.preview.mp4",
                "uriForExport": f"{base}.mp4",
                "storageUsed": self.clip_bytes,
                "durationMs": duration_ms,
                "timeRanges": [[start_ms, start_ms + duration_ms]],
                "keywords": ["stand-in", f"clip {rank}"],
                "title": f"Clip {rank} of {self.id}",
                "description": f"The stand-in's clip number {rank} of project {self.id}.",
                "hashtags": "#OpusClip #StandIn",
                "text": f"Transcript of clip {rank}.",
                "genre": genre,
                "subgenre": "general",
                "createdAt": finished,
                "updatedAt": finished,
                "productTier": "PRO",
                "renderPref": {},
            }
            if scored == "all" or (scored == "alternate" and rank % 2):
                clip.update(rank=rank, score=100 - 7 * rank, isBonusClip=False, uriForThumbnail=f"{base}.jpg")
            clips.append(clip)
        return clips


@dataclass
class Fault:
    """One injected misbehaviour for calls to ``endpoint``: after ``skip`` matching calls, the next
    ``times`` calls get it.

    Endpoints and the kinds they honour: upload-links, clip-projects, project-get and
    exportable-clips: status | drop (connection closed, no answer) | slow; start and query: the same;
    chunk: status | drop (cut after ``after_bytes``) | keep_fewer | expire | slow; media: status |
    drop (cut after ``after_bytes`` of the file) | slow; webhook (sent by the stand-in): drop (not
    sent) | slow (sent ``seconds`` late) | duplicate (sent ``copies`` times) | bad_signature."""

    endpoint: str
    kind: str
    times: int = 1
    skip: int = 0
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    fewer_bytes: int = GRANULARITY
    seconds: float = 0.0
    copies: int = 2


class StandIn:
    """State of the stand-in; thread-safe through one lock."""

    def __init__(self, api_key: str, storage_dir: Path, total_amount: int = 100 * 1024**3) -> None:
        self.api_key = api_key
        self.storage_dir = storage_dir
        self.base_url = ""  # set by ``serve`` once the port is bound
        self.lock = threading.Lock()
        self.total_amount = total_amount
        self.use_amount = 0
        self._md5s: dict[tuple[str, int], str] = {}  # derived from the name alone, so it survives resets
        self.reset()

    def reset(self) -> None:
        """Forget every call, fault, project, upload and pending webhook (and delete the uploaded bytes);
        the configuration goes back to its defaults."""
        with self.lock:
            for upload in getattr(self, "uploads", {}).values():
                upload.path.unlink(missing_ok=True)
            for timer in getattr(self, "timers", []):
                timer.cancel()
            self.uploads: dict[str, Upload] = {}
            self.sessions: dict[str, str] = {}
            self.projects: dict[str, Project] = {}
            self.faults: list[Fault] = []
            self.calls: Counter[str] = Counter()
            self.bytes_received = 0
            self.config = dict(DEFAULT_CONFIG)
            self.stall_next = 0
            self.timers: list[threading.Timer] = []
            self.accepted: dict[str, deque[float]] = {}
            self.refused: Counter[str] = Counter()
            self.max_in_flight = 0
            self.downloads: Counter[str] = Counter()
            self.webhooks: list[dict[str, Any]] = []

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

    def configure(self, settings: dict[str, Any]) -> list[str]:
        """Apply ``settings`` all or nothing; the problems found (empty when applied)."""
        problems = [
            f"{key}: unknown setting" if key not in _CONFIG_CHECKS else f"{key}: {value!r} is not allowed"
            for key, value in settings.items()
            if key not in _CONFIG_CHECKS or not _CONFIG_CHECKS[key](value)
        ]
        if not problems:
            with self.lock:
                self.config.update(settings)
        return problems

    def admit(self, key: str) -> int | None:
        """Count one ``/api/*`` call against the rate limit; None when admitted, else the seconds until
        a slot frees (the Retry-After).

        A sliding-window log, not a token bucket: OpusClip states its limit as "N requests per minute",
        and a log enforces exactly that, in every window, with no burst allowance a bucket would have
        to guess. A client that keeps to it keeps to any coarser implementation too. Refused calls
        take no slot, so a client that waits Retry-After is admitted."""
        with self.lock:
            limit, window = self.config["rateLimitPerMinute"], self.config["rateWindowSeconds"]
            if limit is None:
                return None
            now = time.monotonic()
            stamps = self.accepted.setdefault(key, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            if len(stamps) < limit:
                stamps.append(now)
                return None
            self.refused["rate"] += 1
            return max(1, math.ceil(stamps[0] + window - now))

    def create_project(self, upload_id: str, request: dict[str, Any]) -> Project | None:
        """A new project, or None when the in-flight cap refuses it."""
        with self.lock:
            now = time.time()
            in_flight = sum(p.in_flight(now) for p in self.projects.values())
            cap = self.config["concurrentProjects"]
            if cap is not None and in_flight >= cap:
                self.refused["concurrent"] += 1
                return None
            project = Project(
                id="P" + secrets.token_hex(6),
                upload_id=upload_id,
                request=request,
                created=now,
                seconds=float(self.config["projectSeconds"]),
                clip_count=self.config["clipsPerProject"],
                clip_bytes=self.config["clipBytes"],
                stalls=self.stall_next > 0,
            )
            self.stall_next -= project.stalls
            self.projects[project.id] = project
            self.max_in_flight = max(self.max_in_flight, in_flight + 1)
            for action in request.get("conclusionActions", []):
                if action["type"] == "WEBHOOK":
                    timer = threading.Timer(project.ends - now, self._conclude, (project, action))
                    timer.daemon = True
                    self.timers.append(timer)
                    timer.start()
        return project

    def stall(self, project_id: str) -> bool:
        """Make a project end STALLED; False when it is unknown or has already ended."""
        with self.lock:
            project = self.projects.get(project_id)
            if project is None or not project.in_flight(time.time()):
                return False
            project.stalls = True
            return True

    def clips(self, project: Project) -> list[dict[str, Any]]:
        """The project's exportable clips: none until it is COMPLETE."""
        with self.lock:
            media_base, scored = (self.config["mediaBaseUrl"] or self.base_url).rstrip("/"), self.config["scoredClips"]
        if project.stage(time.time())[0] != "COMPLETE":
            return []
        return project.clips(media_base, scored)

    def media_file(self, path: str) -> tuple[str, str, str, int] | None:
        """For a ``/media/...`` path: the clip id, the file's key, its suffix and its size; None unless it
        names a file of a COMPLETE project."""
        match = _MEDIA_PATH.match(path)
        project = self.projects.get(match.group(1)) if match else None
        if project is None or match is None or match.group(2) not in project.curation_ids():
            return None
        if project.stage(time.time())[0] != "COMPLETE":
            return None
        return f"{project.id}.{match.group(2)}", path.removeprefix("/media/"), match.group(3), project.clip_bytes

    def md5(self, key: str, size: int) -> str:
        if (key, size) not in self._md5s:
            digest = hashlib.md5()
            for piece in media_bytes(key, size):
                digest.update(piece)
            self._md5s[key, size] = digest.hexdigest()
        return self._md5s[key, size]

    def clip_files(self) -> dict[str, dict[str, Any]]:
        """Every export file that exists (of COMPLETE projects): its URL, size, md5 and full downloads."""
        with self.lock:
            projects = list(self.projects.values())
        files = {}
        for project in projects:
            for clip in self.clips(project):
                key = f"{project.id}/{clip['curationId']}.mp4"
                files[clip["id"]] = {
                    "url": clip["uriForExport"],
                    "size": project.clip_bytes,
                    "md5": self.md5(key, project.clip_bytes),
                    "downloads": self.downloads[clip["id"]],
                }
        return files

    def _conclude(self, project: Project, action: dict[str, Any]) -> None:
        """Send a WEBHOOK conclusion action, as OpusClip does when a project ends: on COMPLETE, and on
        STALLED only with ``notifyFailure``. OpusClip documents no body, so it carries what receivers
        guess at (projectId, stage); the signature is as documented: hex HMAC-SHA256 under the API key
        over the raw body followed by the per-request salt. Sent once, no retries (none documented)."""
        stage = project.stage(max(time.time(), project.ends))[0]  # a timer may wake a hair early
        if (stage == "STALLED" and not action.get("notifyFailure")) or self.projects.get(project.id) is not project:
            return
        fault = self.take_fault("webhook")
        kind = fault.kind if fault else None
        delivery = {"url": action["url"], "projectId": project.id, "stage": stage, "fault": kind}
        if kind == "drop":
            return self._record(delivery, None, "dropped by an injected fault")
        if fault is not None and kind == "slow":
            time.sleep(fault.seconds)
        body = json.dumps({"projectId": project.id, "stage": stage}).encode()
        key = ("not-" + self.api_key) if kind == "bad_signature" else self.api_key
        for _ in range(fault.copies if fault is not None and kind == "duplicate" else 1):
            if self.projects.get(project.id) is not project:  # reset meanwhile
                return None
            salt = secrets.token_hex(8)
            headers = {
                "Content-Type": "application/json",
                "X-Opus-Signature": hmac.new(key.encode(), body + salt.encode(), hashlib.sha256).hexdigest(),
                "X-Opus-Salt": salt,
                "X-Opus-Timestamp": str(int(time.time())),
            }
            try:
                response = requests.post(action["url"], data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
            except requests.RequestException as exc:
                self._record(delivery, None, type(exc).__name__)  # not str(exc): it quotes the URL and its token
            else:
                self._record(delivery, response.status_code, None)
        return None

    def _record(self, delivery: dict[str, Any], status: int | None, error: str | None) -> None:
        with self.lock:
            self.webhooks.append({**delivery, "status": status, "error": error, "at": _iso(time.time())})

    def stats(self) -> dict[str, Any]:
        now = time.time()
        files = self.clip_files()
        with self.lock:
            return {
                "calls": dict(self.calls),
                "bytesReceived": self.bytes_received,
                "uploads": {k: u.summary() for k, u in self.uploads.items()},
                "projects": {k: {**p.representation(now), "request": p.request} for k, p in self.projects.items()},
                "pendingFaults": len(self.faults),
                "config": dict(self.config),
                "clipFiles": files,
                "webhooks": list(self.webhooks),
                "refused": {"rate": self.refused["rate"], "concurrent": self.refused["concurrent"]},
                "inFlight": sum(p.in_flight(now) for p in self.projects.values()),
                "maxInFlight": self.max_in_flight,
            }


def media_bytes(key: str, size: int) -> Iterator[bytes]:
    """The content of a media file, derived from its key (``<projectId>/<file name>``) alone, so that a
    test can recompute it; made piece by piece, so a large file is never whole in memory."""
    for index, offset in enumerate(range(0, size, PIECE)):
        yield hashlib.shake_256(f"{key}#{index}".encode()).digest(min(PIECE, size - offset))


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
        return self.state.base_url

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _apply_fault(self, fault: Fault | None, body_length: int = 0) -> bool:
        """Answer with ``fault`` if it ends the call; return True when the call was answered. A chunk or
        media drop happens part-way through the bytes, so those two handle it themselves."""
        if fault is None:
            return False
        if fault.kind == "slow":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "status":
            self._drain(body_length)
            self._send(fault.status, fault.body, fault.headers)
            return True
        if fault.kind == "drop" and fault.endpoint not in ("chunk", "media"):
            self._drain(body_length)
            self._hang_up()
            return True
        return False

    def _api_call(self, endpoint: str) -> bool:
        """The gate of every ``/api/*`` call: injected fault, then the Bearer key, then the rate limit.
        True when the call may go on; otherwise it has been answered."""
        if self._apply_fault(self.state.take_fault(endpoint)) or not self._authorized():
            return False
        retry_after = self.state.admit(self.headers["Authorization"])
        if retry_after is None:
            return True
        self._send(429, {"message": "Too Many Requests"}, {"Retry-After": str(retry_after)})
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
        path, _, query = self.path.partition("?")
        if path.startswith("/_standin/"):
            return self._control_get(path)
        if path.startswith("/api/clip-projects/"):
            return self._project_get(path.removeprefix("/api/clip-projects/"))
        if path == "/api/exportable-clips":
            return self._exportable_clips(query)
        if path.startswith("/media/"):
            return self._media(path)
        self._send(404, {"message": "not found"})

    # -- OpusClip API ----------------------------------------------------------------------

    def _upload_link(self) -> None:
        body = self._json_body()
        if not self._api_call("upload-links"):
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
        if not self._api_call("clip-projects"):
            return
        problems = clip_schema.problems(body)
        if problems:
            return self._send(400, {"message": problems})
        upload_id = self.headers.get("x-opus-upload-id")
        upload = self.state.uploads.get(upload_id or "")
        if upload_id != body["videoUrl"] or upload is None or not upload.complete:
            return self._send(400, {"message": "x-opus-upload-id must equal videoUrl and name a completed upload"})
        project = self.state.create_project(upload.upload_id, body)
        if project is None:
            return self._send(429, {"message": "Too many concurrent projects"}, {"X-Cap-Reason": "concurrent"})
        self._send(201, project.representation(project.created))

    def _project_get(self, project_id: str) -> None:
        if not self._api_call("project-get"):
            return
        project = self.state.projects.get(project_id)
        if project is None:
            return self._send(404, {"message": "project not found"})
        self._send(200, project.representation(time.time()))

    def _exportable_clips(self, query: str) -> None:
        """``GET /api/exportable-clips?q=findByProjectId``; collections are not simulated."""
        if not self._api_call("exportable-clips"):
            return
        params = parse_qs(query, keep_blank_values=True)
        problem = _clips_query_problem(params)
        if problem:
            return self._send(400, {"message": problem})
        project = self.state.projects.get(params["projectId"][0])
        if project is None:
            return self._send(404, {"message": "project not found"})
        number, size = int(params["pageNum"][0]), int(params["pageSize"][0])
        page = self.state.clips(project)[(number - 1) * size : number * size]
        self._send(200, page if self.state.config["clipsEnvelope"] == "array" else {"data": page})

    def _media(self, path: str) -> None:
        """A clip's file, like OpusClip's CDN: no key needed. The export file counts as downloaded once
        sent whole."""
        fault = self.state.take_fault("media")
        if self._apply_fault(fault):
            return
        found = self.state.media_file(path)
        if found is None:
            return self._send(404, {"message": "no such media file"})
        clip_id, key, suffix, size = found
        self.send_response(200)
        self.send_header("Content-Type", MEDIA_KINDS[suffix])
        self.send_header("Content-Length", str(size))
        self.end_headers()
        limit = fault.after_bytes if fault is not None and fault.kind == "drop" else size
        sent = 0
        for piece in media_bytes(key, size):
            part = piece[: limit - sent]
            self.wfile.write(part)
            sent += len(part)
            if sent >= limit:
                break
        if sent < size:
            return self._hang_up()
        if suffix == ".mp4":
            with self.state.lock:
                self.state.downloads[clip_id] += 1
        return None

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
            try:
                faults = [Fault(**spec) for spec in body.get("faults", [])]
            except TypeError as exc:
                return self._send(400, {"message": str(exc)})
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
        if path == "/_standin/config":
            problems = self.state.configure(body)
            return self._send(400, {"message": problems}) if problems else self._send(200, self.state.config)
        if path == "/_standin/stall":
            return self._stall(body)
        self._send(404, {"message": "unknown control path"})

    def _stall(self, body: dict[str, Any]) -> None:
        """``{"projectId": id}`` stalls that project; ``{"next": n}`` the next n created."""
        if "next" in body:
            if not _count(0)(body["next"]):
                return self._send(400, {"message": "next must be a whole number from 0"})
            with self.state.lock:
                self.state.stall_next = body["next"]
            return self._send(200, {"stallNext": body["next"]})
        if self.state.stall(str(body.get("projectId"))):
            return self._send(200, {})
        self._send(409, {"message": "projectId must name a project still in flight"})

    def _control_get(self, path: str) -> None:
        if path == "/_standin/stats":
            return self._send(200, self.state.stats())
        if path == "/_standin/config":
            return self._send(200, self.state.config)
        project = self.state.projects.get(path.removeprefix("/_standin/projects/"))
        if path.startswith("/_standin/projects/") and project is not None:
            return self._send(200, {**project.representation(time.time()), "request": project.request})
        self._send(404, {"message": "unknown control path or project"})


def _clips_query_problem(params: dict[str, list[str]]) -> str | None:
    """What is wrong with an exportable-clips query, strictly: pageNum and pageSize are required
    although the OpenAPI marks them optional, so that a client never relies on unstated defaults."""
    unknown = sorted(set(params) - {"q", "projectId", "pageNum", "pageSize"})
    if unknown:
        return f"unknown query parameters: {', '.join(unknown)}"
    if any(len(values) != 1 for values in params.values()):
        return "each query parameter at most once"
    if params.get("q") != ["findByProjectId"]:
        return "q must be findByProjectId (the stand-in has no collections)"
    if not params.get("projectId", [""])[0]:
        return "projectId is required when q=findByProjectId"
    for name in ("pageNum", "pageSize"):
        if not _POSITIVE.match(params.get(name, [""])[0]):
            return f"{name} must be a whole number from 1"
    if int(params["pageSize"][0]) > MAX_PAGE_SIZE:
        return f"pageSize must be at most {MAX_PAGE_SIZE}"
    return None


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
    server.state.base_url = f"http://{host}:{server.server_address[1]}"
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
