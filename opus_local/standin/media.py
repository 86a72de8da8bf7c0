"""The clips' files, served as OpusClip's CDN serves them: no key needed. The videos are real MP4s
derived from the file's key and size alone (``state.media_bytes``), so that a test can recompute them;
the thumbnail is a real JPEG of the video's first frame. A clip still rendering has no file yet."""

from __future__ import annotations

import functools
import re
import time

from .exchange import Answer, Reply, Request, Stream, fault_answer
from .state import StandIn, media_bytes, thumbnail_bytes

# The files of one clip, by name suffix: the HD export, the SD preview and the thumbnail.
MEDIA_KINDS = {".mp4": "video/mp4", ".preview.mp4": "video/mp4", ".jpg": "image/jpeg"}
_MEDIA_KEY = re.compile(r"^(P[0-9a-f]+)/(CU[0-9a-f]+)(\.mp4|\.preview\.mp4|\.jpg)$")


def clip_file(state: StandIn, request: Request, key: str) -> Answer:
    """``GET /media/{projectId}/{curationId}{.mp4|.preview.mp4|.jpg}``. The export file counts as
    downloaded once sent whole; a drop fault cuts the file after ``after_bytes``."""
    fault = state.take_fault("media")
    if refused := fault_answer(fault, request):
        return refused
    found = _find(state, key)
    if found is None:
        return Reply(404, {"message": "no such media file"})
    clip_id, suffix, size = found
    pieces = media_bytes(key, size)
    if suffix == ".jpg":
        pieces = [thumbnail_bytes()]
        size = len(pieces[0])
    limit = fault.after_bytes if fault is not None and fault.kind == "drop" else size
    whole = functools.partial(state.count_download, clip_id) if suffix == ".mp4" else None
    return Stream(MEDIA_KINDS[suffix], size, pieces, limit, whole)


def _find(state: StandIn, key: str) -> tuple[str, str, int] | None:
    """For a file's key (``<projectId>/<file name>``): the clip id, the suffix and the size; None unless
    it names a file of a COMPLETE project whose rendering is done."""
    match = _MEDIA_KEY.match(key)
    project = state.project(match.group(1)) if match else None
    if project is None or match is None or match.group(2) not in project.curation_ids():
        return None
    now = time.time()
    rank = project.curation_ids().index(match.group(2)) + 1
    if project.stage(now)[0] != "COMPLETE" or project.rendering(rank, now):
        return None
    return f"{project.id}.{match.group(2)}", match.group(3), project.clip_bytes
