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
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, get_type_hints

from opus_pipeline.domain.publishing import PUBLISH_KEYS
from opus_pipeline.domain.publishing import STATUS_KEY as PUBLISH_STATUS_KEY
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
CLIP_DURATIONS = ((0, 30), (30, 60), (60, 90), (90, 180), (0, 90))  # the buckets OpusClip's API description offers
MAX_CLIP_SECONDS = 180  # OpusClip's own client also sends "up to N seconds" pairs [0, N], 1 <= N <= 180
# OpusClip's API description: "Default value is [0, 90]"; its own client: "API rejects payloads without
# curationPref.clipDurations". So the default is always sent when nobody chose durations.
DEFAULT_CLIP_DURATIONS = ((0, 90),)
MODELS = ("ClipBasic", "ClipAnything")  # talking head | any content
ASPECT_RATIOS = ("portrait", "landscape", "square")  # the OpenAPI enum LayoutAspectRatio
MAX_PROMPT_CHARS = 1000
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
        PUBLISH_STATUS_KEY,
    }
)

_LANG = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{2,8})*)$")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _one_of(what: str, values: tuple[str, ...]) -> Callable[[str, str], str]:
    """A parser of one of ``values``, any case, answering with OpusClip's spelling."""

    def parse(key: str, raw: str) -> str:
        for value in values:
            if raw.strip().lower() == value.lower():
                return value
        raise PreferenceError(f"{key}={raw!r} is not {what}; use one of: {', '.join(values)}")

    return parse


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


def _offered(pair: tuple[int, int]) -> bool:
    """One of the documented buckets, or "up to N seconds" as OpusClip's own client sends it."""
    return pair in CLIP_DURATIONS or (pair[0] == 0 and 1 <= pair[1] <= MAX_CLIP_SECONDS)


def _parse_durations(key: str, raw: str) -> tuple[tuple[int, int], ...]:
    allowed = ", ".join(f"{a}-{b}" for a, b in CLIP_DURATIONS) + f" or 0-N with N up to {MAX_CLIP_SECONDS}"
    pairs = []
    for part in raw.split(","):
        try:
            pair = _parse_pair(key, part)
        except PreferenceError:
            raise PreferenceError(
                f"{key}={raw!r}: {part.strip()!r} is not a clip duration; use any of {allowed}"
            ) from None
        if not _offered(pair):
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


def _parse_prompt(key: str, raw: str) -> str:
    value = _parse_text(key, raw)
    if len(value) > MAX_PROMPT_CHARS:
        raise PreferenceError(f"{key} has {len(value)} characters; OpusClip takes at most {MAX_PROMPT_CHARS}")
    return value


def _parse_bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise PreferenceError(f"{key}={raw!r}: use 'true' or 'false'")
    return value == "true"


def _whole_number(low: int, high: int | None, what: str) -> Callable[[str, str], int]:
    """A parser of a whole number from ``low`` (to ``high``), ``what`` saying what it counts."""

    def parse(key: str, raw: str) -> int:
        value = raw.strip()
        number = int(value) if value.isascii() and value.isdigit() else None
        if number is None or number < low or (high is not None and number > high):
            bound = f"from {low}" if high is None else f"from {low} to {high}"
            raise PreferenceError(f"{key}={raw!r}: use a whole number {bound} ({what})")
        return number

    return parse


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
PROMPT = Syntax(_parse_prompt, f"free text, at most {MAX_PROMPT_CHARS} characters")
GENRE = Syntax(_one_of("a genre", GENRES), "an OpusClip genre, any case")
MODEL = Syntax(_one_of("a clipping model", MODELS), " or ".join(MODELS))
ASPECT_RATIO = Syntax(_one_of("an aspect ratio", ASPECT_RATIOS), ", ".join(ASPECT_RATIOS))
LANGUAGE = Syntax(_parse_lang, "auto or an ISO-639 code")
TRUE_FALSE = Syntax(_parse_bool, "true or false", text=lambda value: "true" if value else "false")
CLIP_COUNT = Syntax(_whole_number(1, None, "how many clips"), "a whole number from 1")
SCORE = Syntax(_whole_number(0, 100, "OpusClip's clip score"), "a whole number from 0 to 100")
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
    "comma-separated of " + ", ".join(map(_pair_text, CLIP_DURATIONS)) + f" or 0-N (N <= {MAX_CLIP_SECONDS})",
    text=lambda pairs: ",".join(map(_pair_text, pairs)),
    to_json=lambda pairs: [list(pair) for pair in pairs],
    from_json=lambda pairs: tuple((int(a), int(b)) for a, b in pairs),
)

# Where a preference goes in the ``CreateClipProjectCommand`` body: the dotted path of the object that
# holds its field ("" is the body itself).
CURATION = "curationPref"
IMPORT = "importPref"
RENDER = "renderPref"
QUICKSTART = "renderPref.quickstartConfig"
VIDEO = "uploadedVideoAttr"
TOP = ""
PIPELINE = None  # read by the pipeline itself (which clips to copy), never sent to OpusClip


@dataclass(frozen=True)
class Preference:
    """One preference, declared once; every place that handles preferences derives from it."""

    suffix: str  # the metadata key after ``opus-``
    field: str  # OpusClip's name (the pipeline's own when not sent): the message key, the attribute, the field
    place: str | None  # the dotted path of the object holding the field in the request body, e.g. CURATION;
    # TOP; PIPELINE: not in the request
    syntax: Syntax
    flag: str  # the ``opus-pipeline upload`` option
    example: str  # a valid value, for the CLI's help
    deploy_default: bool = True  # False: per video only, no OPUS_DEFAULT_* variable

    @property
    def key(self) -> str:
        return METADATA_PREFIX + self.suffix

    @property
    def sent(self) -> bool:
        """Whether OpusClip receives it in the clip-project request."""
        return self.place is not PIPELINE

    @property
    def path(self) -> tuple[str, ...]:
        """The names leading from the request body to the object that holds the field."""
        return tuple(self.place.split(".")) if self.place else ()

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
    Preference("model", "model", CURATION, MODEL, "--model", "ClipAnything"),
    Preference("prompt", "customPrompt", CURATION, PROMPT, "--prompt", "the moments where the host laughs"),
    Preference("aspect-ratio", "layoutAspectRatio", RENDER, ASPECT_RATIO, "--aspect-ratio", "landscape"),
    Preference(
        "remove-filler-words", "enableRemoveFillerWords", QUICKSTART, TRUE_FALSE, "--remove-filler-words", "true"
    ),
    Preference("auto-hook", "enableAutoHook", CURATION, TRUE_FALSE, "--auto-hook", "true"),
    Preference("captions", "enableCaption", RENDER, TRUE_FALSE, "--captions", "false"),
    Preference("copy-top", "copyTop", PIPELINE, CLIP_COUNT, "--copy-top", "3"),
    Preference("min-score", "minScore", PIPELINE, SCORE, "--min-score", "80"),
    # Without a title of its own (or OPUS_DEFAULT_TITLE, which names every video alike and is
    # rarely wanted), a video is titled by its file name: see ``built_in``.
    Preference("title", "title", VIDEO, TEXT, "--title", "Episode 12: the launch"),
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
        return replace(defaults, **{pref.field: value for pref, value in self.set_items()})  # type: ignore[type-var]


if TYPE_CHECKING:
    # The fields are made from the table at import time, which a type checker cannot follow: to it,
    # Preferences takes and has any field (each is checked against the table when it is built).
    class Preferences(_PreferenceMethods):
        def __init__(self, **fields: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...

else:
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
        if not lowered.startswith(METADATA_PREFIX) or lowered in STATUS_KEYS or lowered in PUBLISH_KEYS:
            continue  # publishing's keys are read by ``domain/publishing.choice``
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


def check_combination(prefs: Preferences) -> None:
    """Refuse what OpusClip would silently ignore, so that nobody pays a whole upload for a choice
    that has no effect: a prompt is read by ClipAnything only, topic keywords by ClipBasic only."""
    anything = prefs.model == "ClipAnything"
    if prefs.customPrompt is not None and not anything:
        raise PreferenceError(
            "opus-prompt is only read by the ClipAnything model (OpusClip ignores it otherwise); "
            "set opus-model=ClipAnything or drop opus-prompt"
        )
    if prefs.topicKeywords is not None and anything:
        raise PreferenceError(
            "opus-topic-keywords are only read by the ClipBasic model (OpusClip ignores them with ClipAnything); "
            "drop them, or say what to look for with opus-prompt"
        )


def built_in(source_name: str) -> Preferences:
    """What is sent when neither the video nor the deploy chose: OpusClip's documented clip durations
    (its API refuses a project without them) and the file name, without folders and extension, as title."""
    name = PurePosixPath(source_name).name
    return Preferences(clipDurations=DEFAULT_CLIP_DURATIONS, title=PurePosixPath(name).stem or name)


def effective(video: Preferences, defaults: Preferences, source_name: str) -> Preferences:
    """The project's preferences: the video's, else the deploy's, else the built-in ones; refused
    (``PreferenceError``) when the combination is one OpusClip would ignore."""
    prefs = video.over(defaults)
    check_combination(prefs)
    return prefs.over(built_in(source_name))
