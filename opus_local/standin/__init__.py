"""A local stand-in for OpusClip that speaks the documented upload protocol strictly.

Real HTTP on loopback: ``POST /api/upload-links``, the XML resumable session (start → 201 +
Location; chunk PUTs with Content-Range; 308 + Range; status query; final 200), and
``POST/GET /api/clip-projects``. Uploaded bytes go to disk, never whole into memory.

What OpusClip does after creation is simulated too, so that the pipeline's poller, webhook receiver
and clip downloader meet the same shapes and limits as in production: a project walks through its
stages to COMPLETE (or STALLED) over ``projectSeconds``; ``GET /api/exportable-clips`` pages its
clips; the clips' files are served under ``/media/``; WEBHOOK conclusion actions are POSTed, signed
as OpusClip signs them; and, when configured, the per-key rate limit and the in-flight-project cap
answer 429 as OpusClip's "Limitations" page describes.

A control API under ``/_standin/`` injects faults, sets the quota and the configuration, stalls
projects, forgets uploads (as OpusClip might expire them), and reports every call so tests can assert
"exactly one". Run it alone with
``python -m opus_local.standin --port N``.

One module per protocol: ``api`` (the OpusClip REST API), ``upload_session`` (the resumable
session), ``media`` (the clips' files), ``control`` (the tests' control protocol) and ``webhooks``
(the conclusion actions the stand-in sends). ``routes`` maps (method, path) to them; ``server``
reads the request and writes the answer (``exchange``); ``state`` holds all they share, behind one lock.
``social`` is OpusClip's social posting (accounts, post now, schedule, cancel), its record ``social_book``.
"""

from __future__ import annotations

from .server import Handler, serve
from .state import DEFAULT_CONFIG, GRANULARITY, PIECE, STAGES, Fault, Project, StandIn, Upload, media_bytes

__all__ = [
    "DEFAULT_CONFIG",
    "GRANULARITY",
    "PIECE",
    "STAGES",
    "Fault",
    "Handler",
    "Project",
    "StandIn",
    "Upload",
    "media_bytes",
    "serve",
]
