"""The stand-in's project list (``GET /api/clip-projects?q=mine&page&pageSize``), its faults that act
before they spoil the answer, and stalls that move on, as OpusClip's clients meet them."""

from __future__ import annotations

import pytest
import requests

from conftest import API_KEY
from support import wait_for

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def listing(standin, **params) -> requests.Response:
    query = {"q": "mine", "page": "0", "pageSize": "20", **params}
    return requests.get(f"{standin.base_url}/api/clip-projects", params=query, headers=AUTH, timeout=10)


def test_the_list_shows_every_project_newest_first_with_its_upload_and_title(standin) -> None:
    first = standin.create_project(API_KEY, uploadedVideoAttr={"title": "one"}).json()
    second = standin.create_project(API_KEY, uploadedVideoAttr={"title": "two"}).json()

    answer = listing(standin)

    assert answer.status_code == 200
    items = answer.json()["data"]["list"]
    assert [i["projectId"] for i in items] == [second["id"], first["id"]]
    assert [i["sourceInfo"]["title"] for i in items] == ["two", "one"]
    assert items[1]["sourceId"] == standin.project(first["id"])["request"]["videoUrl"] and items[1]["createdAt"]


def test_the_list_pages_from_zero(standin) -> None:
    ids = [standin.create_project(API_KEY).json()["id"] for _ in range(3)]
    page = lambda n: [i["projectId"] for i in listing(standin, page=str(n), pageSize="2").json()["data"]["list"]]  # noqa: E731
    assert page(0) == ids[::-1][:2] and page(1) == ids[:1] and page(2) == []


@pytest.mark.parametrize(
    "params",
    [{"q": "all"}, {"page": "-1"}, {"page": "x"}, {"pageSize": "0"}, {"pageSize": "101"}, {"sort": "new"}],
    ids=["q", "negative-page", "word-page", "size-0", "size-101", "unknown"],
)
def test_the_list_refuses_a_query_it_does_not_document(standin, params: dict) -> None:
    assert listing(standin, **params).status_code == 400


def test_the_list_wants_the_key(standin) -> None:
    response = requests.get(
        f"{standin.base_url}/api/clip-projects", params={"q": "mine", "page": 0, "pageSize": 1}, timeout=10
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "fault",
    [{"kind": "drop"}, {"kind": "status", "status": 502}, {"kind": "garble"}],
    ids=["drop", "502", "garble"],
)
def test_a_fault_after_the_act_makes_the_project_and_spoils_the_answer(standin, fault: dict) -> None:
    standin.inject({"endpoint": "clip-projects", "after": True, **fault})
    try:
        response = standin.create_project(API_KEY)
    except requests.ConnectionError:
        response = None
    assert response is None or response.status_code == 502 or response.content == b'{"id": "P'
    assert len(listing(standin).json()["data"]["list"]) == 1


def test_a_stamp_adds_its_headers_to_the_real_answer(standin) -> None:
    standin.inject({"endpoint": "clip-projects", "kind": "stamp", "after": True, "headers": {"X-RateLimit-Reset": "x"}})
    response = standin.create_project(API_KEY)
    assert response.status_code == 201 and response.json()["id"] and response.headers["X-RateLimit-Reset"] == "x"


def test_a_stalled_project_moves_on_to_complete_with_its_clips(standin) -> None:
    standin.configure(projectSeconds=0.3, clipsPerProject=2)
    standin.stall_next(resume_after=1.0)
    project_id = standin.create_project(API_KEY).json()["id"]

    wait_for(lambda: standin.project(project_id)["stage"] == "STALLED", timeout=10)
    assert standin.project(project_id)["stallCount"] == 1 and not standin.clip_md5s(project_id)
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=10)
    assert standin.project(project_id)["stallCount"] == 1 and len(standin.clip_md5s(project_id)) == 2
