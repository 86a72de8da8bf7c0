"""The stand-in's social-posting endpoints keep to OpusClip's API description, strictly, so that a
client that works against it sends what OpusClip takes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from conftest import API_KEY
from support import wait_for

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def clip(standin) -> tuple[str, str]:
    """A COMPLETE project's id and the bare id of its first clip."""
    standin.configure(projectSeconds=0.2, clipsPerProject=2)
    project_id = standin.create_project(API_KEY).json()["id"]
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=10)
    params = {"q": "findByProjectId", "projectId": project_id, "pageNum": 1, "pageSize": 10}
    clips = requests.get(f"{standin.base_url}/api/exportable-clips", params=params, headers=AUTH, timeout=10).json()
    time.sleep(1)  # the 1-a-second limit of each posting endpoint starts fresh
    return project_id, clips[0]["curationId"]


def body(project_id: str, clip_id: str, **changes) -> dict:
    return {
        "projectId": project_id,
        "clipId": clip_id,
        "postAccountId": "pa_youtube_1",
        "postDetail": {"title": "T", "custom": {"description": "D #x", "privacy": "public"}, "mediaType": "video"},
        **changes,
    }


def later(hours: float = 2) -> str:
    moment = datetime.now(UTC) + timedelta(hours=hours)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def post(standin, path: str, payload: dict) -> requests.Response:
    return requests.post(f"{standin.base_url}{path}", json=payload, headers=AUTH, timeout=10)


def test_the_connected_accounts_are_listed_and_configurable(standin) -> None:
    listed = requests.get(f"{standin.base_url}/api/social-accounts?q=mine", headers=AUTH, timeout=10)
    assert listed.status_code == 200 and {a["platform"] for a in listed.json()["data"]} >= {"YOUTUBE", "TWITTER"}
    standin.social_accounts([{"postAccountId": "a", "platform": "LINKEDIN", "extUserId": "1", "extUserName": "n"}])
    time.sleep(1)  # the endpoint takes 1 request a second
    again = requests.get(f"{standin.base_url}/api/social-accounts?q=mine", headers=AUTH, timeout=10).json()
    assert [a["postAccountId"] for a in again["data"]] == ["a"]
    standin.social_accounts(None)
    time.sleep(1)
    assert requests.get(f"{standin.base_url}/api/social-accounts?q=mine", headers=AUTH, timeout=10).status_code == 403


def test_a_schedule_is_made_and_cancelled_before_its_time(standin, clip) -> None:
    made = post(standin, "/api/publish-schedules", {**body(*clip), "publishAt": later()})
    assert made.status_code == 201
    schedule_id = made.json()["data"]["scheduleId"]
    [kept] = standin.social()["schedules"]
    assert kept["scheduleId"] == schedule_id and kept["cancelled"] is False

    gone = requests.delete(f"{standin.base_url}/api/publish-schedules/{schedule_id}", headers=AUTH, timeout=10)

    assert gone.status_code == 200 and gone.json() == {"data": {}}
    assert standin.social()["schedules"][0]["cancelled"] is True


def test_a_post_now_answers_its_post_id(standin, clip) -> None:
    made = post(standin, "/api/post-tasks", body(*clip))
    assert made.status_code == 201 and made.json()["data"]["postId"].endswith("-YOUTUBE")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda p, c: {"clipId": f"{p}.{c}"}, "bare clip id"),
        (lambda p, c: {"postAccountId": "pa_nobody"}, "not a connected account"),
        (lambda p, c: {"subAccountId": None}, "subAccountId"),
        (lambda p, c: {"publishAt": "2020-01-01T00:00:00.000Z"}, "future"),
        (lambda p, c: {"publishAt": "tomorrow"}, "UTC ISO 8601"),
        (lambda p, c: {"postDetail": {"mediaType": "video"}}, "title"),
    ],
)
def test_a_schedule_opusclip_would_refuse_is_refused(standin, clip, change, said: str) -> None:
    refused = post(standin, "/api/publish-schedules", {**body(*clip), "publishAt": later(), **change(*clip)})
    assert refused.status_code == 400 and said in refused.json()["message"]
    assert standin.social()["schedules"] == []


def test_an_account_with_a_sub_account_needs_it(standin, clip) -> None:
    refused = post(standin, "/api/post-tasks", body(*clip, postAccountId="pa_facebook_1"))
    assert refused.status_code == 400
    time.sleep(1)
    taken = post(standin, "/api/post-tasks", body(*clip, postAccountId="pa_facebook_1", subAccountId="sub_page_1"))
    assert taken.status_code == 201


def test_a_second_post_within_a_second_is_refused_with_429(standin, clip) -> None:
    assert post(standin, "/api/post-tasks", body(*clip)).status_code == 201
    second = post(standin, "/api/post-tasks", body(*clip))
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert len(standin.social()["posts"]) == 1 and standin.social()["refused"] == 1


def test_an_x_post_costs_one_credit(standin, clip) -> None:
    before = standin.credits_used()
    assert post(standin, "/api/post-tasks", body(*clip, postAccountId="pa_x_1")).status_code == 201
    assert standin.credits_used() == before + 1


def test_a_lost_answer_still_makes_the_schedule(standin, clip) -> None:
    standin.inject({"endpoint": "publish-schedules", "kind": "status", "status": 503})
    lost = post(standin, "/api/publish-schedules", {**body(*clip), "publishAt": later()})
    assert lost.status_code == 503 and len(standin.social()["schedules"]) == 1
