"""After creation the stand-in behaves as OpusClip does: a project walks its stages to COMPLETE (or
STALLED), its clips page through /api/exportable-clips, and their files download from /media/."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta

import pytest
import requests

from opus_local.standin import STAGES, media_bytes

from conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Required by the OpenAPI's ClipProjectRepresentation and ExportableClipRepresentation.
PROJECT_FIELDS = {
    "id", "userId", "orgId", "isDeleted", "isPurged", "projectId", "sourcePlatform", "sourceId", "labels",
    "productTier", "stage", "storageSize", "storageStatus", "storageExpireAt", "createdAt", "updatedAt",
    "clusterJobId", "cluster", "visibility", "permissions", "promptRecommendations",
}  # fmt: skip
CLIP_FIELDS = {
    "id", "projectId", "runId", "curationId", "orgId", "userId", "storageUsed", "durationMs", "title", "text",
    "createdAt", "updatedAt", "productTier", "renderPref",
}  # fmt: skip


def new_project(standin, **request) -> dict:
    response = standin.create_project(API_KEY, **request)
    assert response.status_code == 201, response.text
    return response.json()


def get_project(standin, project_id: str) -> dict:
    response = requests.get(f"{standin.base_url}/api/clip-projects/{project_id}", headers=AUTH, timeout=10)
    response.raise_for_status()
    return response.json()


def clips_query(standin, headers: dict | None = None, **params) -> requests.Response:
    url = f"{standin.base_url}/api/exportable-clips"
    return requests.get(url, params=params, headers=AUTH if headers is None else headers, timeout=10)


def read(standin, endpoint: str, project_id: str, headers: dict = AUTH) -> requests.Response:
    """One call of a read endpoint: ``project-get`` or ``exportable-clips``."""
    if endpoint == "project-get":
        return requests.get(f"{standin.base_url}/api/clip-projects/{project_id}", headers=headers, timeout=10)
    return clips_query(standin, headers, q="findByProjectId", projectId=project_id, pageNum=1, pageSize=2)


def clips_page(standin, project_id: str, page_num: int = 1, page_size: int = 10) -> list[dict]:
    response = clips_query(standin, q="findByProjectId", projectId=project_id, pageNum=page_num, pageSize=page_size)
    assert response.status_code == 200, response.text
    return response.json()


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def finished_project(standin, **settings) -> dict:
    """A project that is COMPLETE at once (projectSeconds 0)."""
    standin.configure(projectSeconds=0, **settings)
    return new_project(standin)


# -- lifecycle ---------------------------------------------------------------------------------


def test_a_new_project_is_queued(standin) -> None:
    standin.configure(projectSeconds=30)
    project = new_project(standin)
    assert project["stage"] == "QUEUED" and get_project(standin, project["id"])["stage"] == "QUEUED"


def test_a_project_is_complete_once_its_configured_time_has_passed(standin) -> None:
    standin.configure(projectSeconds=1)
    project = new_project(standin)
    time.sleep(1.1)
    answer = get_project(standin, project["id"])
    assert answer["stage"] == "COMPLETE"
    assert parse(answer["updatedAt"]) - parse(answer["createdAt"]) == timedelta(seconds=1)


def test_stages_follow_opusclips_order(standin) -> None:
    standin.configure(projectSeconds=1.2)
    project = new_project(standin)
    seen = ["QUEUED"]
    while seen[-1] != "COMPLETE":
        stage = get_project(standin, project["id"])["stage"]
        if stage != seen[-1]:
            seen.append(stage)
        time.sleep(0.03)
    order = [*STAGES, "COMPLETE"]
    assert seen == sorted(seen, key=order.index) and len(seen) >= 5


def test_the_project_answer_has_every_field_the_openapi_requires(standin) -> None:
    project = new_project(standin)
    answer = get_project(standin, project["id"])
    assert answer.keys() >= PROJECT_FIELDS and answer["id"] == answer["projectId"] == project["id"]
    assert parse(answer["storageExpireAt"]) - parse(answer["createdAt"]) == timedelta(days=30)


def test_a_stalled_project_ends_stalled_instead_of_complete(standin) -> None:
    standin.configure(projectSeconds=0.5)
    project = new_project(standin)
    standin.stall(project["id"])
    time.sleep(0.6)
    answer = get_project(standin, project["id"])
    assert answer["stage"] == "STALLED" and answer["stallCount"] == 1


def test_stall_next_stalls_only_the_next_projects(standin) -> None:
    standin.configure(projectSeconds=0)
    standin.stall_next(1)
    first, second = new_project(standin), new_project(standin)
    assert [get_project(standin, p["id"])["stage"] for p in (first, second)] == ["STALLED", "COMPLETE"]


def test_a_project_that_has_ended_cannot_be_stalled(standin) -> None:
    project = finished_project(standin)
    with pytest.raises(requests.HTTPError, match="409"):
        standin.stall(project["id"])


def test_an_unknown_project_is_not_found(standin) -> None:
    response = requests.get(f"{standin.base_url}/api/clip-projects/P000000000000", headers=AUTH, timeout=10)
    assert response.status_code == 404


def test_the_control_api_shows_the_project_with_its_request(standin) -> None:
    project = new_project(standin, curationPref={"genre": "Vlog"})
    assert standin.project(project["id"])["request"]["curationPref"] == {"clipDurations": [[0, 90]], "genre": "Vlog"}


def test_a_config_change_does_not_change_a_project_already_created(standin) -> None:
    standin.configure(projectSeconds=0.3)
    project = new_project(standin)
    standin.configure(projectSeconds=60)
    time.sleep(0.4)
    assert get_project(standin, project["id"])["stage"] == "COMPLETE"


def test_reset_restores_the_default_configuration(standin) -> None:
    defaults = standin.config()
    standin.configure(projectSeconds=9, clipsEnvelope="data", rateLimitPerMinute=5)
    standin.reset()
    assert standin.config() == defaults


@pytest.mark.parametrize(
    "settings", [{"projectSecond": 1}, {"projectSeconds": -1}, {"clipsEnvelope": "list"}, {"clipBytes": 0}]
)
def test_bad_settings_are_refused_whole(standin, settings: dict) -> None:
    before = standin.config()
    with pytest.raises(requests.HTTPError, match="400"):
        standin.configure(clipsPerProject=7, **settings)
    assert standin.config() == before


# -- uploads OpusClip no longer keeps (undocumented: api-facts Unknowns 6) -------------------------


def test_an_upload_is_kept_for_another_project_by_default(standin) -> None:
    upload_id = standin.upload_video(API_KEY)
    assert standin.create_project(API_KEY, upload_id=upload_id).status_code == 201
    assert standin.create_project(API_KEY, upload_id=upload_id).status_code == 201


def test_a_forgotten_upload_is_refused_as_an_unknown_one(standin) -> None:
    upload_id = standin.upload_video(API_KEY)
    assert standin.forget_uploads() == [upload_id]
    refused = standin.create_project(API_KEY, upload_id=upload_id)
    unknown = standin.create_project(API_KEY, upload_id="up_0000000000000000")
    assert refused.status_code == unknown.status_code == 400
    assert refused.json() == unknown.json() and "completed upload" in refused.json()["message"]
    assert standin.upload(upload_id)["forgotten"] and standin.upload(upload_id)["md5"]  # still on record


def test_only_the_uploads_made_so_far_are_forgotten(standin) -> None:
    before = standin.upload_video(API_KEY)
    assert standin.forget_uploads() == [before]
    after = standin.upload_video(API_KEY)
    assert standin.create_project(API_KEY, upload_id=after).status_code == 201
    assert standin.forget_uploads() == [after]  # the one before is not forgotten twice


# -- exportable clips --------------------------------------------------------------------------


def test_no_exportable_clips_before_the_project_is_complete(standin) -> None:
    standin.configure(projectSeconds=30)
    assert clips_page(standin, new_project(standin)["id"]) == []


def test_a_stalled_project_has_no_exportable_clips(standin) -> None:
    standin.stall_next(1)
    assert clips_page(standin, finished_project(standin)["id"]) == []


@pytest.mark.parametrize(("clips", "sizes"), [(5, [2, 2, 1]), (4, [2, 2, 0])])
def test_clips_page_until_a_short_page(standin, clips: int, sizes: list[int]) -> None:
    project = finished_project(standin, clipsPerProject=clips)
    pages = [clips_page(standin, project["id"], n, 2) for n in range(1, len(sizes) + 1)]
    assert [len(page) for page in pages] == sizes
    assert len({clip["id"] for page in pages for clip in page}) == clips


def test_a_clip_has_every_field_the_openapi_requires(standin) -> None:
    project = finished_project(standin)
    for clip in clips_page(standin, project["id"]):
        assert clip.keys() >= CLIP_FIELDS and clip["projectId"] == project["id"]
        assert clip["id"] == f"{project['id']}.{clip['curationId']}" and isinstance(clip["hashtags"], str)


def test_clips_are_the_same_on_every_call(standin) -> None:
    project = finished_project(standin)
    assert clips_page(standin, project["id"]) == clips_page(standin, project["id"])


@pytest.mark.parametrize(("scored", "carrying"), [("all", [1, 2, 3]), ("none", []), ("alternate", [1, 3])])
def test_scored_clips_setting_says_which_clips_carry_rank_and_score(standin, scored: str, carrying: list) -> None:
    project = finished_project(standin, scoredClips=scored)
    assert [clip["rank"] for clip in clips_page(standin, project["id"]) if "score" in clip] == carrying


def test_the_data_envelope_wraps_the_clips(standin) -> None:
    project = finished_project(standin, clipsEnvelope="data")
    response = clips_query(standin, q="findByProjectId", projectId=project["id"], pageNum=1, pageSize=10)
    assert len(response.json()["data"]) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"projectId": "P", "pageNum": 1, "pageSize": 2},
        {"q": "findByCollectionId", "projectId": "P", "pageNum": 1, "pageSize": 2},
        {"q": "findByProjectId", "pageNum": 1, "pageSize": 2},
        {"q": "findByProjectId", "projectId": "P", "pageSize": 2},
        {"q": "findByProjectId", "projectId": "P", "pageNum": 1},
        {"q": "findByProjectId", "projectId": "P", "pageNum": 0, "pageSize": 2},
        {"q": "findByProjectId", "projectId": "P", "pageNum": 1, "pageSize": "two"},
        {"q": "findByProjectId", "projectId": "P", "pageNum": 1, "pageSize": 101},
        {"q": "findByProjectId", "projectId": "P", "pageNum": 1, "pageSize": 2, "limit": 5},
    ],
)
def test_a_bad_exportable_clips_query_is_refused(standin, params: dict) -> None:
    project = finished_project(standin)
    params = {k: project["id"] if v == "P" else v for k, v in params.items()}
    assert clips_query(standin, **params).status_code == 400


def test_clips_of_an_unknown_project_are_not_found(standin) -> None:
    response = clips_query(standin, q="findByProjectId", projectId="P000000000000", pageNum=1, pageSize=2)
    assert response.status_code == 404


# -- clip files --------------------------------------------------------------------------------


def test_clip_files_match_the_advertised_md5(standin) -> None:
    project = finished_project(standin, clipBytes=5000)
    advertised = standin.clip_md5s(project["id"])
    downloaded = {
        clip["id"]: hashlib.md5(requests.get(clip["uriForExport"], timeout=10).content).hexdigest()
        for clip in clips_page(standin, project["id"])
    }
    assert downloaded == advertised and len(advertised) == 3


def test_clip_file_content_can_be_recomputed_from_its_url(standin) -> None:
    project = finished_project(standin, clipBytes=3 * 1024 * 1024 + 7)
    [clip, *_] = clips_page(standin, project["id"])
    content = requests.get(clip["uriForExport"], timeout=10).content
    key = clip["uriForExport"].split("/media/", 1)[1]
    assert content == b"".join(media_bytes(key, 3 * 1024 * 1024 + 7))


def test_export_urls_point_at_the_standin_by_default(standin) -> None:
    project = finished_project(standin)
    [clip, *_] = clips_page(standin, project["id"])
    assert clip["uriForExport"] == f"{standin.base_url}/media/{project['id']}/{clip['curationId']}.mp4"


def test_a_media_base_url_moves_the_export_urls_to_another_host(standin) -> None:
    elsewhere = standin.base_url.replace("127.0.0.1", "localhost")
    project = finished_project(standin, mediaBaseUrl=elsewhere)
    [clip, *_] = clips_page(standin, project["id"])
    assert clip["uriForExport"].startswith(f"{elsewhere}/media/")
    assert requests.get(clip["uriForExport"], timeout=10).status_code == 200


def test_preview_and_thumbnail_are_served_too(standin) -> None:
    project = finished_project(standin, scoredClips="all")
    [clip, *_] = clips_page(standin, project["id"])
    preview = requests.get(clip["uriForPreview"], timeout=10)
    thumbnail = requests.get(clip["uriForThumbnail"], timeout=10)
    assert preview.headers["Content-Type"] == "video/mp4" and thumbnail.headers["Content-Type"] == "image/jpeg"


def test_full_downloads_are_counted_per_clip(standin) -> None:
    project = finished_project(standin)
    first, *_ = clips_page(standin, project["id"])
    for _ in range(2):
        requests.get(first["uriForExport"], timeout=10).raise_for_status()
    downloads = {clip_id: f["downloads"] for clip_id, f in standin.stats()["clipFiles"].items()}
    assert downloads[first["id"]] == 2 and sum(downloads.values()) == 2


def test_a_file_the_project_does_not_have_is_not_found(standin) -> None:
    project = finished_project(standin)
    url = f"{standin.base_url}/media/{project['id']}/CU0000000000.mp4"
    assert requests.get(url, timeout=10).status_code == 404


def test_a_dropped_download_is_cut_short_and_not_counted(standin) -> None:
    project = finished_project(standin)
    [clip, *_] = clips_page(standin, project["id"])
    standin.inject({"endpoint": "media", "kind": "drop", "after_bytes": 100})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(clip["uriForExport"], timeout=10)
    assert standin.stats()["clipFiles"][clip["id"]]["downloads"] == 0


# -- faults on the new endpoints ---------------------------------------------------------------


def test_a_status_fault_answers_the_media_call(standin) -> None:
    project = finished_project(standin)
    [clip, *_] = clips_page(standin, project["id"])
    standin.inject({"endpoint": "media", "kind": "status", "status": 503})
    assert [requests.get(clip["uriForExport"], timeout=10).status_code for _ in range(2)] == [503, 200]


@pytest.mark.parametrize("endpoint", ["project-get", "exportable-clips"])
def test_a_status_fault_answers_the_api_call(standin, endpoint: str) -> None:
    project = finished_project(standin)
    standin.inject({"endpoint": endpoint, "kind": "status", "status": 502})
    assert [read(standin, endpoint, project["id"]).status_code for _ in range(2)] == [502, 200]


@pytest.mark.parametrize("endpoint", ["project-get", "exportable-clips"])
def test_a_drop_fault_closes_the_connection_unanswered(standin, endpoint: str) -> None:
    project = finished_project(standin)
    standin.inject({"endpoint": endpoint, "kind": "drop"})
    with pytest.raises(requests.ConnectionError):
        read(standin, endpoint, project["id"])


def test_a_slow_fault_delays_the_answer(standin) -> None:
    project = finished_project(standin)
    standin.inject({"endpoint": "project-get", "kind": "slow", "seconds": 0.4})
    began = time.monotonic()
    get_project(standin, project["id"])
    assert time.monotonic() - began >= 0.4


# -- authentication ----------------------------------------------------------------------------


NO_KEYS = [{}, {"Authorization": "Bearer sk-wrong"}]


@pytest.mark.parametrize("headers", NO_KEYS)
@pytest.mark.parametrize("endpoint", ["project-get", "exportable-clips"])
def test_the_read_endpoints_require_the_bearer_key(standin, headers: dict, endpoint: str) -> None:
    assert read(standin, endpoint, finished_project(standin)["id"], headers).status_code == 401


@pytest.mark.parametrize("headers", NO_KEYS)
def test_creating_a_project_requires_the_bearer_key(standin, headers: dict) -> None:
    response = requests.post(
        f"{standin.base_url}/api/clip-projects", json={"videoUrl": "x"}, headers=headers, timeout=10
    )
    assert response.status_code == 401
