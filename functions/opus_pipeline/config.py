"""Settings from the environment, validated once at start-up.

Every variable the deployed code reads is named in ``ENV_VARS`` so Terraform and the local stack
can be checked against it. A bad value raises ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opus_pipeline.domain import publishing
from opus_pipeline.domain.preferences import PREFERENCES, Preferences, parse_texts
from opus_pipeline.domain.url_policy import is_loopback
from opus_pipeline.errors import ConfigError, PermanentError

KIB = 1024
CHUNK_GRANULARITY = 256 * KIB
DEFAULT_PREFERENCE_VARS = tuple(pref.env_var for pref in PREFERENCES if pref.env_var)
ENV_VARS = (
    "OPUS_API_KEY",
    "OPUS_API_BASE_URL",
    "OPUS_UPLOAD_URL_HOSTS",
    "CLIP_REQUESTS_TOPIC",
    "INGEST_REQUESTS_TOPIC",
    "STATE_BUCKET",
    "SOURCE_BUCKET",
    "UPLOAD_CHUNK_SIZE",
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_SECONDS",
    "OPUS_MONTHLY_CREDIT_BUDGET",
    "SOURCE_PREFIX",
    "UPLOAD_DEADLINE_SECONDS",
    "LEASE_SECONDS",
    "STATUS_METADATA",
    "OPUS_NOTIFY_EMAIL",
    "OPUS_WEBHOOK_URL",
    "OPUS_WEBHOOK_TOKEN",
    "OPUS_WEBHOOK_REQUIRE_SIGNATURE",
    "OPUS_WEBHOOK_SECRET",
    "CLIP_RENDER_WAIT_SECONDS",
    "OUTPUT_BUCKET",
    "CLIP_RESULTS_TOPIC",
    "COPY_CLIPS",
    "OPUS_CLIP_URL_HOSTS",
    "SWEEP_MAX_CALLS",
    "OPUS_MAX_PARALLEL_PROJECTS",
    "OPUS_RATE_PER_MINUTE",
    "SWEEP_TICKS_TOPIC",
    "OPUS_ORG_ID",
    "OPUS_CREATE_GRACE_SECONDS",
    "STALLED_GRACE_SECONDS",
    *DEFAULT_PREFERENCE_VARS,
    "OPUS_PUBLISH_APPROVAL",
    *publishing.ENV_VARS,
)
# The hosts OpusClip's API description uses for media, and Cloud Storage's.
DEFAULT_CLIP_URL_HOSTS = "cdn.opus.pro,ext.cdn.opus.pro,storage.googleapis.com"


@dataclass(frozen=True)
class Settings:
    """Everything the four functions need, already validated."""

    opus_api_key: str
    state_bucket: str
    source_bucket: str  # the one bucket whose videos are ingested: events and messages for others are refused
    clip_requests_topic: str
    output_bucket: str
    clip_results_topic: str
    ingest_requests_topic: str
    opus_api_base_url: str = "https://api.opus.pro"
    upload_url_hosts: tuple[str, ...] = ("storage.googleapis.com",)
    upload_chunk_size: int = 16 * 1024 * KIB
    max_video_bytes: int = 30_000_000_000  # OpusClip's upload limit: 30 GB
    max_video_seconds: int = 36_000  # OpusClip's: 10 hours
    monthly_credit_budget: int | None = None  # credits this pipeline may spend per UTC month; None: no budget
    source_prefix: str = ""
    upload_deadline_seconds: float = 480.0
    lease_seconds: float = 90.0
    status_metadata: bool = True
    notify_email: str | None = None
    webhook_url: str | None = None
    webhook_token: str | None = None
    webhook_require_signature: bool = False  # OpusClip signs with the organisation's first key only
    webhook_secret: str | None = None  # that first key, when OPUS_API_KEY is another of the workspace's keys
    clip_render_wait_seconds: float = 3600.0  # a clip still rendering this long after COMPLETE is left uncopied
    copy_clips: bool = True
    clip_url_hosts: tuple[str, ...] = tuple(DEFAULT_CLIP_URL_HOSTS.split(","))
    sweep_max_calls: int = 10
    max_parallel_projects: int = 4  # OpusClip's Pro and Max plans; Business allows 50
    rate_per_minute: int = 30  # OpusClip's limit per API key
    sweep_ticks_topic: str | None = None  # the webhook receiver's conclusions ask the sweeper to admit here
    default_preferences: Preferences = field(default_factory=Preferences)
    opus_org_id: str | None = None  # sent as x-opus-org-id: the workspace of a key with several organisations
    publish_approval: str = publishing.APPROVAL_REQUIRED  # or "auto": plans are carried out at clips-ready
    publish_defaults: Mapping[str, str] = field(default_factory=dict)  # metadata key → OPUS_DEFAULT_PUBLISH_* text
    # How long a project an unanswered create call may have made is looked for before another is made.
    create_grace_seconds: float = 300.0
    stalled_grace_seconds: float = 21_600.0  # a STALLED project is watched this long before it fails

    def __repr__(self) -> str:  # the key must not reach a log through a repr
        return f"Settings(state_bucket={self.state_bucket!r}, topic={self.clip_requests_topic!r})"


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {hint}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number of bytes/seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than zero")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={raw!r}: use 'true' or 'false'")
    return raw == "true"


def _topic(env: Mapping[str, str], name: str) -> str:
    topic = _required(env, name, "set it to projects/PROJECT/topics/TOPIC")
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
        raise ConfigError(f"{name}={topic!r} is not of the form projects/P/topics/T")
    return topic


def _hosts(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip() or default
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if not hosts or any("/" in h or " " in h for h in hosts):
        raise ConfigError(f"{name}={raw!r}: give comma-separated host or host:port")
    return hosts


def _webhook(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The receiver's URL and its token: a URL without a token would accept anyone's calls."""
    url = env.get("OPUS_WEBHOOK_URL", "").strip() or None
    token = env.get("OPUS_WEBHOOK_TOKEN", "").strip() or None
    parts = urlsplit(url or "")
    if url and not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))):
        raise ConfigError(f"OPUS_WEBHOOK_URL={url!r} must be an https URL (OpusClip calls it from the internet)")
    if url and not token:
        raise ConfigError("OPUS_WEBHOOK_URL is set but OPUS_WEBHOOK_TOKEN is not: give the receiver's secret token")
    if token and len(token) < 16:
        raise ConfigError("OPUS_WEBHOOK_TOKEN is shorter than 16 characters: use a long random value")
    return url, token


def _org_id(env: Mapping[str, str]) -> str | None:
    """``OPUS_ORG_ID``: printable, without spaces, as it goes into a header of every OpusClip call."""
    value = env.get("OPUS_ORG_ID", "").strip()
    if value and not (value.isascii() and value.isprintable() and " " not in value):
        raise ConfigError(f"OPUS_ORG_ID={value!r} is not an organisation id such as org_Example00000001")
    return value or None


def _default_preferences(env: Mapping[str, str]) -> Preferences:
    texts = [(pref, var, raw) for pref in PREFERENCES if (var := pref.env_var) and (raw := env.get(var, "").strip())]
    try:
        return parse_texts(texts)
    except PermanentError as exc:
        raise ConfigError(str(exc)) from None


def _publish_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The ``OPUS_DEFAULT_PUBLISH*`` texts by metadata key, checked as a video's would be."""
    texts = {key: raw for key in publishing.PUBLISH_KEYS if (raw := env.get(publishing.env_var(key), "").strip())}
    try:
        publishing.choice({}, texts)
    except PermanentError as exc:
        raise ConfigError(str(exc)) from None
    return texts


def _approval(env: Mapping[str, str]) -> str:
    raw = env.get("OPUS_PUBLISH_APPROVAL", "").strip().lower() or publishing.APPROVAL_REQUIRED
    if raw not in publishing.APPROVALS:
        raise ConfigError(f"OPUS_PUBLISH_APPROVAL={raw!r}: use {' or '.join(publishing.APPROVALS)}")
    return raw


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise ``ConfigError`` naming the first bad variable."""
    env = os.environ if env is None else env
    chunk = _positive_int(env, "UPLOAD_CHUNK_SIZE", Settings.upload_chunk_size)
    if chunk % CHUNK_GRANULARITY:
        raise ConfigError(f"UPLOAD_CHUNK_SIZE={chunk} must be a multiple of 262144 (256 KiB)")
    base_url = (env.get("OPUS_API_BASE_URL", "").strip() or Settings.opus_api_base_url).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise ConfigError(f"OPUS_API_BASE_URL={base_url!r} must be an http(s) URL")
    webhook_url, webhook_token = _webhook(env)
    return Settings(
        opus_api_key=_required(env, "OPUS_API_KEY", "give the OpusClip API key (a secret)"),
        state_bucket=_required(env, "STATE_BUCKET", "name the private bucket for state records"),
        source_bucket=_required(env, "SOURCE_BUCKET", "name the bucket the videos are dropped into"),
        clip_requests_topic=_topic(env, "CLIP_REQUESTS_TOPIC"),
        output_bucket=_required(env, "OUTPUT_BUCKET", "name the bucket the clips are copied into"),
        clip_results_topic=_topic(env, "CLIP_RESULTS_TOPIC"),
        ingest_requests_topic=_topic(env, "INGEST_REQUESTS_TOPIC"),
        opus_api_base_url=base_url,
        upload_url_hosts=_hosts(env, "OPUS_UPLOAD_URL_HOSTS", "storage.googleapis.com"),
        upload_chunk_size=chunk,
        max_video_bytes=_positive_int(env, "MAX_VIDEO_BYTES", Settings.max_video_bytes),
        max_video_seconds=_positive_int(env, "MAX_VIDEO_SECONDS", Settings.max_video_seconds),
        monthly_credit_budget=_positive_int(env, "OPUS_MONTHLY_CREDIT_BUDGET", 0) or None,
        source_prefix=env.get("SOURCE_PREFIX", "").strip(),
        upload_deadline_seconds=_positive_int(env, "UPLOAD_DEADLINE_SECONDS", 480),
        lease_seconds=_positive_int(env, "LEASE_SECONDS", 90),
        status_metadata=_flag(env, "STATUS_METADATA", default=True),
        notify_email=env.get("OPUS_NOTIFY_EMAIL", "").strip() or None,
        webhook_url=webhook_url,
        webhook_token=webhook_token,
        webhook_require_signature=_flag(env, "OPUS_WEBHOOK_REQUIRE_SIGNATURE", default=False),
        webhook_secret=env.get("OPUS_WEBHOOK_SECRET", "").strip() or None,
        clip_render_wait_seconds=_positive_int(env, "CLIP_RENDER_WAIT_SECONDS", 3600),
        copy_clips=_flag(env, "COPY_CLIPS", default=True),
        clip_url_hosts=_hosts(env, "OPUS_CLIP_URL_HOSTS", DEFAULT_CLIP_URL_HOSTS),
        sweep_max_calls=_positive_int(env, "SWEEP_MAX_CALLS", Settings.sweep_max_calls),
        max_parallel_projects=_positive_int(env, "OPUS_MAX_PARALLEL_PROJECTS", Settings.max_parallel_projects),
        rate_per_minute=_positive_int(env, "OPUS_RATE_PER_MINUTE", Settings.rate_per_minute),
        sweep_ticks_topic=_topic(env, "SWEEP_TICKS_TOPIC") if env.get("SWEEP_TICKS_TOPIC", "").strip() else None,
        default_preferences=_default_preferences(env),
        opus_org_id=_org_id(env),
        publish_approval=_approval(env),
        publish_defaults=_publish_defaults(env),
        create_grace_seconds=_positive_int(env, "OPUS_CREATE_GRACE_SECONDS", 300),
        stalled_grace_seconds=_positive_int(env, "STALLED_GRACE_SECONDS", 21_600),
    )
