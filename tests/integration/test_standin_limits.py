"""The stand-in's limits are OpusClip's: N requests per minute per key on every /api/* call (429 +
Retry-After), and a cap on projects in flight (429 + X-Cap-Reason: concurrent). Both are off by default."""

from __future__ import annotations

import time

import requests

from conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def get_project(standin, project_id: str) -> requests.Response:
    return requests.get(f"{standin.base_url}/api/clip-projects/{project_id}", headers=AUTH, timeout=10)


def created(standin) -> dict:
    response = standin.create_project(API_KEY)
    assert response.status_code == 201, response.text
    return response.json()


def test_limits_are_off_by_default(standin) -> None:
    project = created(standin)
    assert all(get_project(standin, project["id"]).status_code == 200 for _ in range(40))
    assert standin.refused() == {"rate": 0, "concurrent": 0, "monthly": 0}


def test_a_call_beyond_the_rate_limit_gets_429_with_retry_after(standin) -> None:
    project = created(standin)
    standin.configure(rateLimitPerMinute=3)
    answers = [get_project(standin, project["id"]) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 55 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_refused_calls_are_counted_by_kind(standin) -> None:
    project = created(standin)
    standin.configure(rateLimitPerMinute=1)
    for _ in range(3):
        get_project(standin, project["id"])
    assert standin.refused() == {"rate": 2, "concurrent": 0, "monthly": 0}


def test_every_api_call_counts_toward_the_rate_limit(standin) -> None:
    standin.configure(rateLimitPerMinute=3)
    project = created(standin)  # upload-links and clip-projects
    url = f"{standin.base_url}/api/exportable-clips"
    query = {"q": "findByProjectId", "projectId": project["id"], "pageNum": 1, "pageSize": 5}
    assert requests.get(url, params=query, headers=AUTH, timeout=10).status_code == 200
    assert get_project(standin, project["id"]).status_code == 429


def test_a_slot_frees_when_the_oldest_call_leaves_the_window(standin) -> None:
    project = created(standin)
    standin.configure(rateLimitPerMinute=1, rateWindowSeconds=1)
    assert get_project(standin, project["id"]).status_code == 200
    refused = get_project(standin, project["id"])
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert get_project(standin, project["id"]).status_code == 200


def test_projects_beyond_the_in_flight_cap_get_429_concurrent(standin) -> None:
    standin.configure(projectSeconds=30, concurrentProjects=1)
    created(standin)
    refused = standin.create_project(API_KEY)
    assert refused.status_code == 429 and refused.headers["X-Cap-Reason"] == "concurrent"
    assert standin.refused() == {"rate": 0, "concurrent": 1, "monthly": 0} and len(standin.stats()["projects"]) == 1


def test_a_slot_frees_when_a_project_completes(standin) -> None:
    standin.configure(projectSeconds=0.5, concurrentProjects=1)
    created(standin)
    assert standin.create_project(API_KEY).status_code == 429
    time.sleep(0.6)
    assert standin.create_project(API_KEY).status_code == 201


def test_a_stalled_project_frees_its_slot(standin) -> None:
    standin.configure(projectSeconds=0.5, concurrentProjects=1)
    standin.stall_next(1)
    created(standin)
    time.sleep(0.6)
    assert standin.create_project(API_KEY).status_code == 201


def test_the_most_projects_ever_in_flight_is_recorded(standin) -> None:
    standin.configure(projectSeconds=0.5)
    for _ in range(3):
        created(standin)
    time.sleep(0.6)
    created(standin)
    stats = standin.stats()
    assert stats["maxInFlight"] == 3 and stats["inFlight"] == 1
