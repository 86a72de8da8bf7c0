"""The clips page, ``gs://OUTPUT/<source name>/index.html``, written beside ``clips.json``.

A person opens it from the Cloud console and watches the clips in place, best first. It is one
self-contained HTML5 file because it is opened through the console's authenticated URL, where
nothing else can be assumed reachable, and because everything on it but the layout comes from
OpusClip: titles, descriptions, hashtags, ids, errors and URLs are text we did not write. So:

* every such string is escaped with ``html.escape(..., quote=True)`` wherever it lands;
* a URL goes into an attribute only after a scheme check (``https://`` for OpusClip's links) or,
  for our own copies, as a relative path built from the copy's ``gs://`` URI whose every segment
  is percent-encoded, so no name can end the attribute, add a scheme or climb out of the folder;
* there is no JavaScript at all, and a Content-Security-Policy ``<meta>`` that forbids scripts and
  any load but same-origin media and images (and inline ``data:`` images), so even markup that
  slipped through could neither run nor phone out.

Not verified from here: whether the console's authenticated URL serves the clips from the page's
own origin. If it redirected each object to another host, ``media-src 'self'`` would block the
players, and the policy would need that host.

Pure: the standard library only, no I/O. The conclusion renders it from the manifest it writes.

Manifest keys read (all optional; a missing one is left off the page): ``source.bucket``,
``source.name``, ``projectId``, ``stage``, ``concludedAt`` and ``clips`` (kept in the manifest's
order, which is best first). Of each clip: ``id``, ``title``, ``description``, ``hashtags`` (a
string of ``#tags`` as OpusClip sends it, or a list), ``durationMs``, ``rank``, ``score``,
``isBonusClip``, ``genre``, ``copied``, ``gcsUri``, ``error``, ``uriForExport`` and
:data:`THUMBNAIL_KEY`.
"""

from __future__ import annotations

import html
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

THUMBNAIL_KEY = "thumbnailUri"
"""The manifest key of a clip's copied thumbnail: ``gs://OUTPUT/<source name>/clips/<id>.jpg``,
the same form as ``gcsUri``, set only once that copy exists (the conclusion is to copy OpusClip's
``uriForThumbnail`` there). The page uses it as the player's ``poster``; without it there is none,
because a poster pointing at a file that is not there shows a broken frame."""

POSTS_KEY = "posts"
"""The key of a clip's posts on the page, planned or made (``domain/publishing.page_rows``: ``platform``,
``account``, ``publishAt``, ``state``); only the page's own copy of the manifest carries it."""

CSP = (
    "default-src 'none'; media-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
"""No script, no font, no frame, no fetch; media and images only from the page's own origin, and
``data:`` images, which load nothing (the icon below is one)."""

ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='3' fill='%233451b2'/%3E"
    "%3Cpath d='M6 4.5v7l5.5-3.5z' fill='%23fff'/%3E%3C/svg%3E"
)
"""The page's own icon, inline: without one, chromium asks the host for ``/favicon.ico``, outside
the page's folder (the console's host root, or another bucket's object)."""

_CSS = """
:root { color-scheme: light; --ink: #1d232b; --muted: #5b6673; --line: #dde2e8; --card: #fff;
  --bg: #f3f5f8; --accent: #3451b2; --warn: #9a3412; --warn-bg: #fff4e5; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header { background: var(--card); border-bottom: 1px solid var(--line); padding: 1.25rem 1.5rem; }
h1 { margin: 0 0 .5rem; font-size: 1.4rem; overflow-wrap: anywhere; }
.facts { display: flex; flex-wrap: wrap; gap: .35rem 1.75rem; margin: 0; font-size: .9rem; }
.facts div { display: flex; gap: .4rem; min-width: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
main { padding: 1.5rem; max-width: 1400px; margin: 0 auto; }
.notice { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1.25rem 1.5rem;
  max-width: 46rem; }
.notice h2 { margin: 0 0 .5rem; font-size: 1.15rem; }
.notice.failure { background: var(--warn-bg); border-color: #f5c28b; }
.notice.failure h2 { color: var(--warn); }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #eef1f5;
  padding: .1em .35em; border-radius: 4px; overflow-wrap: anywhere; }
.clips { list-style: none; margin: 0; padding: 0; display: grid; gap: 1.25rem;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr)); }
.clip { background: var(--card); border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
  display: flex; flex-direction: column; box-shadow: 0 1px 2px rgb(0 0 0 / 5%); }
.clip video { display: block; width: 100%; height: auto; max-height: min(70vh, 560px); background: #111;
  object-fit: contain; }
.missing { aspect-ratio: 16 / 9; background: var(--warn-bg); color: var(--warn); padding: 1rem 1.25rem;
  display: flex; flex-direction: column; justify-content: center; gap: .5rem; overflow-wrap: anywhere; }
.missing p { margin: 0; }
.missing a { color: var(--accent); font-weight: 600; }
.body { padding: .9rem 1.1rem 1.1rem; display: flex; flex-direction: column; gap: .45rem; min-width: 0; }
.meta { display: flex; flex-wrap: wrap; gap: .4rem; margin: 0; font-size: .8rem; color: var(--muted); }
.meta span { background: #eef1f5; border-radius: 999px; padding: .1rem .55rem; }
.meta .rank { background: var(--accent); color: #fff; font-weight: 700; }
.title { margin: 0; font-size: 1.05rem; line-height: 1.35; overflow-wrap: anywhere; }
.description { margin: 0; color: #37414d; white-space: pre-line; overflow-wrap: anywhere; }
.hashtags { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: .3rem .6rem;
  color: var(--accent); font-size: .9rem; }
.hashtags li { overflow-wrap: anywhere; }
.id { margin: auto 0 0; color: var(--muted); font-size: .75rem; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: .85rem; padding: 0 1.5rem 2rem; max-width: 1400px; margin: 0 auto; }
footer a { color: var(--accent); }
"""


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
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f'<link rel="icon" href="{_esc(ICON)}">',
        f"<title>{_esc(_title(label, len(clips), failure))}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        _header(manifest, source, label, len(clips)),
        "<main>",
    ]
    if failure is not None:
        parts.append(_failure(failure, source))
    elif not clips:
        parts.append(
            '<section class="notice empty"><h2>OpusClip found no clips in this video</h2>'
            "<p>The project finished, but OpusClip picked no moment worth a clip. A video with more speech, "
            "or other clip preferences (genre, clip durations), may get some.</p></section>"
        )
    if clips:
        parts.append('<ol class="clips">')
        parts.extend(_card(clip, name) for clip in clips)
        parts.append("</ol>")
    parts += [
        "</main>",
        '<footer>Best first, as in <a href="clips.json">clips.json</a> beside this page.</footer>',
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


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


def _header(manifest: Mapping[str, Any], source: Mapping[str, Any], label: str, count: int) -> str:
    facts = [
        ("Source", f"gs://{_text(source.get('bucket'))}/{_text(source.get('name'))}" if source else ""),
        ("Project", _text(manifest.get("projectId"))),
        ("Stage", _text(manifest.get("stage"))),
        ("Concluded", _text(manifest.get("concludedAt"))),
        ("Clips", str(count)),
    ]
    items = "".join(
        f'<div class="fact-{_esc(key.lower())}"><dt>{_esc(key)}</dt><dd>{_esc(value)}</dd></div>'
        for key, value in facts
        if value
    )
    heading = f'<h1>Clips of <span class="source-name">{_esc(label)}</span></h1>'
    return f'<header>{heading}<dl class="facts">{items}</dl></header>'


def _failure(failure: str, source: Mapping[str, Any]) -> str:
    return (
        '<section class="notice failure" role="alert"><h2>OpusClip did not finish this project</h2>'
        f'<p class="reason">{_esc(failure)}</p>'
        f"<p>What to do: <code>{_esc(retry_command(source))}</code> creates a new OpusClip project from the "
        "same upload while OpusClip still has it (or uploads the video again).</p></section>"
    )


def _card(clip: Mapping[str, Any], source_name: str) -> str:
    ident = _text(clip.get("id"))
    title = _text(clip.get("title")) or "Untitled clip"
    meta = []
    if _is_number(clip.get("rank")):
        meta.append(f'<span class="rank">#{_esc(_number(clip["rank"]))}</span>')
    if (duration := duration_text(clip.get("durationMs"))) is not None:
        meta.append(f'<span class="duration">{duration}</span>')
    if _is_number(clip.get("score")):
        meta.append(f'<span class="score">score {_esc(_number(clip["score"]))}</span>')
    if clip.get("isBonusClip") is True:
        meta.append('<span class="bonus">bonus</span>')
    if genre := _text(clip.get("genre")):
        meta.append(f'<span class="genre">{_esc(genre)}</span>')
    body = [f'<p class="meta">{"".join(meta)}</p>' if meta else "", f'<h2 class="title">{_esc(title)}</h2>']
    if description := _text(clip.get("description")):
        body.append(f'<p class="description">{_esc(description)}</p>')
    if tags := _hashtags(clip.get("hashtags")):
        body.append('<ul class="hashtags">' + "".join(f"<li>{_esc(tag)}</li>" for tag in tags) + "</ul>")
    if posts := [_mapping(p) for p in _sequence(clip.get(POSTS_KEY))]:
        body.append('<ul class="posts">' + "".join(_post(post) for post in posts) + "</ul>")
    if ident:
        body.append(f'<p class="id">{_esc(ident)}</p>')
    return (
        f'<li class="clip" data-clip-id="{_esc(ident)}"><article>{_player(clip, source_name, title)}'
        f'<div class="body">{"".join(body)}</div></article></li>'
    )


def _post(post: Mapping[str, Any]) -> str:
    """One post of the clip: where, when, and how it stands (planned, scheduled, published, …)."""
    where = " ".join(filter(None, (_text(post.get("platform")), _text(post.get("account")))))
    return (
        f'<li class="post" data-state="{_esc(_text(post.get("state")))}">{_esc(where)}: '
        f"{_esc(_text(post.get('state')))} for {_esc(_text(post.get('publishAt')))}</li>"
    )


def _player(clip: Mapping[str, Any], source_name: str, title: str) -> str:
    """The video in place, or why there is none and where OpusClip keeps it."""
    src = relative_path(clip.get("gcsUri"), source_name) if clip.get("copied") is True else None
    if src is not None:
        poster = relative_path(clip.get(THUMBNAIL_KEY), source_name)
        poster_attr = f' poster="{_esc(poster)}"' if poster else ""
        return (
            f'<video controls preload="metadata" src="{_esc(src)}"{poster_attr} title="{_esc(title)}">'
            f'<a href="{_esc(src)}">Download the clip</a></video>'
        )
    if clip.get("copied") is True:
        why = f"The copy at {_text(clip.get('gcsUri')) or '(no gcsUri)'} is not in this page's folder."
    elif clip.get("copied") is False:
        why = f"Not copied: {_text(clip.get('error')) or 'no reason recorded'}"
    else:
        why = "Not copied into the bucket (copying clips is switched off)."
    link = https_url(clip.get("uriForExport"))
    opus = (
        f'<p><a class="opus-link" href="{_esc(link)}" rel="noopener noreferrer">Open the clip on OpusClip</a></p>'
        if link
        else '<p class="no-link">OpusClip gave no usable link for it.</p>'
    )
    return f'<div class="missing"><p class="reason">{_esc(why)}</p>{opus}</div>'


# -- values from JSON ---------------------------------------------------------------------------


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


def _text(value: object) -> str:
    """A JSON scalar as text; anything else (object, list, null) as nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, int | float) else ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
