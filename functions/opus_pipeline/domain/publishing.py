"""Publishing the best clips to connected social accounts: the choice, the plan, its states. Pure logic.

A video opts in with ``opus-publish`` (or ``OPUS_DEFAULT_PUBLISH``); the other four keys shape the
plan. The plan (``gs://OUTPUT/<name>/publish.json``) is the one truth about every post: one entry
per (clip, account) pair, each moving ``planned`` → ``sending`` → ``scheduled``/``published`` (or
``failed``, or ``cancelled``). ``sending`` is written before the request goes out, so an entry
found ``sending`` without an id may have been posted: it is never sent again (``reconcile``).
OpusClip lists no schedules (its API has no such endpoint), so such an entry is failed with an
error that tells the user to look in OpusClip; posting is public and cannot be taken back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from opus_pipeline.errors import PreferenceError

SCHEMA_VERSION = 1
# Object metadata keys (and, upper-cased with OPUS_DEFAULT_, the deploy-wide defaults).
PUBLISH = "opus-publish"
COUNT = "opus-publish-count"
AT = "opus-publish-at"
EVERY = "opus-publish-every"
PRIVACY = "opus-publish-privacy"
PUBLISH_KEYS = (PUBLISH, COUNT, AT, EVERY, PRIVACY)
STATUS_KEY = "opus-publish-status"  # written by the pipeline, not a preference

# ``opus-publish-status`` values.
AWAITING_APPROVAL = "awaiting-approval"
SCHEDULED = "scheduled"
PUBLISHED = "published"
CANCELLED = "cancelled"
FAILED = "failed"

# Entry states.
PLANNED = "planned"
SENDING = "sending"
ENTRY_DONE = frozenset({SCHEDULED, PUBLISHED, CANCELLED, FAILED})

APPROVAL_REQUIRED = "required"
APPROVAL_AUTO = "auto"
APPROVALS = (APPROVAL_REQUIRED, APPROVAL_AUTO)

PLATFORMS = ("YOUTUBE", "TIKTOK_BUSINESS", "FACEBOOK_PAGE", "INSTAGRAM_BUSINESS", "LINKEDIN", "TWITTER")
CREDIT_PLATFORMS = frozenset({"TWITTER"})  # OpusClip: "Each X (formerly Twitter) post costs 1 credit"
PRIVACIES = ("public", "private", "unlisted")
DEFAULT_COUNT = 1
MAX_COUNT = 20
MAX_ACCOUNTS = 10
DEFAULT_EVERY_SECONDS = 24 * 3600
MAX_TITLE_CHARS = 100  # YouTube's limit, the strictest of the platforms'
# A time this close to now is posted now: a schedule's publishAt must still be in the future when
# OpusClip reads it, after the request budget's wait and the request itself.
NOW_MARGIN_SECONDS = 120.0
# How long a ``sending`` entry belongs to the invocation that wrote it (its request budget wait and
# the call's own timeout are shorter); after that nobody is sending it any more.
SENDING_GRACE_SECONDS = 300.0
NOT_SEEN = (
    "the answer to this post request was lost, so it may or may not have been posted; OpusClip lists no "
    "schedules to find out, so it is not sent again: look in OpusClip's calendar, and post it there if missing"
)

_EVERY = re.compile(r"^\s*(\d+)\s*(m|h|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class PublishChoice:
    """What a video asked for: account names as given, how many clips, when, how far apart, privacy."""

    accounts: tuple[str, ...]
    count: int = DEFAULT_COUNT
    at: datetime | None = None  # None: now
    every_seconds: int = DEFAULT_EVERY_SECONDS
    privacy: str = "public"


@dataclass(frozen=True)
class Account:
    """A connected social account as ``GET /api/social-accounts?q=mine`` lists it."""

    post_account_id: str
    platform: str
    name: str = ""
    sub_account_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"postAccountId": self.post_account_id, "platform": self.platform, "name": self.name}
        if self.sub_account_id:
            data["subAccountId"] = self.sub_account_id
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            str(data["postAccountId"]), str(data["platform"]), str(data.get("name") or ""), data.get("subAccountId")
        )


# -- the choice -------------------------------------------------------------------------------


def env_var(key: str) -> str:
    """The deploy-wide default of a key, e.g. ``OPUS_DEFAULT_PUBLISH_COUNT``."""
    return "OPUS_DEFAULT_" + key.removeprefix("opus-").upper().replace("-", "_")


ENV_VARS = tuple(env_var(key) for key in PUBLISH_KEYS)


def parse_at(name: str, raw: str) -> datetime | None:
    """``now`` (None) or an ISO 8601 time with a UTC offset (``Z`` or ``+00:00``)."""
    text = raw.strip()
    if text.lower() == "now":
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PreferenceError(
            f"{name}={raw!r} is not 'now' or an ISO 8601 UTC time, e.g. 2026-12-08T16:00:00Z"
        ) from None
    if when.tzinfo is None or when.utcoffset() != timedelta(0):
        raise PreferenceError(f"{name}={raw!r}: give the time in UTC, ending in Z, e.g. 2026-12-08T16:00:00Z")
    return when.astimezone(UTC)


def parse_every(name: str, raw: str) -> int:
    """A spacing such as ``24h``, ``90m`` or ``2d``, in seconds."""
    match = _EVERY.match(raw)
    if not match or int(match.group(1)) == 0:
        raise PreferenceError(f"{name}={raw!r} is not a spacing such as 24h, 90m or 2d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def parse_count(name: str, raw: str) -> int:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_COUNT:
        raise PreferenceError(f"{name}={raw!r} is not a whole number from 1 to {MAX_COUNT}")
    return int(text)


def parse_privacy(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in PRIVACIES:
        raise PreferenceError(f"{name}={raw!r}: use one of {', '.join(PRIVACIES)}")
    return value


def parse_accounts(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated account names; ``none`` (an opt-out of a deploy-wide default) is empty."""
    if raw.strip().lower() == "none":
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not names:
        raise PreferenceError(f"{name} is empty; give accounts such as YOUTUBE,TIKTOK_BUSINESS (or 'none')")
    if len(names) > MAX_ACCOUNTS:
        raise PreferenceError(f"{name} names {len(names)} accounts; at most {MAX_ACCOUNTS}")
    if any(not n.isprintable() for n in names):
        raise PreferenceError(f"{name} holds control characters")
    return names


def choice(metadata: Mapping[str, str] | None, defaults: Mapping[str, str] | None = None) -> PublishChoice | None:
    """The video's publishing choice from its metadata over the deploy's defaults (keyed by metadata
    key); None when it publishes nothing. ``PreferenceError`` names the key or variable at fault."""
    texts: dict[str, tuple[str, str]] = {}
    for key in PUBLISH_KEYS:
        raw = (defaults or {}).get(key)
        if raw is not None and raw.strip():
            texts[key] = (env_var(key), raw)
    own = [(key.lower(), key, str(raw)) for key, raw in (metadata or {}).items() if key.lower() in PUBLISH_KEYS]
    texts.update({lowered: (key, raw) for lowered, key, raw in own})
    if PUBLISH not in texts:
        if own:
            names = ", ".join(key for _, key, _ in own)
            raise PreferenceError(f"{names} have no effect without {PUBLISH}; name the accounts to post to")
        return None
    accounts = parse_accounts(*texts[PUBLISH])
    if not accounts:
        return None
    return PublishChoice(
        accounts=accounts,
        count=parse_count(*texts[COUNT]) if COUNT in texts else DEFAULT_COUNT,
        at=parse_at(*texts[AT]) if AT in texts else None,
        every_seconds=parse_every(*texts[EVERY]) if EVERY in texts else DEFAULT_EVERY_SECONDS,
        privacy=parse_privacy(*texts[PRIVACY]) if PRIVACY in texts else "public",
    )


def choice_to_json(chosen: PublishChoice, accounts: Sequence[Account]) -> dict[str, Any]:
    """What the state record keeps of a validated choice: the accounts resolved, the rest as given."""
    return {
        "accounts": [account.to_json() for account in accounts],
        "count": chosen.count,
        "at": iso(chosen.at) if chosen.at else None,
        "everySeconds": chosen.every_seconds,
        "privacy": chosen.privacy,
    }


# -- the accounts -----------------------------------------------------------------------------


def accounts_listed(answer: Any) -> list[Account]:
    """The accounts of a ``GET /api/social-accounts?q=mine`` answer; ``ValueError`` on another shape
    (the answer is not trusted: an id goes into later requests)."""
    items = answer.get("data") if isinstance(answer, Mapping) else answer
    if not isinstance(items, list):
        raise ValueError("no account list")
    found = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError("an account that is not an object")
        ident, platform, sub = item.get("postAccountId"), item.get("platform"), item.get("subAccountId")
        if not _safe_id(ident) or not isinstance(platform, str) or not platform.isprintable():
            raise ValueError("an account without a usable postAccountId or platform")
        if sub is not None and not _safe_id(sub):
            raise ValueError("an account with an unusable subAccountId")
        name = item.get("extUserName")
        found.append(Account(ident, platform.upper(), str(name)[:100] if isinstance(name, str) else "", sub or None))
    return found


def resolve(chosen: PublishChoice, accounts: Sequence[Account]) -> list[Account]:
    """Each name the video gave, as exactly one connected account: a ``postAccountId``, or a platform
    (any case) that one account has. ``PreferenceError`` (``bad-metadata``) names the one that is not."""
    resolved: list[Account] = []
    for name in chosen.accounts:
        matches = [a for a in accounts if a.post_account_id == name] or [
            a for a in accounts if a.platform == name.upper()
        ]
        if not matches:
            connected = ", ".join(sorted({a.platform for a in accounts})) or "none"
            raise PreferenceError(
                f"{PUBLISH}: {name!r} is not a connected OpusClip account (connected platforms: {connected}); "
                "connect it in OpusClip or name a postAccountId"
            )
        if len(matches) > 1:
            ids = ", ".join(a.post_account_id for a in matches)
            raise PreferenceError(
                f"{PUBLISH}: {name!r} matches {len(matches)} connected accounts ({ids}); name one by its postAccountId"
            )
        if matches[0] not in resolved:
            resolved.append(matches[0])
    return resolved


def _safe_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable() and "/" not in value


# -- the plan ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``, as OpusClip's own example writes ``publishAt``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bare_clip_id(clip: Mapping[str, Any], project_id: str) -> str | None:
    """The bare clip id OpusClip's posting endpoints take: ``curationId``, or the part of the
    composite ``{projectId}.{clipId}`` after the dot; None when the clip names none usable."""
    curation = clip.get("curationId")
    if _safe_id(curation):
        return str(curation)
    ident = clip.get("id")
    if not isinstance(ident, str):
        return None
    bare = ident.removeprefix(f"{project_id}.") if project_id else ident.rsplit(".", 1)[-1]
    return bare if _safe_id(bare) and "." not in bare else None


def _description(clip: Mapping[str, Any]) -> str:
    tags = clip.get("hashtags")
    if isinstance(tags, list):
        tags = " ".join(str(t) for t in tags)
    parts = [str(p).strip() for p in (clip.get("description"), tags) if isinstance(p, str) and p.strip()]
    return "\n\n".join(parts)


def build_plan(
    source: Mapping[str, str],
    project_id: str,
    clips: Sequence[Mapping[str, Any]],
    chosen: Mapping[str, Any],
    approval: str,
    now: datetime,
) -> dict[str, Any]:
    """The plan for ``clips`` (best first, as the manifest lists them) under the recorded ``chosen``:
    the best takes the first time, the next best the first plus ``everySeconds``, and so on; each
    is posted to every account at its time."""
    first = datetime.fromisoformat(chosen["at"].replace("Z", "+00:00")) if chosen.get("at") else now
    posts = []
    usable = [(c, bare) for c in clips if (bare := bare_clip_id(c, project_id))]
    for index, (clip, bare) in enumerate(usable[: int(chosen["count"])]):
        when = first + timedelta(seconds=index * int(chosen["everySeconds"]))
        title = str(clip.get("title") or source.get("name", "")).strip()[:MAX_TITLE_CHARS]
        for account in map(Account.from_json, chosen["accounts"]):
            posts.append(
                {
                    **account.to_json(),
                    "clipId": bare,
                    "manifestId": str(clip.get("id") or bare),
                    "publishAt": iso(when),
                    "title": title,
                    "description": _description(clip),
                    "privacy": chosen["privacy"],
                    "state": PLANNED,
                }
            )
    return {
        "schemaVersion": SCHEMA_VERSION,
        "source": dict(source),
        "projectId": project_id,
        "approval": approval,
        "approved": approval == APPROVAL_AUTO,
        "cancelled": False,
        "createdAt": iso(now),
        "posts": posts,
    }


def pair(post: Mapping[str, Any]) -> str:
    """The identity of a post: one clip to one account, at most once."""
    return f"{post['clipId']}@{post['postAccountId']}"


def request_body(project_id: str, post: Mapping[str, Any]) -> dict[str, Any]:
    """The ``POST /api/post-tasks`` body (add ``publishAt`` for ``/api/publish-schedules``):
    ``subAccountId`` only when the account has one (omitted, never null)."""
    body: dict[str, Any] = {"projectId": project_id, "clipId": post["clipId"], "postAccountId": post["postAccountId"]}
    if post.get("subAccountId"):
        body["subAccountId"] = post["subAccountId"]
    body["postDetail"] = {
        "title": post["title"],
        "custom": {"description": post["description"], "privacy": post["privacy"]},
        "mediaType": "video",
    }
    return body


def posts_now(post: Mapping[str, Any], now: datetime) -> bool:
    """Whether the post goes out now (``/api/post-tasks``) rather than on a schedule: its time is
    past, or too close for a schedule to still be in the future when OpusClip reads it."""
    when = datetime.fromisoformat(str(post["publishAt"]).replace("Z", "+00:00"))
    return when <= now + timedelta(seconds=NOW_MARGIN_SECONDS)


def due(plan: Mapping[str, Any]) -> list[str]:
    """The pairs to send now: the plan is approved and not cancelled, and they are still planned."""
    if not plan.get("approved") or plan.get("cancelled"):
        return []
    return [pair(p) for p in plan["posts"] if p["state"] == PLANNED]


def entry(plan: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    return next((p for p in plan["posts"] if pair(p) == key), None)


def reconcile(plan: dict[str, Any], now: float) -> bool:
    """Fail every entry left ``sending`` without an id for longer than ``SENDING_GRACE_SECONDS``:
    its request may have been posted, and nothing can tell (``NOT_SEEN``). Whether any changed."""
    changed = False
    for post in plan["posts"]:
        if post["state"] == SENDING and now - float(post.get("sendingSince") or 0) > SENDING_GRACE_SECONDS:
            post.update(state=FAILED, error=NOT_SEEN)
            changed = True
    return changed


def cancellable(plan: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The scheduled entries whose time has not come: the ones ``--cancel`` deletes at OpusClip."""
    return [
        p
        for p in plan["posts"]
        if p["state"] == SCHEDULED
        and p.get("scheduleId")
        and datetime.fromisoformat(str(p["publishAt"]).replace("Z", "+00:00")) > now
    ]


def status(plan: Mapping[str, Any]) -> str | None:
    """``opus-publish-status`` of the plan; None while entries are still on their way."""
    posts = plan.get("posts", [])
    if plan.get("cancelled"):
        return CANCELLED
    if not plan.get("approved"):
        return AWAITING_APPROVAL
    if any(p["state"] not in ENTRY_DONE for p in posts):
        return None  # a failure is shown once the others are sent too: none is left behind
    if any(p["state"] == FAILED for p in posts):
        return FAILED
    return PUBLISHED if posts and all(p["state"] == PUBLISHED for p in posts) else SCHEDULED


def errors(plan: Mapping[str, Any]) -> str | None:
    """The ``opus-error`` of a failed plan: each failed post and why."""
    failed = [
        f"{p['platform']} {p['clipId']}: {p.get('error') or 'failed'}" for p in plan["posts"] if p["state"] == FAILED
    ]
    return "; ".join(failed) or None


def published_rows(plan: Mapping[str, Any], manifest_id: str) -> list[dict[str, Any]]:
    """The manifest entry's ``published``: each post OpusClip took for this clip, with its id."""
    rows = []
    for post in plan["posts"]:
        if post["manifestId"] != manifest_id or not (post.get("scheduleId") or post.get("postId")):
            continue
        if post["state"] not in (SCHEDULED, PUBLISHED):
            continue
        ident = {"scheduleId": post["scheduleId"]} if post.get("scheduleId") else {"postId": post["postId"]}
        rows.append(
            {
                "postAccountId": post["postAccountId"],
                "platform": post["platform"],
                **ident,
                "publishAt": post["publishAt"],
            }
        )
    return rows


def page_rows(plan: Mapping[str, Any], manifest_id: str) -> list[dict[str, Any]]:
    """What the clips page shows of a clip's posts, planned or made."""
    return [
        {
            "platform": p["platform"],
            "account": p.get("name") or p["postAccountId"],
            "publishAt": p["publishAt"],
            "state": p["state"],
        }
        for p in plan["posts"]
        if p["manifestId"] == manifest_id
    ]


def with_posts(manifest: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` with each clip's ``published`` rows (the made posts) from ``plan``."""
    clips = []
    for clip in manifest.get("clips", []):
        rows = published_rows(plan, str(clip.get("id")))
        clips.append({**{k: v for k, v in clip.items() if k != "published"}, **({"published": rows} if rows else {})})
    return {**manifest, "clips": clips}


def credit_posts(posts: Iterable[Mapping[str, Any]]) -> int:
    """The credits these posts cost at OpusClip (an X post: 1)."""
    return sum(1 for p in posts if p["platform"] in CREDIT_PLATFORMS)


@dataclass(frozen=True)
class PublishedResult:
    """The ``published`` message on ``CLIP_RESULTS_TOPIC`` once a plan is carried out (or cancelled,
    or failed): ``publishStatus`` says which, ``posts`` lists every post OpusClip took."""

    plan: Mapping[str, Any]
    publish_status: str
    plan_uri: str

    def encode(self) -> bytes:
        made = [
            row
            for clip_id in dict.fromkeys(p["manifestId"] for p in self.plan["posts"])
            for row in published_rows(self.plan, clip_id)
        ]
        body = {
            "schemaVersion": SCHEMA_VERSION,
            "source": dict(self.plan["source"]),
            "projectId": self.plan["projectId"],
            "status": PUBLISHED,
            "publishStatus": self.publish_status,
            "plan": self.plan_uri,
            "posts": made,
        }
        if self.publish_status == FAILED:
            body["error"] = errors(self.plan)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def attributes(self) -> dict[str, str]:
        source = self.plan["source"]
        return {
            "projectId": str(self.plan["projectId"]),
            "status": PUBLISHED,
            "publishStatus": self.publish_status,
            "bucket": str(source["bucket"]),
            "name": str(source["name"]),
            "generation": str(source["generation"]),
        }
