"""A create call that spends credits, once it may have been acted on, is never sent again blind. Pure logic.

``POST /api/clip-projects`` has no idempotency key. So the video's record says "sent" (durably, by
compare-and-swap) before the call, and an answer that does not say what OpusClip did (lost, a 5xx,
a 2xx without a readable id) leaves the creation *ambiguous*. Before any second POST the project is
looked for in the workspace's project list (``GET /api/clip-projects?q=mine``, newest first): by the
upload's id where an item names its source, else by its title and a creation time after the first
attempt (``find_project``). Found, it is adopted; not found within ``CREATE_GRACE_SECONDS`` of the
last attempt, the video waits; past it, the video is created again, at most ``MAX_CREATE_ATTEMPTS``
times in all; then it fails (``create-unconfirmed``) saying to look in OpusClip (``decide``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from opus_pipeline.domain.credits import epoch_of
from opus_pipeline.domain.numbers import finite

CREATE_GRACE_SECONDS = 300.0  # OPUS_CREATE_GRACE_SECONDS' default: how long a project is looked for before another
MAX_CREATE_ATTEMPTS = 3  # create calls sent for one upload, in all
CLOCK_SKEW_SECONDS = 60.0  # OpusClip's ``createdAt`` against our clock, when matching by title and time
UNCONFIRMED = "create-unconfirmed"  # the failure reason past the last attempt
# The fields of a project-list item that may name its source (OpenAPI ``sourceId``; OpusClip's CLI
# shows ``source_video_id``).
_SOURCE_ID_FIELDS = ("sourceId", "sourceVideoId", "source_video_id")
UPLOADED_PLATFORM = "UPLOADED"  # OpenAPI ``sourcePlatform`` of a project made from an upload
EPOCH_MILLISECONDS_FROM = 1e11  # a numeric ``createdAt`` above this is in milliseconds (1e11 s is in 5138)
MAX_LIST_PAGES = 10  # pages of the project list looked through for one upload's project (1,000 projects)


def project_id_of(answer: Any) -> str | None:
    """The project id of a create answer or a list item (``id`` or ``projectId``); None when there is no
    usable one (absent, empty, not text, or with control characters)."""
    if not isinstance(answer, Mapping):
        return None
    for key in ("id", "projectId"):
        value = answer.get(key)
        if isinstance(value, str) and value.strip() and value.isprintable():
            return value
    return None


@dataclass(frozen=True)
class Sought:
    """What is known of the project an ambiguous create may have made."""

    upload_id: str
    title: str | None
    since: float  # wall seconds: when the first create call of this upload was sent


def _names_source(item: Mapping[str, Any]) -> list[str]:
    named = [item.get(field) for field in _SOURCE_ID_FIELDS]
    uri = item.get("sourceUri")
    return [value for value in [*named, uri] if isinstance(value, str) and value]


def _names(value: str, upload_id: str) -> bool:
    """Whether ``value`` holds ``upload_id`` whole: bare, or between characters that are not letters
    or digits (``UPLOADED_<id>``, ``…/<id>.mp4``); ``up_10`` does not name ``up_1``."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(upload_id)}(?![A-Za-z0-9])"
    return re.search(pattern, value) is not None


def _another_upload(value: str, upload_id: str) -> bool:
    """Whether ``value`` is an upload id of the kind ``upload_id`` is (the same prefix, up to its last
    character that is not a letter or a digit: ``up_`` of ``up_1``) other than it."""
    head = re.match(r"^(.*[^A-Za-z0-9])", upload_id)
    return head is not None and value != upload_id and value.startswith(head.group(1))


def _title(item: Mapping[str, Any]) -> str | None:
    info = item.get("sourceInfo")
    title = info.get("title") if isinstance(info, Mapping) else None
    return title if isinstance(title, str) else None


def _created_at(item: Mapping[str, Any]) -> float | None:
    """``createdAt`` in seconds: ISO 8601 as the OpenAPI has it, or epoch seconds or milliseconds."""
    value = item.get("createdAt")
    if isinstance(value, str):
        return epoch_of(value)
    number = finite(value)
    if number is None or number <= 0:
        return None
    return number / 1000.0 if number > EPOCH_MILLISECONDS_FROM else number


def matches(item: Mapping[str, Any], sought: Sought) -> bool | None:
    """True: the item is the upload's project (a source field names the upload id, bare or within a
    longer id or URI, and it was not made before the first attempt: an older one is a project the
    upload had before ``retry --new-project``); False: it is not (made before the first attempt, a
    source of another platform than an upload, or naming another upload of the kind ours is, or
    another title); None: its title and creation time fit. A source that names no upload proves
    nothing: OpusClip's OpenAPI requires a ``sourceId`` on every project and does not say what it
    holds for an upload (its example, ``YT_tEXaoozFRes``, is prefixed)."""
    if project_id_of(item) is None:
        return False
    created = _created_at(item)
    if created is not None and created < sought.since - CLOCK_SKEW_SECONDS:
        return False
    sources = _names_source(item)
    if sought.upload_id and any(_names(value, sought.upload_id) for value in sources):
        return True
    platform = item.get("sourcePlatform")
    if isinstance(platform, str) and platform and platform.upper() != UPLOADED_PLATFORM:
        return False  # imported from a link (YOUTUBE, GDRIVE…): never an upload of ours
    if any(_another_upload(value, sought.upload_id) for value in sources):
        return False  # another video's upload: its title may well be the same
    fits = sought.title is not None and _title(item) == sought.title and created is not None
    return None if fits else False


class Found(Enum):
    ONE = "one"
    NONE = "none"
    SEVERAL = "several"  # more than one project fits by title and time: which is ours cannot be told


def find_project(items: Iterable[Mapping[str, Any]], sought: Sought) -> tuple[Found, list[Mapping[str, Any]]]:
    """The upload's project in a project list, with any others that name the upload too (OpusClip
    made several of it: the first is adopted, oldest first, and the others are reported; one listed
    twice is one); else the one
    item whose title and time fit; several such, none is chosen (``Found.SEVERAL``)."""
    sure: list[Mapping[str, Any]] = []
    likely: list[Mapping[str, Any]] = []
    # a project on two pages (the list moved on between them, newest first) is one project
    for item in {project_id_of(item): item for item in items}.values():
        verdict = matches(item, sought)
        if verdict is True:
            sure.append(item)
        elif verdict is None:
            likely.append(item)
    if sure:
        return Found.ONE, sorted(sure, key=lambda item: _created_at(item) or 0.0)
    if len(likely) == 1:
        return Found.ONE, likely
    return (Found.SEVERAL if likely else Found.NONE), []


def listing_complete(page: Sequence[Mapping[str, Any]], page_size: int, since: float) -> bool:
    """Whether no later page of the project list (newest first) can hold a project made since the
    first attempt: this page is short, or its oldest item was made before that attempt (less the
    clock skew)."""
    if len(page) < page_size:
        return True
    made = [t for t in (_created_at(item) for item in page) if t is not None]
    return bool(made) and min(made) < since - CLOCK_SKEW_SECONDS


class Next(Enum):
    """What an ambiguous creation does after its look at the project list found nothing."""

    WAIT = "wait"  # within the grace: OpusClip may not list it yet; look again later
    CREATE = "create"  # nothing after the grace: create again (an attempt is left)
    GIVE_UP = "give-up"  # no attempt is left, or several projects may be ours: a person looks in OpusClip


def decide(
    found: Found,
    attempts: int,
    last_sent_at: float,
    now: float,
    grace: float = CREATE_GRACE_SECONDS,
    complete: bool = True,
) -> Next:
    """After ``attempts`` create calls, the last sent at ``last_sent_at``, and a project list look that
    found nothing surely ours; ``grace``: how long OpusClip may take to list a project it made;
    ``complete``: whether the look reached back to the first attempt (``listing_complete``). A look
    that did not (more than ``MAX_LIST_PAGES`` pages of projects since) never creates again."""
    if found is Found.SEVERAL:
        return Next.GIVE_UP
    if now - last_sent_at < grace:
        return Next.WAIT
    return Next.CREATE if attempts < MAX_CREATE_ATTEMPTS and complete else Next.GIVE_UP
