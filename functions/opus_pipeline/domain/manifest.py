"""The clips manifest (``gs://OUTPUT/<source name>/clips.json``) and where each clip file goes.

Pure logic. Clips are ordered best first: by OpusClip's ``rank`` (1 is best) when every clip has
one, else by ``score`` (higher is better) when every clip has one, else in OpusClip's order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opus_pipeline.domain.captions import time_ranges_seconds
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.numbers import finite

SCHEMA_VERSION = 1
# What the manifest keeps of a clip, when OpusClip sent it (``timeRanges`` in seconds, whatever OpusClip sent).
CLIP_FIELDS = ("id", "title", "description", "hashtags", "durationMs", "timeRanges", "keywords", "genre", "text")
SCORE_FIELDS = ("rank", "score", "isBonusClip", "judgeResult")
MEDIA_FIELDS = ("uriForExport", "uriForPreview", "uriForThumbnail")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HASHED = re.compile(r"-[0-9a-f]{12}$")
MAX_STEM = 100


def _finite(value: Any) -> bool:
    """Whether ``value`` is a number a float holds (``domain/numbers.py``): NaN, an infinity or an
    integer of 309 digits count as none, so that they cannot fail a conclusion."""
    return finite(value) is not None


def _all_numeric(clips: Sequence[Mapping[str, Any]], key: str) -> bool:
    return bool(clips) and all(_finite(c.get(key)) for c in clips)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity (which Python's JSON reader accepts from OpusClip, but
    which is not JSON) and every integer too big for a float (which JSON readers other than Python's
    read as infinity or refuse) replaced by ``null``, at any depth: the manifest stays readable everywhere."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not _finite(value):
        return None
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def best_first(clips: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if _all_numeric(clips, "rank"):
        return sorted(clips, key=lambda c: c["rank"])
    if _all_numeric(clips, "score"):
        return sorted(clips, key=lambda c: -c["score"])
    return list(clips)


def clip_id(clip: Mapping[str, Any], index: int) -> str:
    return str(clip.get("id") or clip.get("curationId") or f"clip-{index}")


def output_prefix(source: StorageObject) -> str:
    """Everything a video gets in the output bucket lives under its own object name."""
    return source.name


def manifest_name(source: StorageObject) -> str:
    return f"{output_prefix(source)}/clips.json"


def clip_object_name(source: StorageObject, clip: Mapping[str, Any], index: int) -> str:
    """``<source name>/clips/<curationId>.mp4``: named by OpusClip's id, so a second attempt
    overwrites its own file instead of adding one. One file per manifest entry: a clip whose ``id``
    is not the documented ``{projectId}.{curationId}`` is named by a hash of that id as well."""
    ident = clip_id(clip, index)
    curation = str(clip.get("curationId") or ident.rsplit(".", 1)[-1])
    documented = ident in (curation, f"{clip.get('projectId')}.{curation}")
    return f"{output_prefix(source)}/clips/{clip_file_stem(curation, curation if documented else ident)}.mp4"


def clip_file_stem(readable: str, raw: str | None = None) -> str:
    """A safe file name for an id OpusClip chose, different for different ids whatever they hold.

    ``readable`` (by default also the ``raw`` id) is kept as it is when it is letters, digits,
    ``.``, ``_`` and ``-`` only; any other (``CU/1``, ``CU?1``, ``..``, one with a leading dot,
    longer than ``MAX_STEM``, or a ``raw`` id that differs) becomes a slug with a hash of the raw id
    appended, so ``CU/1`` and ``CU?1`` no longer both land on ``CU_1``. An id kept as is never ends
    like a hashed one (``-`` and 12 hex digits), so the two kinds never meet.
    """
    raw = readable if raw is None else raw
    slug = _UNSAFE.sub("_", readable).lstrip(".")[:MAX_STEM] or "clip"
    if slug == readable == raw and not _HASHED.search(raw):
        return slug
    return f"{slug}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def thumbnail_object_name(source: StorageObject, clip: Mapping[str, Any], index: int) -> str:
    """The clip's poster image, beside its video: ``<source name>/clips/<same name>.jpg``."""
    return clip_object_name(source, clip, index).removesuffix(".mp4") + ".jpg"


def caption_object_name(source: StorageObject, clip: Mapping[str, Any], index: int, kind: str) -> str:
    """The clip's captions, beside its video: ``<source name>/clips/<same name>.srt`` (or ``.vtt``)."""
    return clip_object_name(source, clip, index).removesuffix(".mp4") + f".{kind}"


def copy_source(clip: Mapping[str, Any]) -> tuple[str, str] | None:
    """What to copy of a clip and its quality: the HD export (``uriForExport``, ``"hd"``) when OpusClip
    gives one, else the preview (``uriForPreview``, ``"preview"``): OpusClip's own client treats the
    clip list as preview-only, and a plan may give no export at all. None when it gives neither."""
    for key, quality in (("uriForExport", "hd"), ("uriForPreview", "preview")):
        url = clip.get(key)
        if isinstance(url, str) and url:
            return url, quality
    return None


def page_name(source: StorageObject) -> str:
    """The page people open to look at the clips (``domain/clips_page.py``), beside the manifest."""
    return f"{output_prefix(source)}/index.html"


def manifest(
    source: StorageObject,
    upload_id: str,
    project_id: str,
    stage: str,
    concluded_at: str,
    clips: Sequence[Mapping[str, Any]],
    copies: Mapping[str, Mapping[str, Any]],
    duration_seconds: float | None = None,
    credits: int | None = None,
    transcript_available: bool | None = None,
) -> dict[str, Any]:
    """The manifest a person or a tool reads; ``copies`` maps a clip id to its copy (or error);
    ``durationSeconds`` and ``credits`` are the source's probed duration and the estimate;
    ``transcriptAvailable`` whether OpusClip had a transcript to caption the copies from (left out
    when it was not asked: nothing was copied)."""
    entries = []
    for index, clip in enumerate(best_first(clips)):
        ident = clip_id(clip, index)
        entry = {key: json_safe(clip[key]) for key in (*CLIP_FIELDS, *SCORE_FIELDS, *MEDIA_FIELDS) if key in clip}
        entry["id"] = ident
        if "timeRanges" in entry:
            entry["timeRanges"] = [[start, end] for start, end in time_ranges_seconds(clip)]
        entry.update(copies.get(ident, {}))
        entries.append(entry)
    doc: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "source": source.ref(),
        "uploadId": upload_id,
        "projectId": project_id,
        "stage": stage,
        "concludedAt": concluded_at,
        "durationSeconds": duration_seconds,
        "credits": credits,
    }
    if transcript_available is not None:
        doc["transcriptAvailable"] = transcript_available
    return {**doc, "clips": entries}


def still_rendering(clips: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the clips whose file OpusClip is still making (``renderAsVideoFile.pending``, which
    its own client waits on): not to be copied yet, even when the project is COMPLETE."""
    return [
        clip_id(clip, index)
        for index, clip in enumerate(clips)
        if isinstance(render := clip.get("renderAsVideoFile"), Mapping) and render.get("pending") is True
    ]
