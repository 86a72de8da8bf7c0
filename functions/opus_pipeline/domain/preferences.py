"""Per-video preferences: ``opus-*`` object metadata ⇄ OpusClip request fields.

Pure logic. Each preference is declared once, in ``PREFERENCES``; its metadata key, message field,
place in the clip-project request, CLI flag and ``OPUS_DEFAULT_*`` variable all derive from that
line. The same parser reads the deploy-wide defaults and the per-video object metadata, so both
accept exactly the same syntax and fail with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, make_dataclass, replace
from typing import Any, get_type_hints

from opus_pipeline.errors import PreferenceError

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

# Keys this pipeline writes itself to show status; they are not preferences (add new ones here).
STATUS_KEYS = frozenset(
    {
        "opus-status",
        "opus-upload-id",
        "opus-project-id",
        "opus-error",
        "opus-stage",
        "opus-clip-count",
        "opus-clips",
        "opus-queue-position",
        "opus-waiting-for",
        "opus-duration",
        "opus-credits",
    }
)

_LANG = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


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


def _pair_text(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Syntax:
    """One kind of value: read from text (naming ``key`` when it fails), written back, carried in JSON."""

    parse: Callable[[str, str], Any]
    hint: str  # what the text may be, for help
    text: Callable[[Any], str] = str
    to_json: Callable[[Any], Any] = _same
    from_json: Callable[[Any], Any] = _same


TEXT = Syntax(_parse_text, "text")
GENRE = Syntax(_parse_genre, "an OpusClip genre, any case")
LANGUAGE = Syntax(_parse_lang, "auto or an ISO-639 code")
TRUE_FALSE = Syntax(_parse_bool, "true or false", text=lambda value: "true" if value else "false")
KEYWORDS = Syntax(_parse_keywords, "comma-separated", text=",".join, to_json=list, from_json=tuple)
SECONDS_RANGE = Syntax(
    _parse_pair,
    "START-END in whole seconds",
    text=_pair_text,
    to_json=lambda pair: {"startSec": pair[0], "endSec": pair[1]},
    from_json=lambda obj: (int(obj["startSec"]), int(obj["endSec"])),
)
DURATIONS = Syntax(
    _parse_durations,
    "comma-separated of " + ", ".join(map(_pair_text, CLIP_DURATIONS)),
    text=lambda pairs: ",".join(map(_pair_text, pairs)),
    to_json=lambda pairs: [list(pair) for pair in pairs],
    from_json=lambda pairs: tuple((int(a), int(b)) for a, b in pairs),
)

# Where a preference goes in the ``CreateClipProjectCommand`` body.
CURATION = "curationPref"
IMPORT = "importPref"
TOP = ""


@dataclass(frozen=True)
class Preference:
    """One preference, declared once; every place that handles preferences derives from it."""

    suffix: str  # the metadata key after ``opus-``
    field: str  # OpusClip's name: the message key, the ``Preferences`` attribute, the request field
    place: str  # CURATION, IMPORT or TOP (a top-level field) in the request body
    syntax: Syntax
    flag: str  # the ``opus-pipeline upload`` option
    example: str  # a valid value, for the CLI's help
    deploy_default: bool = True  # False: per video only, no OPUS_DEFAULT_* variable

    @property
    def key(self) -> str:
        return METADATA_PREFIX + self.suffix

    @property
    def help(self) -> str:
        return f"{self.syntax.hint}, e.g. {self.example}"

    @property
    def env_var(self) -> str | None:
        """The deploy-wide default's variable, e.g. ``OPUS_DEFAULT_SOURCE_LANG``."""
        return "OPUS_DEFAULT_" + self.suffix.upper().replace("-", "_") if self.deploy_default else None


# A new OpusClip project option is one line here (and its field in create_clip_project.schema.json).
PREFERENCES = (
    Preference("genre", "genre", CURATION, GENRE, "--genre", "Podcast"),
    Preference("topic-keywords", "topicKeywords", CURATION, KEYWORDS, "--keywords", "AI,startups"),
    Preference("clip-durations", "clipDurations", CURATION, DURATIONS, "--clip-durations", "0-30,30-60"),
    Preference("range", "range", CURATION, SECONDS_RANGE, "--range", "30-600", deploy_default=False),
    Preference("source-lang", "sourceLang", IMPORT, LANGUAGE, "--source-lang", "en"),
    Preference("brand-template-id", "brandTemplateId", TOP, TEXT, "--brand-template", "preset-fancy-Karaoke"),
    Preference("skip-curate", "skipCurate", CURATION, TRUE_FALSE, "--skip-curate", "true"),
)
_BY_KEY = {pref.key: pref for pref in PREFERENCES}
_BY_FIELD = {pref.field: pref for pref in PREFERENCES}
METADATA_KEYS = tuple(_BY_KEY)


class _PreferenceMethods:
    """What ``Preferences`` does; its fields are made from ``PREFERENCES`` below."""

    def set_items(self) -> list[tuple[Preference, Any]]:
        """Each preference that is set, with its value, in declaration order."""
        return [(pref, value) for pref in PREFERENCES if (value := getattr(self, pref.field)) is not None]

    def to_message(self) -> dict[str, Any]:
        """JSON-ready dict of the set fields only (the message contract's ``preferences``)."""
        return {pref.field: pref.syntax.to_json(value) for pref, value in self.set_items()}

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> Preferences:
        """Rebuild from a message's ``preferences`` (raises PreferenceError on a wrong shape)."""
        unknown = sorted(set(data) - set(_BY_FIELD))
        if unknown:
            raise PreferenceError(f"unknown preference field(s): {', '.join(unknown)}")
        try:
            values = {name: _BY_FIELD[name].syntax.from_json(raw) for name, raw in data.items() if raw is not None}
            return normalize(Preferences(**values))
        except (TypeError, KeyError, ValueError) as exc:
            raise PreferenceError(f"malformed preferences: {exc}") from None

    def over(self, defaults: Preferences) -> Preferences:
        """These values where set, ``defaults`` elsewhere."""
        return replace(defaults, **{pref.field: value for pref, value in self.set_items()})


Preferences = make_dataclass(
    "Preferences",
    [(p.field, get_type_hints(p.syntax.parse)["return"] | None, field(default=None)) for p in PREFERENCES],
    bases=(_PreferenceMethods,),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "Validated preferences, named as OpusClip names them; ``None`` means not set.",
    },
)


def parse_texts(texts: Iterable[tuple[Preference, str, str]]) -> Preferences:
    """Preferences from (preference, name the user gave it, text): messages name the key, flag or variable."""
    return Preferences(**{pref.field: pref.syntax.parse(name, text) for pref, name, text in texts})


def parse_metadata(metadata: Mapping[str, str] | None) -> Preferences:
    """Validate an object's ``opus-*`` custom metadata; other keys are the user's own business."""
    texts = []
    for key, raw in (metadata or {}).items():
        lowered = key.lower()
        if not lowered.startswith(METADATA_PREFIX) or lowered in STATUS_KEYS:
            continue
        if lowered not in _BY_KEY:
            raise PreferenceError(f"unknown metadata key {key!r}; the accepted keys are {', '.join(METADATA_KEYS)}")
        texts.append((_BY_KEY[lowered], key, str(raw)))
    return parse_texts(texts)


def to_metadata(prefs: Preferences) -> dict[str, str]:
    """The ``opus-*`` metadata that ``parse_metadata`` reads back as ``prefs`` (used by the CLI)."""
    return {pref.key: pref.syntax.text(value) for pref, value in prefs.set_items()}


def normalize(prefs: Preferences) -> Preferences:
    """Validate ``prefs`` built from elsewhere by reading it back through the metadata parser."""
    return parse_metadata(to_metadata(prefs))
