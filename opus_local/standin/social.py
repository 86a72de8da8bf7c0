"""OpusClip's social posting, as its API description documents it, strictly: the connected accounts
(``GET /api/social-accounts?q=mine``), a post now (``POST /api/post-tasks``), a schedule
(``POST /api/publish-schedules``, ``publishAt`` a future UTC ISO 8601 time) and its cancellation
(``DELETE /api/publish-schedules/{scheduleId}``).

Strict where OpusClip is: the **bare** clip id of one of the project's clips (the composite
``{projectId}.{clipId}`` is refused), an account the workspace has, ``subAccountId`` exactly when the
account has one (never null), ``postDetail.title``; 1 request a second per endpoint (a 429 with
``Retry-After`` beyond it); an X post costs 1 credit. The accounts are the setting ``socialAccounts``.

A fault on ``post-tasks`` or ``publish-schedules`` that is a 5xx or a drop strikes after the post
is made (the worst case for a client: posted, answer lost); any other status strikes before.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from . import api
from .exchange import HANG_UP, Answer, Reply, Request
from .social_book import SocialBook
from .state import StandIn

CREDIT_PLATFORMS = frozenset({"TWITTER"})
PRIVACIES = ("public", "private", "unlisted")
_FIELDS = {"projectId", "clipId", "postAccountId", "subAccountId", "postDetail"}
_DETAIL_FIELDS = {"title", "custom", "mediaType"}


def _book(state: StandIn) -> SocialBook:
    return state.social


def _limited(state: StandIn, request: Request, endpoint: str) -> Answer | None:
    """The API's gate (fault, key, the per-minute limit), then the 1-a-second limit of this endpoint."""
    if refused := api._gate(state, request, endpoint):
        return refused
    if not _book(state).admit(endpoint):
        return Reply(429, {"message": "Too Many Requests: 1 request per second"}, {"Retry-After": "1"})
    return None


def accounts(state: StandIn, request: Request) -> Answer:
    """``GET /api/social-accounts?q=mine``."""
    if refused := _limited(state, request, "social-accounts"):
        return refused
    if parse_qs(request.query, keep_blank_values=True) != {"q": ["mine"]}:
        return Reply(400, {"message": "q must be mine"})
    listed = state.config["socialAccounts"]
    if listed is None:
        return Reply(403, {"message": "social posting is an enterprise feature"})
    return Reply(200, {"data": listed})


def post_now(state: StandIn, request: Request) -> Answer:
    """``POST /api/post-tasks``: the clip is published at once; ``{data: {postId}}``."""
    return _post(state, request, "post-tasks", scheduled=False)


def schedule(state: StandIn, request: Request) -> Answer:
    """``POST /api/publish-schedules``: ``{data: {scheduleId}}``."""
    return _post(state, request, "publish-schedules", scheduled=True)


def _post(state: StandIn, request: Request, endpoint: str, scheduled: bool) -> Answer:
    body = request.json_body()
    fault = state.take_fault(endpoint)
    if fault is not None and fault.kind == "slow":
        time.sleep(fault.seconds)
    after = fault is not None and (fault.kind == "drop" or (fault.kind == "status" and fault.status >= 500))
    if fault is not None and not after and fault.kind == "status":
        return Reply(fault.status, fault.body, fault.headers)
    if request.headers.get("Authorization") != f"Bearer {state.api_key}":
        return Reply(401, {"message": "Unauthorized"})
    if state.admit(request.headers["Authorization"]) is not None or not _book(state).admit(endpoint):
        return Reply(429, {"message": "Too Many Requests: 1 request per second"}, {"Retry-After": "1"})
    problem, account = _problem(state, body, scheduled)
    if problem:
        return Reply(400, {"message": problem})
    platform = account["platform"]
    ident = f"{int(time.time() * 1000)}{secrets.token_hex(2)}-{platform}"
    made = {**body, "platform": platform, "at": _iso(time.time())}
    with _book(state).lock:
        if scheduled:
            _book(state).schedules[ident] = {**made, "scheduleId": ident, "cancelled": False}
        else:
            _book(state).posts[ident] = {**made, "postId": ident}
    if platform in CREDIT_PLATFORMS:
        state.charge(1)
    if after:
        return HANG_UP if fault.kind == "drop" else Reply(fault.status, fault.body, fault.headers)
    return Reply(201, {"data": {"scheduleId" if scheduled else "postId": ident}})


def cancel(state: StandIn, request: Request, schedule_id: str) -> Answer:
    """``DELETE /api/publish-schedules/{scheduleId}``: before its time only."""
    if refused := _limited(state, request, "publish-schedules-delete"):
        return refused
    book = _book(state)
    with book.lock:
        found = book.schedules.get(schedule_id)
        if found is None or found["cancelled"]:
            return Reply(404, {"message": "schedule not found"})
        if _parse(found["publishAt"]) <= time.time():
            return Reply(400, {"message": "the schedule's publish time has passed"})
        found["cancelled"] = True
    return Reply(200, {"data": {}})


def _problem(state: StandIn, body: Any, scheduled: bool) -> tuple[str | None, dict[str, Any]]:
    """What is wrong with a post body, strictly (None: nothing), and the account it names."""
    if not isinstance(body, dict):
        return "the body must be a JSON object", {}
    allowed = _FIELDS | ({"publishAt"} if scheduled else set())
    if unknown := sorted(set(body) - allowed):
        return f"unknown fields: {', '.join(unknown)}", {}
    project = state.project(str(body.get("projectId")))
    if project is None:
        return "projectId must name a project of this workspace", {}
    clip_id = body.get("clipId")
    if not isinstance(clip_id, str) or "." in clip_id:
        return "clipId must be the bare clip id, not {projectId}.{clipId}", {}
    if clip_id not in project.curation_ids():
        return "clipId is not a clip of the project", {}
    account = next(
        (a for a in state.config["socialAccounts"] or [] if a["postAccountId"] == body.get("postAccountId")), None
    )
    if account is None:
        return "postAccountId is not a connected account", {}
    if "subAccountId" in body and (body["subAccountId"] is None or body["subAccountId"] != account.get("subAccountId")):
        return "subAccountId must be the account's own (omit it when it has none)", {}
    if account.get("subAccountId") and "subAccountId" not in body:
        return "subAccountId is required for this account", {}
    detail = body.get("postDetail")
    if not isinstance(detail, dict) or not isinstance(detail.get("title"), str) or not detail["title"]:
        return "postDetail.title is required", {}
    if unknown := sorted(set(detail) - _DETAIL_FIELDS):
        return f"unknown postDetail fields: {', '.join(unknown)}", {}
    custom = detail.get("custom", {})
    if not isinstance(custom, dict) or custom.get("privacy", "public") not in PRIVACIES:
        return f"postDetail.custom.privacy must be one of {', '.join(PRIVACIES)}", {}
    if scheduled:
        try:
            when = _parse(body.get("publishAt"))
        except (TypeError, ValueError):
            return "publishAt must be a UTC ISO 8601 time", {}
        if when <= time.time():
            return "publishAt must be in the future", {}
    return None, account


def _parse(text: Any) -> float:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError("not UTC")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inspect(state: StandIn, request: Request) -> Answer:
    """``GET /_standin/social``: every post, schedule (with ``cancelled``) and 1-a-second refusal."""
    return Reply(200, _book(state).summary())
