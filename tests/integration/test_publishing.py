"""Publishing the best clips to social accounts (issue 27), through the stand-in over HTTP and the
emulators: planned at clips-ready, carried out under ``auto`` or after ``--approve``, each (clip,
account) pair at most once whatever runs again, cancelled with ``--cancel``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from opus_pipeline import cli
from opus_pipeline.domain import publishing, states
from opus_pipeline.domain.events import pubsub_attributes, storage_object
from opus_pipeline.domain.messages import SWEEP_PUBLISH, SweepTick
from opus_pipeline.domain.webhook import registered_url
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.usecases.conclude import check_project, handle_webhook
from opus_pipeline.usecases.publish import publish_approved

from conftest import Stack, deliver_concurrently
from support import create, ingest, live_metadata, record, services, uploaded, video, wait_for

AUTO = {"OPUS_PUBLISH_APPROVAL": "auto"}
HOOK = {"OPUS_WEBHOOK_URL": "https://hooks.example.com/opus", "OPUS_WEBHOOK_TOKEN": "t" * 32}


@pytest.fixture(autouse=True)
def quick_scored_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=3, clipBytes=300_000, scoredClips="all")


def _at(hours: float) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def youtube_twice(at: datetime, every: str = "90m") -> dict[str, str]:
    return {
        "opus-publish": "youtube",
        "opus-publish-count": "2",
        "opus-publish-at": _iso(at),
        "opus-publish-every": every,
    }


def concluded(stack: Stack, standin, metadata: dict[str, str], **env: str) -> tuple[dict, str]:
    """A video with ``metadata`` uploaded, its project created and concluded (clips-ready) under ``env``."""
    resource, request = uploaded(stack, metadata)
    assert create(stack, request, **env) == states.PROJECT_CREATED
    project_id = record(stack, resource).project_id
    wait_for(lambda: standin.project(project_id)["stage"] == "COMPLETE", timeout=30)
    assert conclude(stack, resource, **env) == states.CLIPS_READY
    return resource, project_id


def conclude(stack: Stack, resource: dict, **env: str) -> str:
    stored = Ledger(stack.storage, stack.state_bucket).read(storage_object(resource))
    return check_project(stored, services(stack, **env), "sweep")


def output_json(stack: Stack, name: str) -> dict:
    return json.loads(stack.storage.bucket(stack.output_bucket).blob(name).download_as_bytes())


def plan(stack: Stack) -> dict:
    return output_json(stack, "talk.mp4/publish.json")


def live_schedules(standin) -> list[dict]:
    return [s for s in standin.social()["schedules"] if not s["cancelled"]]


def run_cli(stack: Stack, ticks: tuple[str, str], *args: str) -> int:
    return cli.main(
        [
            "publish",
            *args,
            f"gs://{stack.source_bucket}/talk.mp4",
            "--output-bucket",
            stack.output_bucket,
            "--state-bucket",
            stack.state_bucket,
            "--topic",
            ticks[0],
        ]
    )


def deliver_ticks(stack: Stack, ticks: tuple[str, str]) -> int:
    """What the sweeper does with the ticks on the topic: each ``publish`` one carries out the marked plans."""
    delivered = stack.pull(subscription=ticks[1])
    for message in delivered:
        attributes = pubsub_attributes({"message": {"attributes": dict(message.message.attributes)}})
        assert SweepTick.scope_of(attributes) == SWEEP_PUBLISH
        publish_approved(services(stack))
    return len(delivered)


# -- auto: carried out at clips-ready ---------------------------------------------------------


def test_under_auto_the_two_best_clips_are_scheduled_at_the_times_asked(stack: Stack, standin) -> None:
    at = _at(48)
    _, project_id = concluded(stack, standin, youtube_twice(at), **AUTO)

    schedules = live_schedules(standin)
    assert len(schedules) == 2
    ranked = {c["id"].split(".")[-1]: c["rank"] for c in output_json(stack, "talk.mp4/clips.json")["clips"]}
    first, second = sorted(schedules, key=lambda s: s["publishAt"])
    assert [ranked[first["clipId"]], ranked[second["clipId"]]] == [1, 2]
    assert first["publishAt"] == _iso(at).replace("Z", ".000Z")
    assert second["publishAt"] == _iso(at + timedelta(minutes=90)).replace("Z", ".000Z")
    assert first["postAccountId"] == "pa_youtube_1" and "subAccountId" not in first
    assert first["projectId"] == project_id and "." not in first["clipId"]
    assert first["postDetail"]["mediaType"] == "video" and first["postDetail"]["custom"]["privacy"] == "public"
    assert standin.social()["posts"] == []
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.SCHEDULED


def test_each_manifest_entry_lists_the_schedules_made_of_its_clip(stack: Stack, standin) -> None:
    at = _at(30)
    concluded(stack, standin, youtube_twice(at), **AUTO)

    ids = {s["scheduleId"] for s in live_schedules(standin)}
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    rows = [row for clip in clips for row in clip.get("published", [])]
    assert {row["scheduleId"] for row in rows} == ids
    assert all(set(row) == {"postAccountId", "platform", "scheduleId", "publishAt"} for row in rows)
    assert [len(clip.get("published", [])) for clip in clips] == [1, 1, 0]
    page = stack.storage.bucket(stack.output_bucket).blob("talk.mp4/index.html").download_as_text()
    assert page.count('class="post" data-state="scheduled"') == 2


def test_the_results_topic_carries_one_published_message(stack: Stack, standin) -> None:
    concluded(stack, standin, youtube_twice(_at(30)), **AUTO)

    messages = [m.message for m in stack.pull(subscription=stack.results_subscription)]
    published = [json.loads(m.data) for m in messages if m.attributes.get("status") == "published"]
    assert len(published) == 1
    assert published[0]["publishStatus"] == publishing.SCHEDULED and len(published[0]["posts"]) == 2


def test_a_time_already_past_is_posted_now(stack: Stack, standin) -> None:
    concluded(stack, standin, {"opus-publish": "YOUTUBE", "opus-publish-at": "2020-01-01T00:00:00Z"}, **AUTO)

    [post] = standin.social()["posts"]
    assert standin.social()["schedules"] == []
    assert plan(stack)["posts"][0]["state"] == publishing.PUBLISHED and plan(stack)["posts"][0]["postId"]
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.PUBLISHED
    assert post["postAccountId"] == "pa_youtube_1"


def test_a_facebook_page_is_posted_with_its_sub_account(stack: Stack, standin) -> None:
    concluded(stack, standin, {"opus-publish": "facebook_page", "opus-publish-at": _iso(_at(5))}, **AUTO)

    [schedule] = live_schedules(standin)
    assert schedule["postAccountId"] == "pa_facebook_1" and schedule["subAccountId"] == "sub_page_1"


def test_an_x_post_is_booked_against_the_months_credits(stack: Stack, standin) -> None:
    before = standin.credits_used()
    resource, _ = concluded(stack, standin, {"opus-publish": "TWITTER", "opus-publish-at": _iso(_at(5))}, **AUTO)

    project_credits = record(stack, resource).credits
    book = services(stack, **AUTO).credit_ledger.read()
    assert standin.credits_used() - before == project_credits + 1
    assert book.created == project_credits + 1 and sorted(c for _, c in book.spent) == [1, project_credits]


def test_a_video_without_clips_gets_no_plan(stack: Stack, standin) -> None:
    standin.configure(clipsPerProject=0)
    concluded(stack, standin, youtube_twice(_at(20)), **AUTO)

    assert stack.storage.bucket(stack.output_bucket).get_blob("talk.mp4/publish.json") is None
    assert publishing.STATUS_KEY not in live_metadata(stack, "talk.mp4")
    assert standin.social()["schedules"] == []


# -- required: nothing until --approve --------------------------------------------------------


def test_under_required_approval_nothing_is_posted_until_approved(stack: Stack, standin, ticks) -> None:
    at = _at(20)
    concluded(stack, standin, youtube_twice(at))

    assert standin.social()["schedules"] == [] and standin.social()["posts"] == []
    assert plan(stack)["approved"] is False and len(plan(stack)["posts"]) == 2
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.AWAITING_APPROVAL
    page = stack.storage.bucket(stack.output_bucket).blob("talk.mp4/index.html").download_as_text()
    assert page.count('class="post" data-state="planned"') == 2
    publish_approved(services(stack))  # a scheduled sweep carries out nothing unapproved
    assert standin.social()["schedules"] == []

    assert run_cli(stack, ticks, "--approve") == 0
    assert deliver_ticks(stack, ticks) == 1

    assert len(live_schedules(standin)) == 2
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.SCHEDULED


def test_approving_again_a_redelivered_conclusion_or_a_webhook_add_nothing(stack: Stack, standin, ticks) -> None:
    resource, _ = concluded(stack, standin, youtube_twice(_at(20)))
    assert run_cli(stack, ticks, "--approve") == 0
    deliver_ticks(stack, ticks)
    made = live_schedules(standin)
    assert len(made) == 2

    assert run_cli(stack, ticks, "--approve") == 0
    deliver_ticks(stack, ticks)
    assert conclude(stack, resource, **AUTO) == states.CLIPS_READY
    url = registered_url(HOOK["OPUS_WEBHOOK_URL"], HOOK["OPUS_WEBHOOK_TOKEN"], storage_object(resource).key)
    assert handle_webhook(dict(parse_qsl(urlsplit(url).query)), {}, lambda: b"{}", services(stack, **HOOK)) == 200
    publish_approved(services(stack, **AUTO))

    assert standin.social()["schedules"] == made and standin.social()["posts"] == []


def test_concurrent_passes_send_each_pair_once(stack: Stack, standin, ticks) -> None:
    concluded(stack, standin, youtube_twice(_at(20)))
    assert run_cli(stack, ticks, "--approve") == 0
    stack.pull(subscription=ticks[1])

    deliver_concurrently(lambda: publish_approved(services(stack)), times=3)

    assert len(standin.social()["schedules"]) == 2
    assert {p["state"] for p in plan(stack)["posts"]} == {publishing.SCHEDULED}


def test_approving_a_video_without_a_plan_says_so(stack: Stack, standin, ticks, capsys) -> None:
    assert run_cli(stack, ticks, "--approve") == 1
    assert "has no publishing plan" in capsys.readouterr().err
    assert stack.pull(subscription=ticks[1]) == []


def test_the_upload_flags_set_the_publishing_metadata(stack: Stack, tmp_path) -> None:
    path = tmp_path / "talk.mp4"
    path.write_bytes(video(300_000))
    destination = f"gs://{stack.source_bucket}/talk.mp4"

    assert cli.main(["upload", str(path), destination, "--publish", "youtube", "--publish-count", "2"]) == 0

    metadata = live_metadata(stack, "talk.mp4")
    assert metadata["opus-publish"] == "youtube" and metadata["opus-publish-count"] == "2"


def test_a_bad_upload_flag_is_refused_before_the_upload(stack: Stack, tmp_path, capsys) -> None:
    path = tmp_path / "talk.mp4"
    path.write_bytes(video(300_000))

    flags = ["--publish", "youtube", "--publish-every", "soon"]
    assert cli.main(["upload", str(path), f"gs://{stack.source_bucket}/talk.mp4", *flags]) == 1

    assert "opus-publish-every='soon' is not a spacing" in capsys.readouterr().err
    assert stack.storage.bucket(stack.source_bucket).get_blob("talk.mp4") is None


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_deletes_every_schedule_not_yet_due(stack: Stack, standin, ticks) -> None:
    concluded(stack, standin, youtube_twice(_at(20)), **AUTO)
    assert len(live_schedules(standin)) == 2

    assert run_cli(stack, ticks, "--cancel") == 0
    deliver_ticks(stack, ticks)

    assert live_schedules(standin) == [] and len(standin.social()["schedules"]) == 2
    assert {p["state"] for p in plan(stack)["posts"]} == {publishing.CANCELLED}
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.CANCELLED


def test_a_cancelled_plan_is_never_carried_out(stack: Stack, standin, ticks) -> None:
    concluded(stack, standin, youtube_twice(_at(20)))
    assert run_cli(stack, ticks, "--cancel") == 0
    deliver_ticks(stack, ticks)

    assert run_cli(stack, ticks, "--approve") == 1
    publish_approved(services(stack))
    assert standin.social()["schedules"] == []


# -- an answer not seen -----------------------------------------------------------------------


@pytest.mark.parametrize("lost", [{"kind": "status", "status": 503}, {"kind": "drop"}])
def test_a_schedule_whose_answer_was_lost_is_never_sent_again(stack: Stack, standin, lost: dict) -> None:
    standin.inject({"endpoint": "publish-schedules", **lost})
    concluded(stack, standin, youtube_twice(_at(20)), **AUTO)

    assert len(standin.social()["schedules"]) == 2  # the first was made although its answer was a 503
    states_now = sorted(p["state"] for p in plan(stack)["posts"])
    assert states_now == [publishing.FAILED, publishing.SCHEDULED]
    for _ in range(2):
        publish_approved(services(stack, **AUTO))
    assert len(standin.social()["schedules"]) == 2
    metadata = live_metadata(stack, "talk.mp4")
    assert metadata[publishing.STATUS_KEY] == publishing.FAILED and "OpusClip" in metadata["opus-error"]


def test_a_post_left_sending_by_a_crash_is_failed_not_sent(stack: Stack, standin, ticks) -> None:
    concluded(stack, standin, youtube_twice(_at(20)))
    blob = stack.storage.bucket(stack.output_bucket).blob("talk.mp4/publish.json")
    doc = json.loads(blob.download_as_bytes())
    doc["posts"][0].update(state=publishing.SENDING, sendingSince=time.time() - 3600, sender="crashed")
    blob.upload_from_string(json.dumps(doc))
    assert run_cli(stack, ticks, "--approve") == 0
    deliver_ticks(stack, ticks)

    assert len(standin.social()["schedules"]) == 1
    first = plan(stack)["posts"][0]
    assert first["state"] == publishing.FAILED and first["error"] == publishing.NOT_SEEN


def test_a_post_refused_for_a_second_is_sent_again_at_once(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "publish-schedules", "kind": "status", "status": 429, "headers": {"Retry-After": "1"}})
    concluded(stack, standin, youtube_twice(_at(20)), **AUTO)

    assert len(standin.social()["schedules"]) == 2


def test_a_post_refused_for_a_minute_stays_planned_for_the_next_pass(stack: Stack, standin) -> None:
    standin.inject({"endpoint": "publish-schedules", "kind": "status", "status": 429, "headers": {"Retry-After": "60"}})
    concluded(stack, standin, youtube_twice(_at(20)), **AUTO)
    assert len(standin.social()["schedules"]) == 1
    assert sorted(p["state"] for p in plan(stack)["posts"]) == [publishing.PLANNED, publishing.SCHEDULED]

    publish_approved(services(stack))

    assert len(standin.social()["schedules"]) == 2
    assert live_metadata(stack, "talk.mp4")[publishing.STATUS_KEY] == publishing.SCHEDULED


# -- checked before the upload ----------------------------------------------------------------


@pytest.mark.parametrize("accounts", ["LINKEDIN", "pa_nobody"])
def test_an_unknown_account_is_bad_metadata_before_any_byte(stack: Stack, standin, accounts: str) -> None:
    resource = stack.put("talk.mp4", video(300_000), metadata={"opus-publish": accounts})

    assert ingest(stack, resource) == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == "bad-metadata" and repr(accounts) in rec.error
    assert standin.stats()["uploads"] == {}
    assert live_metadata(stack, "talk.mp4")["opus-error"] == rec.error


def test_an_ambiguous_platform_is_bad_metadata_naming_it(stack: Stack, standin) -> None:
    two = [
        {"postAccountId": f"pa_yt_{n}", "platform": "YOUTUBE", "extUserId": str(n), "extUserName": f"c{n}"}
        for n in (1, 2)
    ]
    standin.social_accounts(two)
    resource = stack.put("talk.mp4", video(300_000), metadata={"opus-publish": "YouTube"})

    assert ingest(stack, resource) == states.FAILED

    rec = record(stack, resource)
    assert rec.reason == "bad-metadata" and "'YouTube'" in rec.error and "pa_yt_1, pa_yt_2" in rec.error
    assert standin.stats()["uploads"] == {}


def test_a_bad_publishing_value_is_refused_without_a_call(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", video(300_000), metadata={"opus-publish": "YOUTUBE", "opus-publish-every": "soon"})

    assert ingest(stack, resource) == states.FAILED

    assert record(stack, resource).reason == "bad-metadata"
    assert standin.calls("social-accounts") == 0 and standin.stats()["uploads"] == {}
