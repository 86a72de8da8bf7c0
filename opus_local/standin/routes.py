"""The stand-in's route table: (method, path pattern) → the function of one protocol that answers.

A pattern is a literal path, or a literal prefix ending in one ``{name}`` that takes the rest of the
path (any characters, slashes included, possibly none) as the function's keyword argument ``name``.
Functions are called ``(state, request, **params)`` and return the answer. The first route that
matches wins; a path no route matches is answered 404 by the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import api, control, media, social, upload_session
from .exchange import Answer

Respond = Callable[..., Answer]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    respond: Respond

    def __post_init__(self) -> None:
        _, brace, name = self.pattern.partition("{")
        if brace and not (name.endswith("}") and "{" not in name and "/" not in name):
            raise ValueError(f"{self.pattern}: a pattern ends in at most one {{name}}")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path params when the route answers ``method path``; else None."""
        prefix, brace, name = self.pattern.partition("{")
        if method != self.method:
            return None
        if not brace:
            return {} if path == prefix else None
        return {name.removesuffix("}"): path[len(prefix) :]} if path.startswith(prefix) else None


ROUTES = (
    # the OpusClip API
    Route("POST", "/api/upload-links", api.upload_link),
    Route("POST", "/api/clip-projects", api.create_project),
    Route("GET", "/api/clip-projects", api.project_list),
    Route("GET", "/api/clip-projects/{project_id}", api.get_project),
    Route("GET", "/api/exportable-clips", api.exportable_clips),
    Route("GET", "/api/transcripts", api.transcript),
    Route("GET", "/api/brand-templates", api.brand_templates),
    Route("GET", "/api/api-usage", api.api_usage),
    Route("GET", "/api/social-accounts", social.accounts),
    Route("POST", "/api/post-tasks", social.post_now),
    Route("POST", "/api/publish-schedules", social.schedule),
    Route("DELETE", "/api/publish-schedules/{schedule_id}", social.cancel),
    # the resumable upload session the upload link starts
    Route("POST", "/upload/{link}", upload_session.start),
    Route("PUT", "/session/{token}", upload_session.put),
    # the clips' files
    Route("GET", "/media/{key}", media.clip_file),
    # the control protocol
    Route("POST", "/_standin/faults", control.add_faults),
    Route("POST", "/_standin/quota", control.set_quota),
    Route("POST", "/_standin/reset", control.reset),
    Route("POST", "/_standin/config", control.configure),
    Route("POST", "/_standin/stall", control.stall),
    Route("POST", "/_standin/new-month", control.new_month),
    Route("POST", "/_standin/forget-uploads", control.forget_uploads),
    Route("POST", "/_standin/{path}", control.unknown_post),
    Route("GET", "/_standin/stats", control.stats),
    Route("GET", "/_standin/social", social.inspect),
    Route("GET", "/_standin/config", control.config),
    Route("GET", "/_standin/projects/{project_id}", control.project),
    Route("GET", "/_standin/{path}", control.unknown_get),
)


def find(method: str, path: str) -> tuple[Respond, dict[str, str]] | None:
    """The function that answers ``method path`` and its path params; None when no route does."""
    for route in ROUTES:
        params = route.match(method, path)
        if params is not None:
            return route.respond, params
    return None
