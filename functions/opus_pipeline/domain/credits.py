"""Credits, OpusClip's third cap: what a video costs, what OpusClip would refuse, the book of videos
admitted against this month's credits, and whether a refusal after a monthly-cap wait means OpusClip
no longer has the upload (``refusal``). Pure logic.

OpusClip bills one credit per started minute of the source (of ``opus-range`` when set), at least
ten per project, and a capped workspace has a monthly allowance after which every create call
answers 403 ``API_MONTHLY_CAP_REACHED``. The pipeline estimates each video before any byte is sent
and keeps one ``CreditBook`` (``gcs/credit_ledger.py``): the estimates of the videos admitted but
not yet created (``reserved``), the videos waiting for credits oldest first (``waiting``), and the
estimates of the projects created this UTC month (``created``, what ``OPUS_MONTHLY_CREDIT_BUDGET``
is counted against). OpusClip's own ``remaining`` already counts the created projects, so a video
fits when its estimate is at most ``remaining - reserved`` (and ``budget - created - reserved``).

OpusClip's numbers may be up to a minute old while the book is current: a project created after
they were seen no longer holds a reservation, yet is not in that ``remaining`` either. ``spent`` keeps
the last minutes' creations, so that they are taken off a ``remaining`` seen before them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from opus_pipeline.domain.media_probe import credits_estimate
from opus_pipeline.errors import PermanentError

USAGE_FRESH_SECONDS = 60.0  # a decision reads OpusClip's numbers at most this old
UNCAPPED_FRESH_SECONDS = 3600.0  # an uncapped answer is believed this long: no call per video
SPENT_KEPT_SECONDS = 2 * USAGE_FRESH_SECONDS  # longer than any ``remaining`` a decision believes
WAITING_FOR_CREDITS = "credits"
WAITING_FOR_SLOT = "slot"


def estimate(duration_seconds: float, clip_range: tuple[int, int] | None) -> int:
    """The credits a project of this video costs: of its ``opus-range`` when one is set."""
    seconds = duration_seconds if clip_range is None else clip_range[1] - clip_range[0]
    return credits_estimate(seconds)


def check_video(duration_seconds: float, clip_range: tuple[int, int] | None, max_seconds: int) -> None:
    """Refuse what OpusClip would refuse after the whole upload: ``PermanentError`` saying what to do."""
    if duration_seconds > max_seconds:
        raise PermanentError(
            f"the video is {duration_seconds:.0f} s long, over the limit of {max_seconds} s "
            "(OpusClip takes videos up to 10 hours; MAX_VIDEO_SECONDS); cut it into parts and upload them",
            reason="too-long",
        )
    if clip_range is not None and clip_range[1] > math.ceil(duration_seconds):
        raise PermanentError(
            f"opus-range ends at {clip_range[1]} s but the video is {duration_seconds:.1f} s long; "
            "set an opus-range within the video and upload again",
            reason="bad-range",
        )


# After a monthly-cap wait: a refusal that says OpusClip no longer has the upload is met by sending the
# video again this many times at most, so a refusal that is really about something else costs at most
# one upload more, never a loop.
MAX_REUPLOADS = 1
UPLOAD_GONE = "upload-gone"  # the failure reason once the video was sent again and still refused
# 4xx answers that say something other than "no such upload": the key (401, and 403 without the cap's
# code), the credits (402), the rate (429). A re-upload cannot fix any of them.
_NOT_ABOUT_THE_UPLOAD = frozenset({401, 402, 403, 429})


class Refusal(Enum):
    """What a refused create call means for the video's upload."""

    FAIL = "fail"  # a refusal like any other: the video fails as OpusClip said
    UPLOAD_AGAIN = "upload-again"  # OpusClip no longer has the upload the video kept over a cap wait
    GONE_AGAIN = "gone-again"  # refused so again after the re-upload: the video fails for good (upload-gone)


def refusal(status: int | None, upload_waited: bool, reuploads: int) -> Refusal:
    """Whether OpusClip's refusal (HTTP ``status``) of a create call says it no longer has the video's
    upload, and whether the video may be sent again.

    Inferred, not documented: OpusClip says neither how long it keeps an upload nor what a create
    naming one it dropped is answered (api-facts Unknowns 6); an unknown upload gets a 4xx. A 4xx that
    is not about the key, the credits or the rate is read so only where it is likely: for an upload
    that waited out a monthly cap (``upload_waited``: kept at OpusClip until ``reset_at``, perhaps
    weeks), or one sent again already. ``reuploads`` bounds it (``MAX_REUPLOADS``)."""
    if status is None or not 400 <= status < 500 or status in _NOT_ABOUT_THE_UPLOAD:
        return Refusal.FAIL
    if reuploads >= MAX_REUPLOADS:
        return Refusal.GONE_AGAIN
    return Refusal.UPLOAD_AGAIN if upload_waited else Refusal.FAIL


LOW_SHARE = 0.1  # of the monthly limit: below it the credits are running low


def running_low(usage: Usage, oldest_waiting: int) -> bool:
    """Whether OpusClip's remaining credits fall below the oldest waiting video's estimate or a tenth
    of the limit: what the alert fires on."""
    return not usage.uncapped and usage.remaining < max(oldest_waiting, LOW_SHARE * usage.limit)


def month_of(wall: float) -> str:
    """The UTC calendar month a moment falls in (OpusClip's allowance resets on the 1st, UTC)."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m")


def epoch_of(iso: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 moment (``Z`` accepted); None when absent or unreadable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Usage:
    """OpusClip's monthly numbers as seen at ``seen_at`` (wall seconds), from ``GET /api/api-usage``
    or from the ``X-RateLimit-*`` headers of any answer."""

    uncapped: bool
    used: int = 0
    limit: int = 0
    remaining: int = 0
    reset_at: str | None = None
    seen_at: float = 0.0

    def fresh(self, now: float, max_age: float = USAGE_FRESH_SECONDS) -> bool:
        """Whether still to be believed: ``max_age`` seconds (an uncapped answer: an hour)."""
        return now - self.seen_at <= (UNCAPPED_FRESH_SECONDS if self.uncapped else max_age)

    @classmethod
    def from_answer(cls, body: Any, now: float) -> Usage | None:
        """The ``api-usage`` answer; None when it is neither of the documented shapes."""
        if not isinstance(body, Mapping):
            return None
        if body.get("uncapped") is True:
            return cls(uncapped=True, seen_at=now)
        monthly = body.get("monthly")
        if not isinstance(monthly, Mapping):
            return None
        used, limit, remaining = (_whole(monthly.get(key)) for key in ("used", "limit", "remaining"))
        if used is None or limit is None or remaining is None:
            return None
        reset_at = monthly.get("reset_at")
        return cls(False, used, limit, remaining, reset_at if isinstance(reset_at, str) else None, now)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float) -> Usage | None:
        """``X-RateLimit-Limit/Remaining/Reset``; None without them. Read leniently, never raising: a
        header is a hint riding on an answer that may have spent credits, and must not fail it."""
        try:
            limit, remaining = _whole(headers.get("X-RateLimit-Limit")), _whole(headers.get("X-RateLimit-Remaining"))
            if limit is None or remaining is None or limit < 0:
                return None
            reset_at = reset_moment(headers.get("X-RateLimit-Reset"), now)
            return cls(False, limit - remaining, limit, remaining, reset_at, now)
        except Exception:  # any header, however odd, is only ignored
            return None


_EPOCH_MS_FROM = 100_000_000_000  # a number at least this large is epoch milliseconds (year 5138 in seconds)
_EPOCH_S_FROM = 1_000_000_000  # below it, a number is seconds from now (2001 in epoch seconds)
_LATEST_YEAR = 9999


def reset_moment(raw: str | None, now: float) -> str | None:
    """``X-RateLimit-Reset`` as an ISO-8601 moment (``Z``): epoch seconds, epoch milliseconds,
    seconds from now, or ISO-8601 already; None for anything else (ignored, never an error)."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text if epoch_of(text) is not None else None
    if not math.isfinite(number) or number < 0:
        return None
    seconds = number / 1000 if number >= _EPOCH_MS_FROM else number if number >= _EPOCH_S_FROM else now + number
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if moment.year > _LATEST_YEAR:
        return None
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class CreditBook:
    """The credits the pipeline has promised this month, shared by every instance (kept spread over
    objects by ``gcs/credit_ledger.py``: a reservation, a place, a creation each its own)."""

    month: str = ""
    created: int = 0
    reserved: dict[str, int] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)  # {"key", "credits", "since", "notBefore"}
    spent: list[list[float]] = field(default_factory=list)  # [when, credits] of the last minutes' creations
    counted: dict[str, int] = field(default_factory=dict)  # video key → the credits its creation counted

    @classmethod
    def from_json(cls, raw: bytes | None) -> CreditBook:
        """The book as the one object ``credits/book.json`` kept it before it was spread (the upgrade
        takes it over: ``gcs/credit_ledger.py``)."""
        return cls(**json.loads(raw)) if raw else cls()

    def roll(self, month: str) -> None:
        """A new month: the budget counts from zero again."""
        if month != self.month:
            self.month, self.created, self.counted = month, 0, {}

    def room(self, usage: Usage, budget: int | None) -> int | None:
        """The credits a newly admitted video may take now; None when nothing limits them."""
        held = sum(self.reserved.values())
        unseen = sum(credits for when, credits in self.spent if when >= usage.seen_at)
        limits = [] if usage.uncapped else [usage.remaining - held - int(unseen)]
        if budget is not None:
            limits.append(budget - self.created - held)
        return min(limits) if limits else None

    def waiting_entry(self, key: str) -> dict[str, Any] | None:
        return next((w for w in self.waiting if w["key"] == key), None)

    def ask(self, key: str, credits: int, now: float, usage: Usage, budget: int | None) -> bool:
        """Admit ``key`` if its estimate fits (it is then reserved), else queue it; whether admitted."""
        if key in self.reserved:
            return True
        room = self.room(usage, budget)
        if self.waiting_entry(key) is None and (room is None or credits <= room):
            self.reserved[key] = credits
            return True
        self.wait(key, credits, now)
        return False

    def wait(self, key: str, credits: int, now: float, not_before: float | None = None) -> None:
        """Queue ``key`` (a reservation it held is given up), admitted no earlier than ``not_before``."""
        self.reserved.pop(key, None)
        entry = self.waiting_entry(key)
        if entry is None:
            self.waiting.append({"key": key, "credits": credits, "since": now, "notBefore": not_before})
        elif not_before is not None:
            entry["notBefore"] = not_before

    def admit_due(self, usage: Usage, budget: int | None, now: float) -> list[str]:
        """Oldest first, the waiting videos that fit now (a smaller one behind a big one may go)."""
        admitted = []
        for entry in list(self.waiting):
            room = self.room(usage, budget)
            if (entry.get("notBefore") or 0) > now or (room is not None and entry["credits"] > room):
                continue
            self.waiting.remove(entry)
            self.reserved[entry["key"]] = entry["credits"]
            admitted.append(entry["key"])
        return admitted

    def settle(self, key: str, created: bool, now: float, credits: int | None = None) -> None:
        """The video's project was created (its estimate now counts against the budget) or will
        not be: its reservation and its place in the queue are given up. A creation without a
        reservation (a forged request, a lost book write) is counted at its place's estimate or at
        ``credits`` (the record's), never as free; a creation settled again (a redelivery, a
        settling after a crash) is counted once."""
        reserved = self.reserved.pop(key, None)
        entry = self.waiting_entry(key)
        self.waiting = [w for w in self.waiting if w["key"] != key]
        self.spent = [s for s in self.spent if s[0] > now - SPENT_KEPT_SECONDS]
        if reserved is None:
            reserved = entry["credits"] if entry is not None else credits
        if created and reserved and key not in self.counted:
            self.created += reserved
            self.spent.append([now, reserved])
            self.counted[key] = reserved

    def spend(self, credits: int, now: float) -> None:
        """Credits spent outside a project (an X post: 1), counted as a created project's are."""
        self.spent = [s for s in self.spent if s[0] > now - SPENT_KEPT_SECONDS]
        self.created += credits
        self.spent.append([now, credits])
