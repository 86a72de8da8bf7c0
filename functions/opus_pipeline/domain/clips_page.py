"""The clips page, ``gs://OUTPUT/<source name>/index.html``, written beside ``clips.json``.

A person opens it from the Cloud console and watches the clips in place, best first. It is one
self-contained HTML5 file because it is opened through the console's authenticated URL, where
nothing else can be assumed reachable, and because everything on it but the layout comes from
OpusClip: titles, descriptions, hashtags, ids, errors and URLs are text we did not write. So:

* the page is a Jinja2 template (``templates/clips_page.html``) with autoescape on: every value
  lands escaped, in text and in attributes (``html.escape``'s entities); nothing is marked safe
  (the style is the template's own text);
* a URL goes into an attribute only after a scheme check (``https://`` for OpusClip's links) or,
  for our own copies, as a relative path built from the copy's ``gs://`` URI whose every segment
  is percent-encoded, so no name can end the attribute, add a scheme or climb out of the folder;
* there is no JavaScript at all, and a Content-Security-Policy ``<meta>`` that forbids scripts and
  any load but same-origin media and images (and inline ``data:`` images), so even markup that
  slipped through could neither run nor phone out.

Not verified from here: whether the console's authenticated URL serves the clips from the page's
own origin. If it redirected each object to another host, ``media-src 'self'`` would block the
players, and the policy would need that host.

Pure: no I/O but reading the template once. The conclusion renders it from the manifest it writes.

Manifest keys read (all optional; a missing one is left off the page): ``source.bucket``,
``source.name``, ``projectId``, ``stage``, ``concludedAt`` and ``clips`` (kept in the manifest's
order, which is best first). Of each clip: ``id``, ``title``, ``description``, ``hashtags`` (a
string of ``#tags`` as OpusClip sends it, or a list), ``durationMs``, ``rank``, ``score``,
``isBonusClip``, ``genre``, ``copied``, ``quality`` (a ``"preview"`` copy is labelled so),
``gcsUri``, ``error``, ``uriForExport``, ``uriForPreview``, :data:`THUMBNAIL_KEY` and
:data:`CAPTIONS_KEY`.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from opus_pipeline.domain.numbers import finite

THUMBNAIL_KEY = "thumbnailUri"
"""The manifest key of a clip's copied thumbnail: ``gs://OUTPUT/<source name>/clips/<id>.jpg``,
the same form as ``gcsUri``, set only once that copy exists (the conclusion is to copy OpusClip's
``uriForThumbnail`` there). The page uses it as the player's ``poster``; without it there is none,
because a poster pointing at a file that is not there shows a broken frame."""

CAPTIONS_KEY = "captions"
"""The manifest key of a clip's caption files, ``{"srt": "gs://…", "vtt": "gs://…"}`` beside its
copy; the page offers the WebVTT one as the player's captions ``<track>``."""

POSTS_KEY = "posts"
"""The key of a clip's posts on the page, planned or made (``domain/publishing.page_rows``: ``platform``,
``account``, ``publishAt``, ``state``); only the page's own copy of the manifest carries it."""

CSP = (
    "default-src 'none'; media-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
"""No script, no font, no frame, no fetch; media (caption tracks among it) and images only from the
page's own origin, and ``data:`` images, which load nothing (the icon below is one)."""

ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='3' fill='%233451b2'/%3E"
    "%3Cpath d='M6 4.5v7l5.5-3.5z' fill='%23fff'/%3E%3C/svg%3E"
)
"""The page's own icon, inline: without one, chromium asks the host for ``/favicon.ico``, outside
the page's folder (the console's host root, or another bucket's object)."""


def render_page(manifest: Mapping[str, Any], *, failure: str | None = None) -> str:
    """The whole page for one video's conclusion.

    ``manifest`` is what ``clips.json`` holds (see the module docstring for the keys read); a
    failed project passes what it knows of it (source, project id, stage) and ``failure``, the
    reason and message (e.g. ``"project-stalled: OpusClip stalled the project"``), which the
    page shows with the command that starts over.
    """
    source = _mapping(manifest.get("source"))
    name = _text(source.get("name"))
    clips = [_mapping(c) for c in _sequence(manifest.get("clips"))]
    label = name or "an unnamed video"
    facts = [
        ("Source", f"gs://{_text(source.get('bucket'))}/{_text(source.get('name'))}" if source else ""),
        ("Project", _text(manifest.get("projectId"))),
        ("Stage", _text(manifest.get("stage"))),
        ("Concluded", _text(manifest.get("concludedAt"))),
        ("Clips", str(len(clips))),
    ]
    return _template().render(
        csp=CSP,
        icon=ICON,
        page_title=_title(label, len(clips), failure),
        label=label,
        facts=[(key, value) for key, value in facts if value],
        failure=failure,
        retry=retry_command(source),
        clips=[_card(clip, name) for clip in clips],
    )


def relative_path(gcs_uri: object, source_name: str) -> str | None:
    """The URL of a copy relative to the page, or None when it is not in the page's folder.

    ``gs://OUTPUT/<source name>/clips/a b.mp4`` → ``clips/a%20b.mp4``. Each segment is
    percent-encoded with nothing left safe, so ``"``, ``#``, ``?`` or ``:`` in a name stay part of
    the file name; an empty, ``.`` or ``..`` segment is refused rather than resolved.
    """
    if not isinstance(gcs_uri, str) or not source_name or not gcs_uri.startswith("gs://"):
        return None
    _, slash, key = gcs_uri[len("gs://") :].partition("/")
    prefix = f"{source_name}/"
    if not slash or not key.startswith(prefix):
        return None
    segments = key[len(prefix) :].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return "/".join(quote(segment, safe="") for segment in segments)


def https_url(url: object) -> str | None:
    """``url`` if it is an absolute ``https://`` URL with a host and nothing a browser would
    trim or reinterpret (spaces, controls, backslashes); else None. Never ``javascript:`` and co."""
    if not isinstance(url, str) or url[:8].lower() != "https://":
        return None
    if any(ch <= " " or ch in "\\\x7f" for ch in url):
        return None
    host = url[8:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return url if host and not host.startswith("@") else None


def duration_text(duration_ms: object) -> str | None:
    """``m:ss`` from milliseconds (rounded to the second), None when OpusClip gave no number."""
    if not _is_number(duration_ms) or duration_ms < 0:  # type: ignore[operator]
        return None
    minutes, seconds = divmod(round(duration_ms / 1000), 60)  # type: ignore[operator]
    return f"{minutes}:{seconds:02d}"


def retry_command(source: Mapping[str, Any]) -> str:
    """The CLI command that starts the video over, quoted for a shell (names may hold spaces)."""
    uri = f"gs://{_text(source.get('bucket')) or 'SOURCE'}/{_text(source.get('name')) or 'NAME'}"
    return f"opus-pipeline retry {shlex.quote(uri)}"


# -- pieces -------------------------------------------------------------------------------------


def _title(label: str, count: int, failure: str | None) -> str:
    if failure is not None:
        return f"No clips of {label}: OpusClip did not finish"
    return f"{count} clip{'' if count == 1 else 's'} of {label}"


def _card(clip: Mapping[str, Any], source_name: str) -> dict[str, Any]:
    """What the template shows of one clip: its player (or why there is none), facts and text."""
    title = _text(clip.get("title")) or "Untitled clip"
    meta = []
    if _is_number(clip.get("rank")):
        meta.append(("rank", f"#{_number(clip['rank'])}"))
    if (duration := duration_text(clip.get("durationMs"))) is not None:
        meta.append(("duration", duration))
    if _is_number(clip.get("score")):
        meta.append(("score", f"score {_number(clip['score'])}"))
    if clip.get("isBonusClip") is True:
        meta.append(("bonus", "bonus"))
    if genre := _text(clip.get("genre")):
        meta.append(("genre", genre))
    if clip.get("copied") is True and clip.get("quality") == "preview":
        meta.append(("quality", "preview copy"))
    return {
        "ident": _text(clip.get("id")),
        "title": title,
        "meta": meta,
        "description": _text(clip.get("description")),
        "tags": _hashtags(clip.get("hashtags")),
        "posts": [_post(_mapping(post)) for post in _sequence(clip.get(POSTS_KEY))],
        **_player(clip, source_name),
    }


def _post(post: Mapping[str, Any]) -> dict[str, str]:
    """One post of the clip: where, when, and how it stands (planned, scheduled, published, …)."""
    return {
        "where": " ".join(filter(None, (_text(post.get("platform")), _text(post.get("account"))))),
        "state": _text(post.get("state")),
        "publishAt": _text(post.get("publishAt")),
    }


def _player(clip: Mapping[str, Any], source_name: str) -> dict[str, Any]:
    """The video in place with its poster and caption track, or why there is none and where
    OpusClip keeps it."""
    src = relative_path(clip.get("gcsUri"), source_name) if clip.get("copied") is True else None
    if src is not None:
        vtt = relative_path(_mapping(clip.get(CAPTIONS_KEY)).get("vtt"), source_name)
        return {
            "src": src,
            "poster": relative_path(clip.get(THUMBNAIL_KEY), source_name),
            "tracks": [vtt] if vtt else [],
        }
    if clip.get("copied") is True:
        why = f"The copy at {_text(clip.get('gcsUri')) or '(no gcsUri)'} is not in this page's folder."
    elif clip.get("copied") is False:
        why = f"Not copied: {_text(clip.get('error')) or 'no reason recorded'}"
    else:
        why = "Not copied into the bucket (copying clips is switched off)."
    link = https_url(clip.get("uriForExport")) or https_url(clip.get("uriForPreview"))
    return {"src": None, "why": why, "link": link}


@cache
def _template() -> jinja2.Template:
    """The page's template, beside this module (shipped as package data). Autoescaped, with
    ``html.escape``'s entities (``&quot;``, ``&#x27;``) as the page has always written them."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("clips_page.html")


def _escaped(value: object) -> Markup:
    """Every value the template writes, escaped for text and for quoted attributes alike."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


# -- values from JSON ---------------------------------------------------------------------------


def _text(value: object) -> str:
    """A JSON scalar as text; anything else (object, list, null) as nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, int | float) else ""


def _is_number(value: object) -> bool:
    """Whether ``value`` is a number worth showing (``domain/numbers.py``): a rank or score OpusClip
    got wrong (NaN, an infinity, 309 digits) leaves the fact out instead of failing the page."""
    return finite(value) is not None


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _hashtags(value: object) -> list[str]:
    """OpusClip sends ``"#a #b"``; a list of tags is taken as well."""
    if isinstance(value, str):
        return value.split()
    return [tag for tag in (_text(v) for v in _sequence(value)) if tag]
