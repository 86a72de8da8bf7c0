"""The control protocol under ``/_standin/``, for tests: inject faults, set the quota and the
configuration (the upload session's link model among it), stall projects, reset the month, forget
uploads (as OpusClip might expire them), reset, and report every call."""

from __future__ import annotations

import time
from typing import Any

from .exchange import Answer, Reply, Request
from .state import Fault, StandIn, count_from


def _body(request: Request) -> Any:
    return request.json_body() or {}


def add_faults(state: StandIn, request: Request) -> Answer:
    """``{"faults": [Fault fields...], "clear": bool}``: queue them (after dropping the pending ones)."""
    body = _body(request)
    try:
        faults = [Fault(**spec) for spec in body.get("faults", [])]
    except TypeError as exc:
        return Reply(400, {"message": str(exc)})
    return Reply(200, {"pending": state.add_faults(faults, bool(body.get("clear")))})


def set_quota(state: StandIn, request: Request) -> Answer:
    state.set_quota(_body(request))
    return Reply(200, {})


def reset(state: StandIn, request: Request) -> Answer:
    _body(request)
    state.reset()
    return Reply(200, {})


def configure(state: StandIn, request: Request) -> Answer:
    problems = state.configure(_body(request))
    return Reply(400, {"message": problems}) if problems else Reply(200, state.config)


def stall(state: StandIn, request: Request) -> Answer:
    """``{"projectId": id}`` stalls that project; ``{"next": n}`` the next n created; with
    ``"resumeAfter": seconds`` they move on to COMPLETE that long after they stalled."""
    body = _body(request)
    resume = body.get("resumeAfter")
    if resume is not None and (isinstance(resume, bool) or not isinstance(resume, int | float) or resume < 0):
        return Reply(400, {"message": "resumeAfter must be a number of seconds from 0"})
    if "next" in body:
        if not count_from(0)(body["next"]):
            return Reply(400, {"message": "next must be a whole number from 0"})
        state.set_stall_next(body["next"], resume)
        return Reply(200, {"stallNext": body["next"]})
    if state.stall(str(body.get("projectId")), resume):
        return Reply(200, {})
    return Reply(409, {"message": "projectId must name a project still in flight"})


def new_month(state: StandIn, request: Request) -> Answer:
    """The month's credits reset, as on the 1st (UTC)."""
    _body(request)
    state.new_month()
    return Reply(200, {})


def forget_uploads(state: StandIn, request: Request) -> Answer:
    """Expire every upload made so far, as OpusClip might: ``{"forgotten": [uploadId, ...]}``."""
    _body(request)
    return Reply(200, {"forgotten": state.forget_uploads()})


def unknown_post(state: StandIn, request: Request, path: str) -> Answer:
    _body(request)
    return Reply(404, {"message": "unknown control path"})


def stats(state: StandIn, request: Request) -> Answer:
    return Reply(200, state.stats())


def config(state: StandIn, request: Request) -> Answer:
    return Reply(200, state.config)


def project(state: StandIn, request: Request, project_id: str) -> Answer:
    """The project as OpusClip would answer it now, plus the request it was created with."""
    found = state.project(project_id)
    if found is None:
        return unknown_get(state, request, project_id)
    return Reply(200, {**found.representation(time.time()), "request": found.request})


def unknown_get(state: StandIn, request: Request, path: str) -> Answer:
    return Reply(404, {"message": "unknown control path or project"})
