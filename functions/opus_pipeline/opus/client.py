"""OpusClip REST client: authentication, the request budget, the calls made, their answers mapped.

Status codes are mapped to ``PermanentError``/``TransientError`` here, once, following OpusClip's
documented error semantics (shared/opus-api/opus-errors.yml).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import requests

from opus_pipeline import http_policy, logs
from opus_pipeline.domain.creation import project_id_of
from opus_pipeline.domain.credits import USAGE_FRESH_SECONDS, Usage
from opus_pipeline.domain.publishing import Account, accounts_listed
from opus_pipeline.errors import (
    AmbiguousCreateError,
    AnswerLostError,
    ConcurrentCapError,
    OpusApiError,
    RateLimitedError,
    TransientError,
)

RATE_WAIT_SECONDS = 60.0  # longer, and the event is better redelivered than held
CLIPS_PAGE_SIZE = 50  # as OpusClip's own CLI pages
MAX_CLIP_PAGES = 100
PROJECT_LIST_PAGE_SIZE = 100  # the most OpusClip's project list gives in one page
BRAND_TEMPLATES_TTL_SECONDS = 300.0  # a template made in OpusClip's app is seen within five minutes
# OpusClip allows its social-posting endpoints 1 request a second each (api-facts §7).
SOCIAL_SPACING_SECONDS = 1.0
SOCIAL_ATTEMPTS = 3
SOCIAL_RETRY_AFTER_MAX = 5.0  # a longer 429 is the next pass's to wait out
# Answers meaning "this workspace may not list brand templates": the endpoint is tagged enterprise.
_NOT_OPEN = frozenset({"api-key-refused", "not-found"})


@dataclass(frozen=True)
class UploadLink:
    """An answer of ``POST /api/upload-links``; ``url`` is where the session is started."""

    url: str
    upload_id: str
    use_amount: int
    total_amount: int | None  # documented only in an example: absent means "unknown"

    @property
    def remaining(self) -> int | None:
        return None if self.total_amount is None else self.total_amount - self.use_amount


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(body: dict[str, Any]) -> str:
    """OpusClip's words: ``{statusCode, message}`` or, as its OpenAPI shows, ``{errorName, errorMessage}``."""
    text = body.get("message") or body.get("errorMessage") or body.get("error") or body.get("detail") or ""
    if isinstance(text, list):
        text = "; ".join(map(str, text))
    name = body.get("errorName")
    if isinstance(name, str) and name and name not in str(text):
        text = f"{name}: {text}" if text else name
    return str(text)[:300]


MONTHLY_CAP = "API_MONTHLY_CAP_REACHED"
MONTHLY_CAP_REASON = "monthly-cap"  # the reason of the ``OpusApiError`` it is raised as


def _monthly_cap(body: dict[str, Any]) -> bool:
    return MONTHLY_CAP in (body.get("code"), body.get("errorName"))


def raise_for_status(response: requests.Response, action: str) -> None:
    """Map a non-2xx OpusClip answer to the pipeline's error taxonomy."""
    status = response.status_code
    if status < 300:
        return
    body = _body(response)
    said = _detail(body)  # OpusClip's own words, in every refusal's message
    quoted = f": {said}" if said else ""
    if status == 403 and _monthly_cap(body):
        reset_at = body.get("reset_at") if isinstance(body.get("reset_at"), str) else None
        raise OpusApiError(
            f"OpusClip's monthly API cap is reached; {action} can be retried after {reset_at} "
            "(opus-pipeline retry), or upgrade the plan",
            reason=MONTHLY_CAP_REASON,
            reset_at=reset_at,
            status=status,
        )
    if status in (401, 403):
        raise OpusApiError(
            f"OpusClip refused the API key on {action} (HTTP {status}{quoted}) — check the secret "
            "OPUS_API_KEY (and OPUS_ORG_ID, for a key of several organisations)",
            reason="api-key-refused",
            status=status,
        )
    if status == 404:
        raise OpusApiError(
            f"OpusClip does not know what {action} names (HTTP 404{quoted})",
            reason="not-found",
            status=status,
        )
    if status == 402:
        raise OpusApiError(
            f"OpusClip has insufficient credits for {action} (HTTP 402{quoted}) — add credits, then retry",
            reason="insufficient-credits",
            status=status,
        )
    if status == 429:
        retry_after = http_policy.retry_after_seconds(response.headers.get("Retry-After"))
        if response.headers.get("X-Cap-Reason") == "concurrent":
            raise ConcurrentCapError(f"OpusClip's parallel-project cap on {action} (HTTP 429)", retry_after=retry_after)
        raise RateLimitedError(f"OpusClip's rate limit on {action} (HTTP 429)", retry_after=retry_after)
    if http_policy.is_retryable(status):
        raise TransientError(f"OpusClip answered HTTP {status} on {action}", reason="opus-unavailable")
    raise OpusApiError(
        f"OpusClip rejected {action} (HTTP {status}): {said or 'no detail given'}",
        reason="opus-rejected",
        status=status,
    )


def _template_ids(answer: Any) -> frozenset[str]:
    """The ``templateId`` of each BrandTemplateRepresentation; a bare array as the API description shows,
    or ``{"data": [...]}`` as OpusClip's own tools read its lists."""
    if isinstance(answer, dict):
        answer = answer.get("data")
    if not isinstance(answer, list) or not all(
        isinstance(t, dict) and isinstance(t.get("templateId"), str) for t in answer
    ):
        raise TransientError(
            "OpusClip answered the brand-template list with an unexpected shape", reason="opus-unavailable"
        )
    return frozenset(t["templateId"] for t in answer)


def _clip_key(clip: dict[str, Any]) -> str:
    """What tells two clips apart across pages: OpusClip's id, else the whole clip."""
    ident = clip.get("id") or clip.get("curationId")
    return str(ident) if ident else repr(sorted(clip.items(), key=lambda item: item[0]))


class Budget(Protocol):
    """The shared request budget every call takes a grant of first (``gcs/rate_budget.py``)."""

    def acquire(self, max_wait: float, kind: str | None = None, share: float = 1.0) -> None: ...


class OpusClient:
    """One pooled ``requests.Session`` for all calls to OpusClip's API."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        limiter: Budget | None = None,
        clock: Callable[[], float] = time.monotonic,
        org_id: str | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        # The OpenAPI: "Organization ID. Required for users with multiple organizations." Sent on every
        # call, so that a key of several workspaces never acts in another one than OPUS_ORG_ID names.
        self._org_headers = {"x-opus-org-id": org_id} if org_id else {}
        self._limiter = limiter
        self._clock = clock
        self._brand_templates: tuple[float, frozenset[str] | None] | None = None  # (when read, ids)
        self.http = requests.Session()
        self._usage: Usage | None = None  # the monthly numbers last seen on any answer
        self._usage_lookup = threading.Lock()
        self._social_sent: dict[str, float] = {}  # social endpoint → when this instance last called it
        self.sleep: Callable[[float], None] = time.sleep

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        share: float = 1.0,
    ) -> requests.Response:
        """One authorized request, within the shared request budget (``share``: at most that share
        of it for calls to ``path``); its ``X-RateLimit-*`` headers noted (read leniently: they never
        fail an answer)."""
        if self._limiter is not None:
            self._limiter.acquire(RATE_WAIT_SECONDS, path, share)
        all_headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            **self._org_headers,
            **(headers or {}),
        }
        response = http_policy.send(
            self.http, method, self._base_url + path, json=body, params=params, headers=all_headers, stream=True
        )
        http_policy.read_bounded(response)  # a size and a time bound: the answer is read whole here
        self._usage = Usage.from_headers(response.headers, time.time()) or self._usage
        return response

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        share: float = 1.0,
    ) -> Any:
        """One call; the JSON answer (an object or, for lists, an array)."""
        response = self._send(method, path, body=body, params=params, headers=headers, share=share)
        raise_for_status(response, action)
        try:
            return response.json()
        except ValueError:
            raise TransientError(f"OpusClip answered {action} without JSON", reason="opus-unavailable") from None

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        action: str,
        headers: dict[str, str] | None = None,
        share: float = 1.0,
    ) -> dict[str, Any]:
        answer = self._call("POST", path, action, body=body, headers=headers, share=share)
        if not isinstance(answer, dict) or not answer:
            raise TransientError(f"OpusClip answered {action} without a JSON body", reason="opus-unavailable")
        return answer

    def usage(self, max_age: float = USAGE_FRESH_SECONDS) -> Usage:
        """This month's credits as OpusClip counts them, at most ``max_age`` seconds old (an uncapped
        answer: an hour): the ``X-RateLimit-*`` headers of the last answer, else ``GET /api/api-usage?q=mine``.

        An API without that endpoint (404) is taken as uncapped for the hour, with a warning: the
        403 at creation still makes a video wait then."""
        now = time.time()
        if self._usage is not None and self._usage.fresh(now, max_age):
            return self._usage
        with self._usage_lookup:  # threads asking at once (a cold instance's first requests) share one call
            if self._usage is not None and self._usage.fresh(now, max_age):
                return self._usage
            return self._look_up_usage(now)

    def _look_up_usage(self, now: float) -> Usage:
        try:
            answer = self._call("GET", "/api/api-usage", "the usage lookup", params={"q": "mine"})
        except OpusApiError as exc:
            if exc.reason != "not-found":
                raise
            logs.warning("OpusClip has no usage endpoint (HTTP 404): credits are not checked before upload")
            answer = {"uncapped": True}
        usage = Usage.from_answer(answer, now)
        if usage is None:
            raise TransientError(
                "OpusClip answered the usage lookup with an unexpected shape", reason="opus-unavailable"
            )
        self._usage = usage
        return usage

    def create_upload_link(self, share: float = 1.0) -> UploadLink:
        """``POST /api/upload-links`` for a local upload, taking at most ``share`` of the request budget."""
        body = self._post(
            "/api/upload-links", {"video": {"usecase": "LocalUpload"}}, "the upload-link request", share=share
        )
        try:
            total = body.get("totalAmount")
            return UploadLink(
                url=str(body["url"]),
                upload_id=str(body["uploadId"]),
                use_amount=int(body.get("useAmount") or 0),
                total_amount=None if total is None else int(total),
            )
        except (KeyError, TypeError, ValueError):
            raise TransientError("OpusClip's upload-link answer lacks url/uploadId or has malformed amounts") from None

    def brand_template_ids(self) -> frozenset[str] | None:
        """The ids of the workspace's own brand templates (``GET /api/brand-templates?q=mine``), read at
        most once per ``BRAND_TEMPLATES_TTL_SECONDS`` per instance; None when the workspace may not list
        them (401/403/404: the endpoint is tagged enterprise), which is remembered as long."""
        cached = self._brand_templates
        if cached is not None and self._clock() - cached[0] < BRAND_TEMPLATES_TTL_SECONDS:
            return cached[1]
        try:
            answer = self._call("GET", "/api/brand-templates", "the brand-template list", params={"q": "mine"})
            ids: frozenset[str] | None = _template_ids(answer)
        except OpusApiError as exc:
            if exc.reason not in _NOT_OPEN:
                raise
            ids = None
        self._brand_templates = (self._clock(), ids)
        return ids

    def create_clip_project(self, command: dict[str, Any], upload_id: str) -> dict[str, Any]:
        """``POST /api/clip-projects`` for an uploaded video; returns the project representation,
        its id (``id`` or ``projectId``) always as ``id``.

        The call spends credits, so every answer that does not say what OpusClip did is
        ``AmbiguousCreateError``: an answer lost after the request was sent, a 5xx (a proxy in front of
        OpusClip may answer one after OpusClip acted), a 2xx without JSON or without a usable id. The
        caller looks in the project list before it asks again. A connection never made, a 429 and a
        4xx are what they say: nothing was created."""
        action = "the clip-project request"
        try:
            response = self._send("POST", "/api/clip-projects", body=command, headers={"x-opus-upload-id": upload_id})
        except AnswerLostError as exc:
            raise AmbiguousCreateError(f"{exc} after {action} was sent", reason="create-ambiguous") from None
        if 500 <= response.status_code < 600:
            raise AmbiguousCreateError(
                f"OpusClip answered HTTP {response.status_code} on {action}; it may have made the project"
            )
        raise_for_status(response, action)
        project_id = project_id_of(_body(response))
        if project_id is None:
            raise AmbiguousCreateError(
                f"OpusClip accepted {action} (HTTP {response.status_code}) but answered without a usable project id"
            )
        return {**_body(response), "id": project_id}

    def my_projects(self, page: int = 0, page_size: int = PROJECT_LIST_PAGE_SIZE) -> list[dict[str, Any]]:
        """One page of the workspace's projects, newest first: ``GET /api/clip-projects?q=mine&page=P&pageSize=N``
        (pages from 0, ``pageSize`` 1–100), answered ``{"data": {"list": [...]}}`` (a bare list, or
        ``data`` as the list, read too: OpusClip's clips come in both shapes). The one way to find a
        project whose create answer was lost."""
        params = {"q": "mine", "page": max(0, page), "pageSize": max(1, min(PROJECT_LIST_PAGE_SIZE, page_size))}
        answer = self._call("GET", "/api/clip-projects", "the project list", params=params)
        data = answer.get("data") if isinstance(answer, dict) else answer
        items = data.get("list") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise TransientError(
                "OpusClip answered the project list with an unexpected shape", reason="opus-unavailable"
            )
        return [item for item in items if isinstance(item, dict)]

    def get_project(self, project_id: str) -> dict[str, Any]:
        """``GET /api/clip-projects/{projectId}``: the project and its ``stage``."""
        answer = self._call("GET", f"/api/clip-projects/{quote(project_id, safe='')}", "the project lookup")
        if not isinstance(answer, dict) or not isinstance(answer.get("stage"), str):
            raise TransientError("OpusClip answered the project lookup without a stage", reason="opus-unavailable")
        return answer

    def clips_page(self, project_id: str, page_num: int, page_size: int) -> list[dict[str, Any]]:
        """One page of ``GET /api/exportable-clips?q=findByProjectId``; pages count from 1.

        The API description shows a bare array, OpusClip's own tools read ``{"data": [...]}``:
        both are accepted.
        """
        params = {"q": "findByProjectId", "projectId": project_id, "pageNum": page_num, "pageSize": page_size}
        answer = self._call("GET", "/api/exportable-clips", "the clip list", params=params)
        if isinstance(answer, dict):
            answer = answer.get("data")
        if not isinstance(answer, list) or not all(isinstance(clip, dict) for clip in answer):
            raise TransientError("OpusClip answered the clip list with an unexpected shape", reason="opus-unavailable")
        return answer

    def transcript(self, project_id: str) -> Any:
        """``GET /api/transcripts?q=findByProjectId``: the project's ``TranscriptResponse`` as answered
        (``domain/captions.py`` reads it, trusting nothing of its shape); None when OpusClip has none
        for it (HTTP 404)."""
        params = {"q": "findByProjectId", "projectId": project_id}
        try:
            return self._call("GET", "/api/transcripts", "the transcript lookup", params=params)
        except OpusApiError as exc:
            if exc.reason != "not-found":
                raise
            return None

    def all_clips(self, project_id: str, page_size: int = CLIPS_PAGE_SIZE) -> list[dict[str, Any]]:
        """Every exportable clip: there is no total and no cursor, so pages are read until one
        comes back shorter than ``page_size`` (an exactly full last page costs one empty read).
        A server that ignores paging cannot make this loop: a page longer than asked for, or one
        that brings no clip id not seen before, ends the listing (its new clips kept), and so does
        ``MAX_CLIP_PAGES``."""
        clips: list[dict[str, Any]] = []
        seen: set[str] = set()
        for page_num in range(1, MAX_CLIP_PAGES + 1):
            page = self.clips_page(project_id, page_num, page_size)
            new = [clip for clip in page if _clip_key(clip) not in seen]
            seen.update(_clip_key(clip) for clip in new)
            clips.extend(new)
            if len(page) < page_size or len(page) > page_size or not new:
                return clips
        logs.warning(
            f"the clip list of project {project_id} did not end within {MAX_CLIP_PAGES} pages; "
            f"its first {len(clips)} clips are taken",
            event="clip_list_cut",
        )
        return clips

    # -- social posting (OpenAPI tags social-posting, enterprise) ------------------------------

    def _paced(self, endpoint: str, call: Callable[[], Any]) -> Any:
        """``call`` to one social endpoint, 1 second after this instance's last answer from it (OpusClip's
        limit there: counted from the answer, every request arrives a second after the last one did).
        A 429 (another instance's call came first) means the request was not taken: it is waited out
        and sent again, up to ``SOCIAL_ATTEMPTS`` times while its Retry-After is short."""
        for attempt in range(1, SOCIAL_ATTEMPTS + 1):
            wait = self._social_sent.get(endpoint, -SOCIAL_SPACING_SECONDS) + SOCIAL_SPACING_SECONDS - self._clock()
            if wait > 0:
                self.sleep(wait)
            try:
                return call()
            except RateLimitedError as exc:
                hint = exc.retry_after if exc.retry_after is not None else SOCIAL_SPACING_SECONDS
                if attempt == SOCIAL_ATTEMPTS or hint > SOCIAL_RETRY_AFTER_MAX:
                    raise
                self.sleep(hint)
            finally:
                self._social_sent[endpoint] = self._clock()
        raise AssertionError("unreachable")  # the last attempt returned or raised

    def social_accounts(self) -> list[Account]:
        """``GET /api/social-accounts?q=mine``: the connected accounts posts can go to."""
        answer = self._paced(
            "social-accounts",
            lambda: self._call("GET", "/api/social-accounts", "the social-account list", params={"q": "mine"}),
        )
        try:
            return accounts_listed(answer)
        except ValueError as exc:
            raise TransientError(
                f"OpusClip answered the social-account list with an unexpected shape ({exc})", reason="opus-unavailable"
            ) from None

    def post_now(self, body: dict[str, Any]) -> str:
        """``POST /api/post-tasks``: publish a clip now; the ``postId``."""
        return self._posted("/api/post-tasks", body, "postId", "the post request")

    def schedule_post(self, body: dict[str, Any]) -> str:
        """``POST /api/publish-schedules`` (``publishAt`` in the body, a future UTC time); the ``scheduleId``."""
        return self._posted("/api/publish-schedules", body, "scheduleId", "the publish-schedule request")

    def _posted(self, path: str, body: dict[str, Any], id_field: str, action: str) -> str:
        """One post request and the id its ``{data: {...}}`` answer names. An answer without a usable
        id is a ``TransientError`` like a lost one: the post may exist all the same."""
        answer = self._paced(path, lambda: self._post(path, body, action))
        data = answer.get("data")
        ident = data.get(id_field) if isinstance(data, dict) else None
        if not isinstance(ident, str) or not ident.strip() or not ident.isprintable() or len(ident) > 200:
            raise TransientError(f"OpusClip answered {action} without a usable {id_field}", reason="opus-unavailable")
        return ident

    def cancel_schedule(self, schedule_id: str) -> None:
        """``DELETE /api/publish-schedules/{scheduleId}``: cancel a schedule before its time."""
        path = f"/api/publish-schedules/{quote(schedule_id, safe='')}"
        self._paced("/api/publish-schedules/", lambda: self._call("DELETE", path, "the publish-schedule cancellation"))
