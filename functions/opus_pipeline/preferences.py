"""Per-video preferences: ``opus-*`` object metadata ⇄ OpusClip request fields.

Pure logic. The same parser reads the deploy-wide defaults (``OPUS_DEFAULT_*`` variables) and the
per-video object metadata, so both accept exactly the same syntax and fail with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import PermanentError

GENRES = (
    "Auto",
    "Q&A",
    "Commentary",
    "Marketing",
    "Webinar",
    "Motivational speech",
    "Podcast",
    "Academic",
    "Listicle",
    "Product reviews",
    "How-to",
    "Comedy",
    "Sports commentary",
    "Church",
    "News",
    "Vlog",
    "Gaming",
    "Others",
)
CLIP_DURATIONS = ((0, 30), (30, 60), (60, 90), (90, 180), (0, 90))
METADATA_PREFIX = "opus-"

# Keys this pipeline writes itself to show status; they are not preferences.
STATUS_KEYS = frozenset(
    {"opus-status", "opus-upload-id", "opus-project-id", "opus-error", "opus-stage", "opus-clip-count", "opus-clips"}
)

_LANG = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class PreferenceError(PermanentError):
    """A preference value is invalid; the message names the key and what is accepted."""

    reason = "bad-metadata"


@dataclass(frozen=True)
class Preferences:
    """Validated preferences, named as OpusClip names them; ``None`` means "not set"."""

    genre: str | None = None
    topicKeywords: tuple[str, ...] | None = None  # noqa: N815 - OpusClip's field name
    clipDurations: tuple[tuple[int, int], ...] | None = None  # noqa: N815
    range: tuple[int, int] | None = None
    sourceLang: str | None = None  # noqa: N815
    brandTemplateId: str | None = None  # noqa: N815
    skipCurate: bool | None = None  # noqa: N815

    def to_message(self) -> dict[str, Any]:
        """JSON-ready dict of the set fields only (the message contract's ``preferences``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "range":
                value = {"startSec": value[0], "endSec": value[1]}
            elif f.name == "clipDurations":
                value = [list(pair) for pair in value]
            elif f.name == "topicKeywords":
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Preferences:
        """Rebuild from a message's ``preferences`` (raises PreferenceError on a wrong shape)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreferenceError(f"unknown preference field(s): {', '.join(unknown)}")
        try:
            rng = data.get("range")
            durations = data.get("clipDurations")
            keywords = data.get("topicKeywords")
            prefs = cls(
                genre=data.get("genre"),
                topicKeywords=tuple(keywords) if keywords is not None else None,
                clipDurations=(tuple((int(a), int(b)) for a, b in durations) if durations is not None else None),
                range=(int(rng["startSec"]), int(rng["endSec"])) if rng is not None else None,
                sourceLang=data.get("sourceLang"),
                brandTemplateId=data.get("brandTemplateId"),
                skipCurate=data.get("skipCurate"),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise PreferenceError(f"malformed preferences: {exc}") from None
        return normalize(prefs)

    def over(self, defaults: Preferences) -> Preferences:
        """These values where set, ``defaults`` elsewhere."""
        merged = {
            f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
            for f in fields(self)
        }
        return Preferences(**merged)


def _parse_genre(key: str, raw: str) -> str:
    for genre in GENRES:
        if raw.strip().lower() == genre.lower():
            return genre
    raise PreferenceError(f"{key}={raw!r} is not a genre; use one of: {', '.join(GENRES)}")


def _parse_keywords(key: str, raw: str) -> tuple[str, ...]:
    words = tuple(w.strip() for w in raw.split(",") if w.strip())
    if not words:
        raise PreferenceError(f"{key} is empty; give comma-separated keywords, e.g. 'AI,startups'")
    return words


def _parse_pair(key: str, raw: str) -> tuple[int, int]:
    match = _RANGE.match(raw)
    if not match:
        raise PreferenceError(f"{key}={raw!r} is not START-END in whole seconds, e.g. '30-600'")
    start, end = int(match.group(1)), int(match.group(2))
    if start >= end:
        raise PreferenceError(f"{key}={raw!r}: START must be less than END")
    return start, end


def _parse_durations(key: str, raw: str) -> tuple[tuple[int, int], ...]:
    allowed = ", ".join(f"{a}-{b}" for a, b in CLIP_DURATIONS)
    pairs = []
    for part in raw.split(","):
        try:
            pair = _parse_pair(key, part)
        except PreferenceError:
            raise PreferenceError(
                f"{key}={raw!r}: {part.strip()!r} is not a clip duration; use any of {allowed}"
            ) from None
        if pair not in CLIP_DURATIONS:
            raise PreferenceError(f"{key}={raw!r}: {part.strip()} is not offered; use any of {allowed}")
        if pair not in pairs:
            pairs.append(pair)
    return tuple(pairs)


def _parse_lang(key: str, raw: str) -> str:
    value = raw.strip()
    if not _LANG.match(value):
        raise PreferenceError(f"{key}={raw!r}: use 'auto' or an ISO-639 code such as 'en' or 'de'")
    return value


def _parse_text(key: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise PreferenceError(f"{key} is empty")
    return value


def _parse_bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise PreferenceError(f"{key}={raw!r}: use 'true' or 'false'")
    return value == "true"


# metadata key suffix → (Preferences field, parser)
_PARSERS = {
    "genre": ("genre", _parse_genre),
    "topic-keywords": ("topicKeywords", _parse_keywords),
    "clip-durations": ("clipDurations", _parse_durations),
    "range": ("range", _parse_pair),
    "source-lang": ("sourceLang", _parse_lang),
    "brand-template-id": ("brandTemplateId", _parse_text),
    "skip-curate": ("skipCurate", _parse_bool),
}
METADATA_KEYS = tuple(METADATA_PREFIX + suffix for suffix in _PARSERS)


def parse_metadata(metadata: Mapping[str, str] | None) -> Preferences:
    """Validate an object's ``opus-*`` custom metadata; other keys are the user's own business."""
    values: dict[str, Any] = {}
    for key, raw in (metadata or {}).items():
        lowered = key.lower()
        if not lowered.startswith(METADATA_PREFIX) or lowered in STATUS_KEYS:
            continue
        suffix = lowered[len(METADATA_PREFIX) :]
        if suffix not in _PARSERS:
            raise PreferenceError(f"unknown metadata key {key!r}; the accepted keys are {', '.join(METADATA_KEYS)}")
        field_name, parser = _PARSERS[suffix]
        values[field_name] = parser(key, str(raw))
    return Preferences(**values)


def to_metadata(prefs: Preferences) -> dict[str, str]:
    """The ``opus-*`` metadata that ``parse_metadata`` reads back as ``prefs`` (used by the CLI)."""
    out = {}
    for suffix, (field_name, _) in _PARSERS.items():
        value = getattr(prefs, field_name)
        if value is None:
            continue
        if field_name == "clipDurations":
            text = ",".join(f"{a}-{b}" for a, b in value)
        elif field_name == "range":
            text = f"{value[0]}-{value[1]}"
        elif field_name == "topicKeywords":
            text = ",".join(value)
        elif field_name == "skipCurate":
            text = "true" if value else "false"
        else:
            text = value
        out[METADATA_PREFIX + suffix] = text
    return out


def normalize(prefs: Preferences) -> Preferences:
    """Validate ``prefs`` built from elsewhere by reading it back through the metadata parser."""
    return parse_metadata(to_metadata(prefs))
