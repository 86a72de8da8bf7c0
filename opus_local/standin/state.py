"""The stand-in's state: uploads, projects, injected faults, the configuration and every call counted.

Every change of state is a method of ``StandIn`` that takes the lock itself, so that the protocol
modules (``api``, ``upload_session``, ``media``, ``control``, ``webhooks``) never touch it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opus_pipeline.domain.media_probe import credits_estimate, probe_duration

from .. import videos
from . import webhooks
from .social_book import SocialBook

GRANULARITY = 256 * 1024
PIECE = 1024 * 1024
SALT_BYTES = 16  # the end of a clip's padding, derived from its key: every clip file differs

# A project's working stages, in order, and their shares of ``projectSeconds``. QUEUED takes half,
# so that a project read back soon after creation is still QUEUED, as the POST answered.
STAGES = ("QUEUED", "IMPORT", "CURATE", "REFINE", "RENDER", "UPLOAD")
STAGE_SHARES = (5, 1, 1, 1, 1, 1)
ORG_ID = "org_StandIn000000001"
USER_ID = "standin|000000000000000000001"
STORAGE_DAYS = 30  # OpusClip keeps a project's files 30 days (the OpenAPI example's storageExpireAt)
# The transcript of every project: these words in turn, one every WORD_SECONDS from the video's start
# to past its last clip, PARAGRAPH_WORDS to a paragraph; a test recomputes any clip's captions from it.
TRANSCRIPT_WORDS = ("so", "um", "the", "pipeline", "copies", "every", "clip", "uh", "with", "its", "captions")
FILLER_WORDS = frozenset({"um", "uh"})
WORD_SECONDS = 0.5
PARAGRAPH_WORDS = 20


def count_from(low: int) -> Callable[[Any], bool]:
    """A check of a whole number from ``low`` (a bool is not one)."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


DEFAULT_CONFIG: dict[str, Any] = {
    "projectSeconds": 2.0,  # creation → COMPLETE/STALLED
    "clipsPerProject": 3,
    "clipBytes": None,  # size of every clip file; None: a real video's own size (see ``media_bytes``)
    "renderSeconds": 0.0,  # how long after COMPLETE clips stay renderAsVideoFile.pending (their files 404); None: ever
    "renderingClips": None,  # how many clips, best first, are still rendering then; None: all
    "clipsEnvelope": "array",  # "array" as the OpenAPI shows, "data" for {"data": [...]} as Opus's own tools read
    # A fault: every pageNum of the clip list answers the first page (True), or every clip ("all": pageSize too).
    "ignorePaging": False,
    "scoredClips": "alternate",  # which clips carry the undocumented rank/score/isBonusClip/uriForThumbnail
    "mediaBaseUrl": None,  # where uriForExport points; None: the stand-in itself
    "rateLimitPerMinute": None,  # accepted /api/* calls per key per window; None: no limit
    "rateWindowSeconds": 60,  # the window of that limit: a minute, as OpusClip's, unless a test cannot wait
    "concurrentProjects": None,  # projects neither COMPLETE nor STALLED; None: no cap
    "brandTemplates": [],  # the ids GET /api/brand-templates?q=mine lists; None: a 403 (enterprise only)
    # The text of every clip ({rank} and {project} filled in): a test can make OpusClip say anything.
    "clipTitle": "Clip {rank} of {project}",
    "clipDescription": "The stand-in's clip number {rank} of project {project}.",
    "clipHashtags": "#OpusClip #StandIn",
    # The link model of the upload session (off by default): each session PUT is answered this long
    # after its body arrived (the storage committing it), and bodies are read no faster than this.
    "linkTurnaroundSeconds": None,
    "linkBytesPerSecond": None,
    "monthlyCreditLimit": 900,  # credits per month (Pro's 900); None: an uncapped workspace
    "monthResetAt": None,  # when the month's credits reset (ISO); None: the 1st of next month, UTC
    "transcript": True,  # GET /api/transcripts has TRANSCRIPT_WORDS for a COMPLETE project; False: data [null]
    # What a project's sourceId holds: the upload's id, or an id of OpusClip's own that does not
    # name it (the OpenAPI requires a sourceId and does not say what an upload's is).
    "sourceIds": "upload",
    "timeRanges": "milliseconds",  # the unit of clips' timeRanges: as the OpenAPI's example, or "seconds" as it says
    "previewOnly": False,  # clips come without uriForExport (a preview-only plan): only uriForPreview
    "orgId": None,  # when set, every /api/* call must send it as x-opus-org-id (else 403)
    # The connected social accounts GET /api/social-accounts?q=mine lists; None: a 403 (enterprise only).
    "socialAccounts": [
        {"postAccountId": "pa_youtube_1", "platform": "YOUTUBE", "extUserId": "yt1", "extUserName": "Stand-in channel"},
        {"postAccountId": "pa_tiktok_1", "platform": "TIKTOK_BUSINESS", "extUserId": "tt1", "extUserName": "standin"},
        {
            "postAccountId": "pa_facebook_1",
            "subAccountId": "sub_page_1",
            "platform": "FACEBOOK_PAGE",
            "extUserId": "fb1",
            "extUserName": "Stand-in page",
        },
        {"postAccountId": "pa_x_1", "platform": "TWITTER", "extUserId": "x1", "extUserName": "standin_x"},
    ],
}
_CONFIG_CHECKS: dict[str, Callable[[Any], bool]] = {
    "projectSeconds": _seconds,
    "clipsPerProject": count_from(0),
    "clipBytes": _optional(count_from(1)),
    "renderSeconds": _optional(_seconds),
    "ignorePaging": lambda v: isinstance(v, bool) or v == "all",
    "renderingClips": _optional(count_from(0)),
    "clipsEnvelope": lambda v: v in ("array", "data"),
    "scoredClips": lambda v: v in ("all", "none", "alternate"),
    "mediaBaseUrl": _optional(lambda v: isinstance(v, str) and v.startswith(("http://", "https://"))),
    "rateLimitPerMinute": _optional(count_from(1)),
    "rateWindowSeconds": lambda v: _seconds(v) and v > 0,
    "concurrentProjects": _optional(count_from(0)),
    "brandTemplates": _optional(lambda v: isinstance(v, list) and all(isinstance(i, str) and i for i in v)),
    "clipTitle": lambda v: isinstance(v, str),
    "clipDescription": lambda v: isinstance(v, str),
    "clipHashtags": lambda v: isinstance(v, str),
    "linkTurnaroundSeconds": _optional(_seconds),
    "linkBytesPerSecond": _optional(count_from(1)),
    "monthlyCreditLimit": _optional(count_from(0)),
    "monthResetAt": _optional(lambda v: isinstance(v, str) and v.endswith("Z")),
    "transcript": lambda v: isinstance(v, bool),
    "sourceIds": lambda v: v in ("upload", "opaque"),
    "timeRanges": lambda v: v in ("milliseconds", "seconds"),
    "previewOnly": lambda v: isinstance(v, bool),
    "orgId": _optional(lambda v: isinstance(v, str) and bool(v)),
    "socialAccounts": _optional(lambda v: isinstance(v, list) and all(_social_account(a) for a in v)),
}


def _social_account(account: Any) -> bool:
    """A SocialAccount with the fields the API description requires (``subAccountId`` optional)."""
    required = ("postAccountId", "platform", "extUserId", "extUserName")
    return (
        isinstance(account, dict)
        and all(isinstance(account.get(k), str) and account[k] for k in required)
        and ("subAccountId" not in account or (isinstance(account["subAccountId"], str) and account["subAccountId"]))
    )


def _next_month(moment: float) -> str:
    now = datetime.fromtimestamp(moment, UTC)
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return first.isoformat().replace("+00:00", "Z")


def upload_credits(path: Path) -> int | None:
    """What OpusClip bills a project of this upload: its container's duration, probed as the pipeline
    probes it; None when the upload is not a readable video."""
    try:
        with open(path, "rb") as video:
            return credits_estimate(probe_duration(video, name=path.name))
    except ValueError:  # UnreadableVideoError is one
        return None


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
    # Expired by the control protocol (``forget_uploads``), as OpusClip may expire uploads it keeps
    # (undocumented, api-facts Unknowns 6): its bytes are deleted and a create naming it is refused.
    forgotten: bool = False
    puts: list[list[int]] = field(default_factory=list)  # [first, last] byte of every upload request
    _md5: str | None = None

    @property
    def md5(self) -> str | None:
        """Of the complete upload; hashed when first asked, so that no upload waits for it (and by
        ``forget_uploads`` before it deletes the bytes)."""
        if self.complete and self._md5 is None and self.path.exists():
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
            "forgotten": self.forgotten,
            "puts": [list(p) for p in self.puts],
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
    render_seconds: float | None = 0.0  # None: the clips never finish rendering
    rendering_clips: int | None = None
    stalls: bool = False
    resume_after: float | None = None  # a stalled project moves on to COMPLETE this long after it stalled
    source_id: str = ""  # its sourceId: the upload's id unless the configuration says otherwise

    @property
    def ends(self) -> float:
        return self.created + self.seconds

    @property
    def completes(self) -> float:
        """When it is COMPLETE: at its end, or once its stall is over; never while it stalls for good."""
        if not self.stalls:
            return self.ends
        return math.inf if self.resume_after is None else self.ends + self.resume_after

    def stage(self, now: float) -> tuple[str, float]:
        """The stage at ``now`` and when it began."""
        if now >= self.completes:
            return "COMPLETE", self.completes
        if now >= self.ends:
            return "STALLED", self.ends
        unit = self.seconds / sum(STAGE_SHARES)
        since = self.created
        for stage, share in zip(STAGES[:-1], STAGE_SHARES, strict=False):
            if now < since + share * unit:
                return stage, since
            since += share * unit
        return STAGES[-1], since

    def in_flight(self, now: float) -> bool:
        return now < self.ends

    def rendering(self, rank: int, now: float) -> bool:
        """Whether the file of the clip of ``rank`` (1 is best) is still being made at ``now``."""
        if self.render_seconds is not None and now >= self.completes + self.render_seconds:
            return False
        return self.rendering_clips is None or rank <= self.rendering_clips

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
            "sourceId": self.source_id or self.upload_id,
            "sourceUri": None,
            "labels": [],
            "productTier": "PRO",
            "stage": stage,
            "model": "ClipBasic",
            "error": "the project stalled" if stage == "STALLED" else None,
            "stallCount": 1 if self.stalls and now >= self.ends else 0,
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

    def list_item(self, now: float) -> dict[str, Any]:
        """An item of the project list (``GET /api/clip-projects?q=mine``): the representation, and
        ``sourceInfo.title`` (the title the create call gave), as OpusClip's list carries it."""
        title = self.request.get("uploadedVideoAttr", {}).get("title")
        return {**self.representation(now), "sourceInfo": {"title": title}}

    @property
    def run_id(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y%m%d%H%M%S%f")[:17] + ".FP"

    def clips(
        self, media_base: str, scored: str, now: float, text: dict[str, str], shape: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The ExportableClips of a COMPLETE project, best first. ``scored`` says which carry the fields
        OpusClip's own tools read but the OpenAPI omits, so that clients are tested with and without them.
        ``shape["timeRanges"]``: milliseconds, as the OpenAPI's example suggests despite saying "seconds",
        or seconds; ``shape["previewOnly"]``: no ``uriForExport`` (the OpenAPI marks it optional)."""
        genre = self.request.get("curationPref", {}).get("genre", "Auto")
        finished = _iso(self.completes)
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
                "timeRanges": [[start_ms, start_ms + duration_ms]]
                if shape["timeRanges"] == "milliseconds"
                else [[start_ms / 1000, (start_ms + duration_ms) / 1000]],
                "keywords": ["stand-in", f"clip {rank}"],
                "title": text["clipTitle"].format(rank=rank, project=self.id),
                "description": text["clipDescription"].format(rank=rank, project=self.id),
                "hashtags": text["clipHashtags"].format(rank=rank, project=self.id),
                "text": f"Transcript of clip {rank}.",
                "genre": genre,
                "subgenre": "general",
                "createdAt": finished,
                "updatedAt": finished,
                "productTier": "PRO",
                "renderPref": {},
                "renderAsVideoFile": {"pending": self.rendering(rank, now)},  # read by OpusClip's own client
            }
            if scored == "all" or (scored == "alternate" and rank % 2):
                clip.update(rank=rank, score=100 - 7 * rank, isBonusClip=False, uriForThumbnail=f"{base}.jpg")
            if shape["previewOnly"]:
                del clip["uriForExport"]
            clips.append(clip)
        return clips

    def transcript(self) -> list[dict[str, Any]]:
        """The TranscriptExportParagraphs of the source: ``TRANSCRIPT_WORDS`` in turn from 0 s to a
        second past the end of the last clip (clip n covers 60n s to 65n + 15 s)."""
        count = int((65 * self.clip_count + 16) / WORD_SECONDS)
        words = [
            {
                "word": TRANSCRIPT_WORDS[n % len(TRANSCRIPT_WORDS)],
                "start": n * WORD_SECONDS,
                "end": n * WORD_SECONDS + 0.4,
                "isFillerWord": TRANSCRIPT_WORDS[n % len(TRANSCRIPT_WORDS)] in FILLER_WORDS,
            }
            for n in range(count)
        ]
        paragraphs = []
        for number, first in enumerate(range(0, count, PARAGRAPH_WORDS)):
            part = words[first : first + PARAGRAPH_WORDS]
            paragraphs.append(
                {
                    "id": number,
                    "start": part[0]["start"],
                    "end": part[-1]["end"],
                    "text": " ".join(word["word"] for word in part),
                    "speaker": "SPEAKER_00",
                    "words": part,
                }
            )
        return paragraphs


@dataclass
class Fault:
    """One injected misbehaviour for calls to ``endpoint``: after ``skip`` matching calls, the next
    ``times`` calls get it.

    Endpoints and the kinds they honour: upload-links, clip-projects, project-get, exportable-clips
    and transcripts: status | drop (connection closed, no answer) | slow; start and query: the same;
    chunk: status | drop (cut after ``after_bytes``; ``keep_received`` keeps what arrived, in whole
    256 KiB, as Cloud Storage may keep part of an interrupted request) | keep_fewer | expire | slow; media: status |
    drop (cut after ``after_bytes`` of the file) | slow; webhook (sent by the stand-in): drop (not
    sent) | slow (sent ``seconds`` late) | duplicate (sent ``copies`` times) | bad_signature; post-tasks and
    publish-schedules: status (a 5xx after the post is made, any other before) | drop (after) | slow;
    social-accounts and publish-schedules-delete: status | drop | slow. With ``after``, any API
    endpoint: status | drop | garble | stamp, once the call was acted on."""

    endpoint: str
    kind: str
    times: int = 1
    skip: int = 0
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    fewer_bytes: int = GRANULARITY
    keep_received: bool = False
    seconds: float = 0.0
    copies: int = 2
    # The call is acted on first (a project is made, credits spent), then the answer is spoiled: a
    # status or drop replaces it, ``garble`` cuts its body, ``stamp`` adds ``headers`` to it.
    after: bool = False


class StandIn:
    """State of the stand-in; thread-safe through one lock."""

    def __init__(self, api_key: str, storage_dir: Path, total_amount: int = 100 * 1024**3) -> None:
        self.api_key = api_key
        self.storage_dir = storage_dir
        self.base_url = ""  # set by ``serve`` once the port is bound
        self._lock = threading.Lock()
        self.total_amount = total_amount
        self.use_amount = 0
        self._md5s: dict[tuple[str, int], str] = {}  # derived from the name alone, so it survives resets
        natural_clip_bytes()  # ffmpeg makes the media now, not while a call waits
        thumbnail_bytes()
        self.reset()

    def reset(self) -> None:
        """Forget every call, fault, project, upload and pending webhook (and delete the uploaded bytes);
        the configuration goes back to its defaults."""
        with self._lock:
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
            self.resume_after: float | None = None
            self.timers: list[threading.Timer] = []
            self.accepted: dict[str, deque[float]] = {}
            self.refused: Counter[str] = Counter()
            self.max_in_flight = 0
            self.downloads: Counter[str] = Counter()
            self.webhooks: list[dict[str, Any]] = []
            self.credits_used = 0
            self.social = SocialBook()

    # -- reads: one dict look-up each, atomic without the lock -----------------------------

    def upload(self, upload_id: str) -> Upload | None:
        return self.uploads.get(upload_id)

    def session_upload(self, token: str) -> Upload | None:
        """The upload a session token writes, while the session lives."""
        upload_id = self.sessions.get(token)
        return self.uploads.get(upload_id) if upload_id else None

    def project(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    # -- uploads -----------------------------------------------------------------------------

    def new_upload(self) -> tuple[Upload, int, int]:
        """A new upload link's upload; with the quota's use and total amounts as they stand."""
        upload_id = "up_" + secrets.token_hex(8)
        with self._lock:
            upload = self.uploads[upload_id] = Upload(upload_id, self.storage_dir / upload_id)
            return upload, self.use_amount, self.total_amount

    def start_session(self, upload: Upload) -> str:
        """Open a resumable session on ``upload`` (an empty file on disk); its token."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            upload.session = token
            self.sessions[token] = upload.upload_id
        upload.path.touch()
        return token

    def expire_session(self, token: str) -> None:
        with self._lock:
            self.sessions.pop(token, None)

    def forget_uploads(self) -> list[str]:
        """Expire every upload made so far, as OpusClip might expire what it keeps: its bytes are
        deleted and its session ends; a create naming it is answered as for an unknown upload. It
        stays listed (``forgotten``, with its md5) so that tests still count every upload made. The
        quota's ``useAmount`` is left as it is (what OpusClip does with it is unknown). Uploads made
        afterwards are kept. The ids forgotten now."""
        with self._lock:
            forgotten = [upload for upload in self.uploads.values() if not upload.forgotten]
            for upload in forgotten:
                upload.forgotten = True
                if upload.session is not None:
                    self.sessions.pop(upload.session, None)
        for upload in forgotten:
            _ = upload.md5  # what was uploaded stays on record (stats) once the bytes are gone
            upload.path.unlink(missing_ok=True)
        return [upload.upload_id for upload in forgotten]

    def link(self) -> tuple[float | None, int | None]:
        """The link model: the turnaround of a session PUT and the rate its body is read at."""
        with self._lock:
            return self.config["linkTurnaroundSeconds"], self.config["linkBytesPerSecond"]

    def count_put(self, upload: Upload, first: int, last: int) -> None:
        with self._lock:
            upload.puts.append([first, last])

    def count_received(self, count: int) -> None:
        """Bytes read into a session, kept or not."""
        with self._lock:
            self.bytes_received += count

    def commit(self, upload: Upload, committed: int, total: int | None, complete: bool) -> None:
        """The session keeps bytes up to ``committed``; a completed upload counts against the quota."""
        with self._lock:
            upload.committed = committed
            upload.total = total if total is not None else upload.total
            if complete:
                upload.complete = True
            if upload.complete:
                self.use_amount += upload.total or 0

    def count_download(self, clip_id: str) -> None:
        """An export file sent whole."""
        with self._lock:
            self.downloads[clip_id] += 1

    # -- the control protocol's settings --------------------------------------------------

    def add_faults(self, faults: list[Fault], clear: bool) -> int:
        """Queue ``faults`` (after dropping those pending when ``clear``); how many are pending."""
        with self._lock:
            if clear:
                self.faults.clear()
            self.faults.extend(faults)
            return len(self.faults)

    def set_quota(self, amounts: dict[str, Any]) -> None:
        """``totalAmount`` and ``useAmount``, each when given."""
        with self._lock:
            self.total_amount = int(amounts.get("totalAmount", self.total_amount))
            self.use_amount = int(amounts.get("useAmount", self.use_amount))

    def set_stall_next(self, count: int, resume_after: float | None = None) -> None:
        """Make the next ``count`` projects created end STALLED (moving on ``resume_after`` s later)."""
        with self._lock:
            self.stall_next = count
            self.resume_after = resume_after

    def record_webhook(self, delivery: dict[str, Any], status: int | None, error: str | None) -> None:
        with self._lock:
            self.webhooks.append({**delivery, "status": status, "error": error, "at": _iso(time.time())})

    # -- faults, limits and projects --------------------------------------------------------

    def count_refused(self, why: str) -> None:
        with self._lock:
            self.refused[why] += 1

    def take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
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
            with self._lock:
                self.config.update(settings)
        return problems

    def admit(self, key: str) -> int | None:
        """Count one ``/api/*`` call against the rate limit; None when admitted, else the seconds until
        a slot frees (the Retry-After).

        A sliding-window log, not a token bucket: OpusClip states its limit as "N requests per minute",
        and a log enforces exactly that, in every window, with no burst allowance a bucket would have
        to guess. A client that keeps to it keeps to any coarser implementation too. Refused calls
        take no slot, so a client that waits Retry-After is admitted."""
        with self._lock:
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

    # -- the month's credits ----------------------------------------------------------------

    def reset_at(self) -> str:
        return self.config["monthResetAt"] or _next_month(time.time())

    def usage(self) -> dict[str, Any]:
        """``GET /api/api-usage?q=mine`` as OpusClip answers it."""
        with self._lock:
            limit = self.config["monthlyCreditLimit"]
            if limit is None:
                return {"uncapped": True}
            in_flight = sum(p.in_flight(time.time()) for p in self.projects.values())
            return {
                "uncapped": False,
                "monthly": {
                    "used": self.credits_used,
                    "limit": limit,
                    "remaining": max(0, limit - self.credits_used),
                    "reset_at": self.reset_at(),
                },
                "concurrent": {"used": in_flight, "limit": self.config["concurrentProjects"]},
            }

    def usage_headers(self) -> dict[str, str]:
        """The monthly numbers every API answer carries (none for an uncapped workspace)."""
        limit = self.config["monthlyCreditLimit"]
        if limit is None:
            return {}
        reset = datetime.fromisoformat(self.reset_at().replace("Z", "+00:00")).timestamp()
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - self.credits_used)),
            "X-RateLimit-Reset": str(int(reset)),
        }

    def new_month(self) -> None:
        """The control protocol's month reset: nothing of this month's credits is used any more."""
        with self._lock:
            self.credits_used = 0

    def charge(self, credits: int) -> None:
        """Credits spent outside a project: an X post costs 1."""
        with self._lock:
            self.credits_used += credits

    # -- projects ---------------------------------------------------------------------------

    def create_project(self, upload_id: str, request: dict[str, Any], credits: int) -> Project | str:
        """A new project charged ``credits``; else why not: "concurrent" (the in-flight cap) or
        "monthly" (the month's credits do not cover it)."""
        with self._lock:
            now = time.time()
            in_flight = sum(p.in_flight(now) for p in self.projects.values())
            cap = self.config["concurrentProjects"]
            if cap is not None and in_flight >= cap:
                self.refused["concurrent"] += 1
                return "concurrent"
            limit = self.config["monthlyCreditLimit"]
            if limit is not None and self.credits_used + credits > limit:
                self.refused["monthly"] += 1
                return "monthly"
            self.credits_used += credits
            project = Project(
                id="P" + secrets.token_hex(6),
                upload_id=upload_id,
                request=request,
                created=now,
                seconds=float(self.config["projectSeconds"]),
                clip_count=self.config["clipsPerProject"],
                clip_bytes=self.config["clipBytes"] or natural_clip_bytes(),
                render_seconds=None if self.config["renderSeconds"] is None else float(self.config["renderSeconds"]),
                rendering_clips=self.config["renderingClips"],
                stalls=self.stall_next > 0,
                resume_after=self.resume_after if self.stall_next > 0 else None,
                source_id="UPLOADED_" + secrets.token_hex(8) if self.config["sourceIds"] == "opaque" else upload_id,
            )
            self.stall_next -= project.stalls
            self.projects[project.id] = project
            self.max_in_flight = max(self.max_in_flight, in_flight + 1)
            self._send_webhooks(project, project.ends)
            if project.stalls and project.resume_after is not None:
                self._send_webhooks(project, project.completes)
        return project

    def _send_webhooks(self, project: Project, at: float) -> None:
        """Its WEBHOOK conclusion actions, sent at ``at`` (its end, or its completion after a stall)."""
        for action in project.request.get("conclusionActions", []):
            if action["type"] == "WEBHOOK":
                timer = threading.Timer(max(0.0, at - time.time()), webhooks.conclude, (self, project, action, at))
                timer.daemon = True
                self.timers.append(timer)
                timer.start()

    def stall(self, project_id: str, resume_after: float | None = None) -> bool:
        """Make a project end STALLED (moving on ``resume_after`` s later); False when it is unknown or
        has already ended."""
        with self._lock:
            project = self.projects.get(project_id)
            if project is None or not project.in_flight(time.time()):
                return False
            project.stalls = True
            project.resume_after = resume_after
            if resume_after is not None:
                self._send_webhooks(project, project.completes)
            return True

    def my_projects(self, page: int, size: int) -> list[dict[str, Any]]:
        """A page of the project list, newest first."""
        with self._lock:
            projects = sorted(self.projects.values(), key=lambda p: p.created, reverse=True)
        now = time.time()
        return [p.list_item(now) for p in projects[page * size : (page + 1) * size]]

    def clips(self, project: Project) -> list[dict[str, Any]]:
        """The project's exportable clips: none until it is COMPLETE."""
        with self._lock:
            media_base, scored = (self.config["mediaBaseUrl"] or self.base_url).rstrip("/"), self.config["scoredClips"]
            text = {key: self.config[key] for key in ("clipTitle", "clipDescription", "clipHashtags")}
            shape = {key: self.config[key] for key in ("timeRanges", "previewOnly")}
        now = time.time()
        if project.stage(now)[0] != "COMPLETE":
            return []
        return project.clips(media_base, scored, now, text, shape)

    def transcript(self, project: Project) -> list[dict[str, Any]] | None:
        """``data[0]`` of the project's TranscriptResponse: None until it is COMPLETE, or without one."""
        if not self.config["transcript"] or project.stage(time.time())[0] != "COMPLETE":
            return None
        return project.transcript()

    def md5(self, key: str, size: int) -> str:
        if (key, size) not in self._md5s:
            digest = hashlib.md5()
            for piece in media_bytes(key, size):
                digest.update(piece)
            self._md5s[key, size] = digest.hexdigest()
        return self._md5s[key, size]

    def clip_files(self) -> dict[str, dict[str, Any]]:
        """Every clip's file that exists (of COMPLETE projects, rendered): its URL (the export's, else the
        preview's), size, md5 and full downloads of the export."""
        with self._lock:
            projects = list(self.projects.values())
        files = {}
        for project in projects:
            for clip in self.clips(project):
                if clip["renderAsVideoFile"]["pending"]:
                    continue
                url = clip.get("uriForExport") or clip["uriForPreview"]
                key = f"{project.id}/{url.rsplit('/', 1)[-1]}"
                files[clip["id"]] = {
                    "url": url,
                    "size": project.clip_bytes,
                    "md5": self.md5(key, project.clip_bytes),
                    "downloads": self.downloads[clip["id"]],
                }
        return files

    def stats(self) -> dict[str, Any]:
        now = time.time()
        files = self.clip_files()
        with self._lock:
            return {
                "calls": dict(self.calls),
                "bytesReceived": self.bytes_received,
                "uploads": {k: u.summary() for k, u in self.uploads.items()},
                "projects": {k: {**p.representation(now), "request": p.request} for k, p in self.projects.items()},
                "pendingFaults": len(self.faults),
                "config": dict(self.config),
                "clipFiles": files,
                "webhooks": list(self.webhooks),
                "refused": {k: self.refused[k] for k in ("rate", "concurrent", "monthly")},
                "refusedForOrganization": self.refused["organization"],  # calls without the configured orgId
                "creditsUsed": self.credits_used,
                "inFlight": sum(p.in_flight(now) for p in self.projects.values()),
                "maxInFlight": self.max_in_flight,
            }


@functools.cache
def thumbnail_bytes() -> bytes:
    """Every clip's thumbnail: a real JPEG of the clip video's first frame, made once by ffmpeg."""
    return videos.make_thumbnail(videos.video_cache() / "thumbnail.jpg").read_bytes()


def natural_clip_bytes() -> int:
    """The size of a clip file when ``clipBytes`` does not choose one: the smallest real video."""
    return videos.smallest_video() + SALT_BYTES


def media_bytes(key: str, size: int) -> Iterator[bytes]:
    """The content of a video file, derived from its key (``<projectId>/<file name>``) and size alone,
    so that a test can recompute it; made piece by piece, so a large file is never whole in memory.

    A real, playable MP4 (ffmpeg's, made once; ``videos.video_pieces``) padded to ``size`` and salted
    from the key, so every clip has its own md5. A size below ``natural_clip_bytes()`` cannot hold a
    video: such a file (tests of the byte path choose it) is bytes derived from the key."""
    if size >= natural_clip_bytes():
        yield from videos.video_pieces(size, salt=hashlib.sha256(key.encode()).digest()[:SALT_BYTES], piece=PIECE)
        return
    for index, offset in enumerate(range(0, size, PIECE)):
        yield hashlib.shake_256(f"{key}#{index}".encode()).digest(min(PIECE, size - offset))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as source:
        while piece := source.read(PIECE):
            digest.update(piece)
    return digest.hexdigest()
