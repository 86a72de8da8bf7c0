"""The OpusClip REST API: upload links, clip projects, their exportable clips and transcripts.

Every call passes the gate first: an injected fault, then the Bearer key, then the organisation
(when the setting ``orgId`` asks for one), then the rate limit.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs

from .. import clip_schema
from .exchange import Answer, Reply, Request, fault_answer
from .state import StandIn, upload_credits

UPGRADE_URL = "https://www.opus.pro/contact-api"  # as opus-errors.yml's example body
MAX_PAGE_SIZE = 100  # OpusClip documents no maximum; the stand-in's own bound, above the 50 clients use
_POSITIVE = re.compile(r"^[1-9][0-9]{0,8}$")


def _gate(state: StandIn, request: Request, endpoint: str) -> Answer | None:
    """The gate of every ``/api/*`` call: injected fault, then the Bearer key, then the organisation,
    then the rate limit. None when the call may go on; otherwise the answer it gets."""
    refused = fault_answer(state.take_fault(endpoint), request)
    if refused is not None:
        return refused
    if request.headers.get("Authorization") != f"Bearer {state.api_key}":
        return Reply(401, {"message": "Unauthorized"})
    org_id = state.config["orgId"]
    if org_id is not None and request.headers.get("x-opus-org-id") != org_id:
        state.count_refused("organization")
        return Reply(403, {"message": "x-opus-org-id must name the organization (the key belongs to several)"})
    retry_after = state.admit(request.headers["Authorization"])
    if retry_after is None:
        return None
    return Reply(429, {"message": "Too Many Requests"}, {"Retry-After": str(retry_after)})


def upload_link(state: StandIn, request: Request) -> Answer:
    """``POST /api/upload-links``: where to start the resumable session."""
    body = request.json_body()
    if refused := _gate(state, request, "upload-links"):
        return refused
    if body != {"video": {"usecase": "LocalUpload"}}:
        return Reply(400, {"message": 'body must be {"video": {"usecase": "LocalUpload"}}'})
    upload, use, total = state.new_upload()
    return Reply(
        200,
        {
            "url": f"{state.base_url}/upload/{upload.upload_id}/google-upload",
            "uploadId": upload.upload_id,
            "dnsUrl": state.base_url,
            "useAmount": use,
            "totalAmount": total,
        },
    )


def create_project(state: StandIn, request: Request) -> Answer:
    """``POST /api/clip-projects`` for a completed upload. An upload the stand-in was told to forget
    (``forget_uploads``) is refused as an unknown one: what OpusClip answers then is undocumented."""
    body = request.json_body()
    if refused := _gate(state, request, "clip-projects"):
        return refused
    problems = clip_schema.problems(body)
    if problems:
        return Reply(400, {"message": problems})
    upload_id = request.headers.get("x-opus-upload-id")
    upload = state.upload(upload_id or "")
    if upload_id != body["videoUrl"] or upload is None or not upload.complete or upload.forgotten:
        return Reply(400, {"message": "x-opus-upload-id must equal videoUrl and name a completed upload"})
    credits = upload_credits(upload.path)
    if credits is None:
        return Reply(400, {"message": "the upload is not a video whose duration can be read"})
    project = state.create_project(upload.upload_id, body, credits)
    if project == "concurrent":
        return Reply(429, {"message": "Too many concurrent projects"}, {"X-Cap-Reason": "concurrent"})
    if project == "monthly":
        body = {"code": "API_MONTHLY_CAP_REACHED", "reset_at": state.reset_at(), "upgrade_url": UPGRADE_URL}
        return Reply(403, body)
    return Reply(201, project.representation(project.created))


def project_list(state: StandIn, request: Request) -> Answer:
    """``GET /api/clip-projects?q=mine&page=P&pageSize=N``: the workspace's projects, newest first
    (pages from 0, pageSize 1–100), answered ``{"data": {"list": [...]}}``; strict about its query."""
    if refused := _gate(state, request, "project-list"):
        return refused
    params = parse_qs(request.query, keep_blank_values=True)
    problem = _list_query_problem(params)
    if problem:
        return Reply(400, {"message": problem})
    page, size = int(params["page"][0]), int(params["pageSize"][0])
    return Reply(200, {"data": {"list": state.my_projects(page, size)}})


def _list_query_problem(params: dict[str, list[str]]) -> str | None:
    unknown = sorted(set(params) - {"q", "page", "pageSize"})
    if unknown:
        return f"unknown query parameters: {', '.join(unknown)}"
    if any(len(values) != 1 for values in params.values()):
        return "each query parameter at most once"
    if params.get("q") != ["mine"]:
        return "q must be mine"
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", params.get("page", [""])[0]):
        return "page must be a whole number from 0"
    size = params.get("pageSize", [""])[0]
    if not _POSITIVE.match(size) or int(size) > MAX_PAGE_SIZE:
        return f"pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}"
    return None


def api_usage(state: StandIn, request: Request) -> Answer:
    """``GET /api/api-usage?q=mine``: the month's credits (or ``{"uncapped": true}``)."""
    if refused := _gate(state, request, "api-usage"):
        return refused
    if parse_qs(request.query) != {"q": ["mine"]}:
        return Reply(400, {"message": "q must be mine"})
    return Reply(200, state.usage())


def get_project(state: StandIn, request: Request, project_id: str) -> Answer:
    """``GET /api/clip-projects/{id}``: the project as it stands now."""
    if refused := _gate(state, request, "project-get"):
        return refused
    project = state.project(project_id)
    if project is None:
        return Reply(404, {"message": "project not found"})
    return Reply(200, project.representation(time.time()))


def exportable_clips(state: StandIn, request: Request) -> Answer:
    """``GET /api/exportable-clips?q=findByProjectId``; collections are not simulated."""
    if refused := _gate(state, request, "exportable-clips"):
        return refused
    params = parse_qs(request.query, keep_blank_values=True)
    problem = _clips_query_problem(params)
    if problem:
        return Reply(400, {"message": problem})
    project = state.project(params["projectId"][0])
    if project is None:
        return Reply(404, {"message": "project not found"})
    number, size = int(params["pageNum"][0]), int(params["pageSize"][0])
    if state.config["ignorePaging"]:
        number = 1
        size = MAX_PAGE_SIZE * 10 if state.config["ignorePaging"] == "all" else size
    page = state.clips(project)[(number - 1) * size : number * size]
    return Reply(200, page if state.config["clipsEnvelope"] == "array" else {"data": page})


def transcript(state: StandIn, request: Request) -> Answer:
    """``GET /api/transcripts?q=findByProjectId&projectId=…``: a TranscriptResponse, ``data[0]``
    the paragraphs, or null while the project has none (setting ``transcript`` false, or not COMPLETE)."""
    if refused := _gate(state, request, "transcripts"):
        return refused
    params = parse_qs(request.query, keep_blank_values=True)
    if set(params) != {"q", "projectId"} or params["q"] != ["findByProjectId"] or len(params["projectId"]) != 1:
        return Reply(400, {"message": "q must be findByProjectId, with one projectId and nothing else"})
    project = state.project(params["projectId"][0])
    if project is None:
        return Reply(404, {"message": "project not found"})
    return Reply(200, {"data": [state.transcript(project)]})


def brand_templates(state: StandIn, request: Request) -> Answer:
    """``GET /api/brand-templates?q=mine``: the workspace's templates (setting ``brandTemplates``); a 403
    when that setting is None, as for a workspace without the enterprise feature."""
    if refused := _gate(state, request, "brand-templates"):
        return refused
    if parse_qs(request.query, keep_blank_values=True) != {"q": ["mine"]}:
        return Reply(400, {"message": "q must be mine"})
    ids = state.config["brandTemplates"]
    if ids is None:
        return Reply(403, {"message": "brand templates are an enterprise feature"})
    return Reply(200, [_template(template_id, n == 0) for n, template_id in enumerate(ids)])


def _template(template_id: str, default: bool) -> dict:
    """A BrandTemplateRepresentation with every field the API description requires."""
    return {
        "templateId": template_id,
        "name": f"Template {template_id}",
        "isDefault": default,
        "preferences": {"layoutAspectRatio": "portrait", "enableCaption": True},
        "type": "Custom",
    }


def _clips_query_problem(params: dict[str, list[str]]) -> str | None:
    """What is wrong with an exportable-clips query, strictly: pageNum and pageSize are required
    although the OpenAPI marks them optional, so that a client never relies on unstated defaults."""
    unknown = sorted(set(params) - {"q", "projectId", "pageNum", "pageSize"})
    if unknown:
        return f"unknown query parameters: {', '.join(unknown)}"
    if any(len(values) != 1 for values in params.values()):
        return "each query parameter at most once"
    if params.get("q") != ["findByProjectId"]:
        return "q must be findByProjectId (the stand-in has no collections)"
    if not params.get("projectId", [""])[0]:
        return "projectId is required when q=findByProjectId"
    for name in ("pageNum", "pageSize"):
        if not _POSITIVE.match(params.get(name, [""])[0]):
            return f"{name} must be a whole number from 1"
    if int(params["pageSize"][0]) > MAX_PAGE_SIZE:
        return f"pageSize must be at most {MAX_PAGE_SIZE}"
    return None
