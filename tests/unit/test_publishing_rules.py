"""The pure rules of publishing (``domain/publishing.py``): the choice, the accounts, the plan, its states."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from opus_pipeline import config
from opus_pipeline.domain import publishing
from opus_pipeline.domain.clips_page import POSTS_KEY, render_page
from opus_pipeline.domain.messages import SWEEP_ALL, SWEEP_PUBLISH, SweepTick
from opus_pipeline.domain.preferences import parse_metadata
from opus_pipeline.errors import ConfigError, PreferenceError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
YOUTUBE = publishing.Account("pa_yt", "YOUTUBE", "channel")
PAGE = publishing.Account("pa_fb", "FACEBOOK_PAGE", "page", "sub_1")
SOURCE = {"bucket": "src", "name": "talk.mp4", "generation": "7"}


def clips(count: int = 3) -> list[dict]:
    return [
        {"id": f"P1.CU{n}", "title": f"Clip {n}", "description": f"About {n}", "hashtags": "#a #b", "rank": n}
        for n in range(1, count + 1)
    ]


def chosen(**overrides) -> dict:
    base = publishing.PublishChoice(accounts=("YOUTUBE",))
    return {**publishing.choice_to_json(base, [YOUTUBE]), **overrides}


def a_plan(**overrides) -> dict:
    return publishing.build_plan(SOURCE, "P1", clips(), chosen(**overrides), "required", NOW)


# -- the choice -----------------------------------------------------------------------------------


def test_a_video_without_opus_publish_publishes_nothing() -> None:
    assert publishing.choice({"opus-genre": "Podcast"}) is None


def test_the_defaults_are_one_clip_now_every_24h_public() -> None:
    assert publishing.choice({"opus-publish": "YOUTUBE"}) == publishing.PublishChoice(("YOUTUBE",), 1, None, 86400)


def test_every_key_is_read_any_case() -> None:
    found = publishing.choice(
        {
            "Opus-Publish": "youtube, pa_1",
            "opus-publish-count": "2",
            "opus-publish-at": "2026-12-08T16:00:00Z",
            "opus-publish-every": "90m",
            "opus-publish-privacy": "Unlisted",
        }
    )
    assert found == publishing.PublishChoice(
        ("youtube", "pa_1"), 2, datetime(2026, 12, 8, 16, tzinfo=UTC), 5400, "unlisted"
    )


def test_the_video_overrides_the_deploy_and_none_opts_out() -> None:
    defaults = {"opus-publish": "TIKTOK_BUSINESS", "opus-publish-count": "3"}
    assert publishing.choice({}, defaults).count == 3
    assert publishing.choice({"opus-publish-count": "1"}, defaults).count == 1
    assert publishing.choice({"opus-publish": "none"}, defaults) is None


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("opus-publish-count", "0", "from 1 to 20"),
        ("opus-publish-count", "two", "from 1 to 20"),
        ("opus-publish-at", "tomorrow", "ISO 8601"),
        ("opus-publish-at", "2026-12-08T16:00:00", "UTC"),
        ("opus-publish-at", "2026-12-08T16:00:00+02:00", "UTC"),
        ("opus-publish-every", "soon", "24h, 90m"),
        ("opus-publish-every", "0h", "24h, 90m"),
        ("opus-publish-privacy", "friends", "public, private, unlisted"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(key: str, value: str, said: str) -> None:
    with pytest.raises(PreferenceError, match=said) as refused:
        publishing.choice({"opus-publish": "YOUTUBE", key: value})
    assert key in str(refused.value) and refused.value.reason == "bad-metadata"


def test_shaping_keys_without_accounts_are_refused() -> None:
    with pytest.raises(PreferenceError, match="no effect without opus-publish"):
        publishing.choice({"opus-publish-count": "2"})


def test_the_publishing_keys_are_no_unknown_project_preferences() -> None:
    metadata = {"opus-publish": "YOUTUBE", "opus-publish-count": "2", "opus-publish-status": "scheduled"}
    assert parse_metadata(metadata).to_message() == {}


def test_the_deploy_defaults_and_approval_are_checked_at_start_up() -> None:
    env = {
        "OPUS_API_KEY": "k",
        "STATE_BUCKET": "s",
        "SOURCE_BUCKET": "src",
        "OUTPUT_BUCKET": "o",
        "CLIP_REQUESTS_TOPIC": "projects/p/topics/a",
        "CLIP_RESULTS_TOPIC": "projects/p/topics/b",
        "INGEST_REQUESTS_TOPIC": "projects/p/topics/c",
    }
    settings = config.load({**env, "OPUS_DEFAULT_PUBLISH": "YOUTUBE", "OPUS_PUBLISH_APPROVAL": "AUTO"})
    assert settings.publish_approval == "auto" and settings.publish_defaults == {"opus-publish": "YOUTUBE"}
    assert config.load(env).publish_approval == "required"
    with pytest.raises(ConfigError, match="OPUS_PUBLISH_APPROVAL"):
        config.load({**env, "OPUS_PUBLISH_APPROVAL": "yes"})
    with pytest.raises(ConfigError, match="OPUS_DEFAULT_PUBLISH_EVERY"):
        config.load({**env, "OPUS_DEFAULT_PUBLISH": "YOUTUBE", "OPUS_DEFAULT_PUBLISH_EVERY": "often"})


# -- the accounts ---------------------------------------------------------------------------------


def test_an_account_is_named_by_its_id_or_its_platform_in_any_case() -> None:
    choice = publishing.PublishChoice(("youtube", "pa_fb"))
    assert publishing.resolve(choice, [YOUTUBE, PAGE]) == [YOUTUBE, PAGE]


def test_an_unknown_account_is_bad_metadata_naming_it() -> None:
    with pytest.raises(PreferenceError, match="'LINKEDIN' is not a connected") as refused:
        publishing.resolve(publishing.PublishChoice(("LINKEDIN",)), [YOUTUBE])
    assert refused.value.reason == "bad-metadata"


def test_a_platform_with_two_accounts_is_ambiguous() -> None:
    second = publishing.Account("pa_yt2", "YOUTUBE")
    with pytest.raises(PreferenceError, match=r"matches 2 connected accounts \(pa_yt, pa_yt2\)"):
        publishing.resolve(publishing.PublishChoice(("YOUTUBE",)), [YOUTUBE, second])


def test_the_account_list_is_not_trusted() -> None:
    with pytest.raises(ValueError):
        publishing.accounts_listed({"data": [{"postAccountId": "a/../b", "platform": "YOUTUBE"}]})
    with pytest.raises(ValueError):
        publishing.accounts_listed({"data": [{"postAccountId": "a", "platform": "YOUTUBE", "subAccountId": ""}]})
    listed = publishing.accounts_listed({"data": [{"postAccountId": "a", "platform": "youtube", "extUserName": "n"}]})
    assert listed == [publishing.Account("a", "YOUTUBE", "n")]


# -- the plan -------------------------------------------------------------------------------------


def test_the_best_clips_take_the_times_in_turn() -> None:
    plan = a_plan(count=2, at="2026-12-08T16:00:00.000Z", everySeconds=5400)
    assert [(p["clipId"], p["publishAt"]) for p in plan["posts"]] == [
        ("CU1", "2026-12-08T16:00:00.000Z"),
        ("CU2", "2026-12-08T17:30:00.000Z"),
    ]


def test_now_is_the_first_time_when_none_was_asked() -> None:
    assert a_plan()["posts"][0]["publishAt"] == "2026-12-07T12:00:00.000Z"


def test_every_clip_goes_to_every_account_once() -> None:
    two = {**chosen(count=2), "accounts": [YOUTUBE.to_json(), PAGE.to_json()]}
    plan = publishing.build_plan(SOURCE, "P1", clips(), two, "auto", NOW)
    assert len({publishing.pair(p) for p in plan["posts"]}) == 4 and plan["approved"] is True


def test_a_post_carries_the_clips_title_and_its_description_with_hashtags() -> None:
    post = a_plan(privacy="private")["posts"][0]
    assert post["title"] == "Clip 1" and post["description"] == "About 1\n\n#a #b" and post["privacy"] == "private"


def test_the_bare_clip_id_is_the_part_after_the_project() -> None:
    assert publishing.bare_clip_id({"id": "P1.CU9"}, "P1") == "CU9"
    assert publishing.bare_clip_id({"id": "P1.CU9", "curationId": "CU9"}, "P1") == "CU9"
    assert publishing.bare_clip_id({"id": "P2.CU9"}, "P1") is None


def test_the_body_omits_a_sub_account_the_account_lacks() -> None:
    post = a_plan()["posts"][0]
    body = publishing.request_body("P1", post)
    assert body == {
        "projectId": "P1",
        "clipId": "CU1",
        "postAccountId": "pa_yt",
        "postDetail": {
            "title": "Clip 1",
            "custom": {"description": "About 1\n\n#a #b", "privacy": "public"},
            "mediaType": "video",
        },
    }
    assert publishing.request_body("P1", {**post, "subAccountId": "sub_1"})["subAccountId"] == "sub_1"


def test_a_time_past_or_about_to_pass_is_posted_now() -> None:
    post = {"publishAt": publishing.iso(NOW + timedelta(seconds=60))}
    assert publishing.posts_now(post, NOW)
    assert not publishing.posts_now({"publishAt": publishing.iso(NOW + timedelta(hours=1))}, NOW)


# -- its states -----------------------------------------------------------------------------------


def test_nothing_is_due_before_approval_or_after_cancellation() -> None:
    plan = a_plan()
    assert publishing.due(plan) == [] and publishing.status(plan) == publishing.AWAITING_APPROVAL
    plan["approved"] = True
    assert publishing.due(plan) == ["CU1@pa_yt"]
    plan["cancelled"] = True
    assert publishing.due(plan) == [] and publishing.status(plan) == publishing.CANCELLED


def test_a_sending_entry_is_failed_after_its_grace_never_sent_again() -> None:
    plan = a_plan(count=2)
    plan["approved"] = True
    plan["posts"][0].update(state=publishing.SENDING, sendingSince=1000.0)
    assert not publishing.reconcile(plan, 1000.0 + publishing.SENDING_GRACE_SECONDS - 1)
    assert publishing.reconcile(plan, 1000.0 + publishing.SENDING_GRACE_SECONDS + 1)
    assert plan["posts"][0]["state"] == publishing.FAILED and plan["posts"][0]["error"] == publishing.NOT_SEEN
    assert publishing.due(plan) == ["CU2@pa_yt"]


def test_the_status_waits_for_every_entry_then_says_scheduled_published_or_failed() -> None:
    plan = a_plan(count=2)
    plan["approved"] = True
    first, second = plan["posts"]
    first.update(state=publishing.PUBLISHED, postId="p1")
    assert publishing.status(plan) is None
    second.update(state=publishing.PUBLISHED, postId="p2")
    assert publishing.status(plan) == publishing.PUBLISHED
    second.update(state=publishing.SCHEDULED, scheduleId="s2")
    assert publishing.status(plan) == publishing.SCHEDULED
    second.update(state=publishing.FAILED, error="refused")
    assert publishing.status(plan) == publishing.FAILED and publishing.errors(plan) == "YOUTUBE CU2: refused"


def test_only_schedules_not_yet_due_are_cancellable() -> None:
    plan = a_plan(count=2, at=publishing.iso(NOW - timedelta(hours=1)), everySeconds=7200)
    for n, post in enumerate(plan["posts"]):
        post.update(state=publishing.SCHEDULED, scheduleId=f"s{n}")
    assert [p["scheduleId"] for p in publishing.cancellable(plan, NOW)] == ["s1"]


def test_the_manifest_lists_each_clips_made_posts() -> None:
    plan = a_plan(count=2)
    plan["posts"][0].update(state=publishing.SCHEDULED, scheduleId="s1")
    manifest = {"clips": [{"id": "P1.CU1"}, {"id": "P1.CU2"}]}
    rows = publishing.with_posts(manifest, plan)["clips"]
    assert rows[0]["published"] == [
        {"postAccountId": "pa_yt", "platform": "YOUTUBE", "scheduleId": "s1", "publishAt": "2026-12-07T12:00:00.000Z"}
    ]
    assert "published" not in rows[1]


def test_the_published_message_names_the_status_and_the_posts() -> None:
    plan = a_plan()
    plan["posts"][0].update(state=publishing.PUBLISHED, postId="p1")
    message = publishing.PublishedResult(plan, publishing.PUBLISHED, "gs://o/talk.mp4/publish.json")
    body = json.loads(message.encode())
    assert body["status"] == "published" and body["posts"][0]["postId"] == "p1"
    assert message.attributes()["status"] == "published" and message.attributes()["generation"] == "7"


def test_the_page_shows_a_clips_posts_escaped() -> None:
    doc = {"clips": [{"id": "P1.CU1", POSTS_KEY: [{"platform": "YOUTUBE", "account": "<b>", "state": "planned"}]}]}
    page = render_page(doc)
    assert 'class="post" data-state="planned"' in page and "&lt;b&gt;" in page and "<b>" not in page


def test_a_failed_post_leaves_the_plan_open_until_the_others_are_sent() -> None:
    plan = a_plan(count=2)
    plan["approved"] = True
    plan["posts"][0].update(state=publishing.FAILED, error="refused")
    assert publishing.status(plan) is None and publishing.due(plan) == ["CU2@pa_yt"]


def test_a_tick_scoped_publish_asks_only_for_the_publishing_pass() -> None:
    tick = SweepTick("approved", scope=SWEEP_PUBLISH)
    assert SweepTick.scope_of(tick.attributes()) == SWEEP_PUBLISH
    assert SweepTick.scope_of({"scope": "everything"}) == SWEEP_ALL
