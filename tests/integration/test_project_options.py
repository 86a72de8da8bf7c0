"""The project options OpusClip's own client sends, through ingest, project creation and the stand-in:
each reaches the request body from the object's metadata, from its ``OPUS_DEFAULT_*`` variable and
from its ``opus-pipeline upload`` flag; combinations OpusClip would ignore and brand templates the
workspace does not have are refused before a byte is uploaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from opus_local.videos import video_bytes
from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.opus.client import OpusClient
from opus_pipeline.usecases.ingest import handle_finalized

from conftest import CHUNK, Stack, object_resource
from support import create, ingest, record, services

VIDEO = video_bytes(CHUNK + 1)


@dataclass(frozen=True)
class Option:
    key: str
    text: str  # as the user writes it
    path: tuple[str, ...]  # where it lands in the request body
    sent: object  # what OpusClip receives
    companions: tuple[tuple[str, str], ...] = ()  # what it needs beside it

    def given(self) -> dict[str, str]:
        """The option and its companions, by metadata key."""
        return {self.key: self.text, **dict(self.companions)}


def env_var(key: str) -> str:
    """``opus-aspect-ratio`` → ``OPUS_DEFAULT_ASPECT_RATIO``, as the README says."""
    return "OPUS_DEFAULT_" + key.removeprefix("opus-").upper().replace("-", "_")


def flag(key: str) -> str:
    """``opus-aspect-ratio`` → ``--aspect-ratio``."""
    return "--" + key.removeprefix("opus-")


OPTIONS = [
    Option("opus-model", "ClipAnything", ("curationPref", "model"), "ClipAnything"),
    Option(
        "opus-prompt",
        "the moments where the host laughs",
        ("curationPref", "customPrompt"),
        "the moments where the host laughs",
        (("opus-model", "ClipAnything"),),
    ),
    Option("opus-aspect-ratio", "square", ("renderPref", "layoutAspectRatio"), "square"),
    Option("opus-remove-filler-words", "true", ("renderPref", "quickstartConfig", "enableRemoveFillerWords"), True),
    Option("opus-auto-hook", "true", ("curationPref", "enableAutoHook"), True),
    Option("opus-captions", "false", ("renderPref", "enableCaption"), False),
    Option("opus-title", "Episode 12: the launch", ("uploadedVideoAttr", "title"), "Episode 12: the launch"),
]
WITH_DEFAULTS = [option for option in OPTIONS if option.key != "opus-title"]  # a title is per video


def at(body: dict, path: tuple[str, ...]) -> object:
    for name in path:
        body = body[name]
    return body


def the_request(stack: Stack, standin, resource: dict, **env: str) -> dict:
    """Ingest the object, create its project; the body the stand-in received."""
    assert ingest(stack, resource, **env) == states.QUEUED
    [received] = stack.pull()
    assert create(stack, ClipRequest.decode(received.message.data), **env) == states.PROJECT_CREATED
    [project] = standin.stats()["projects"].values()
    return project["request"]


def refused(stack: Stack, standin, resource: dict, reason: str, **env: str) -> str:
    """Ingest fails the video for ``reason`` before asking OpusClip for an upload link; the error."""
    assert ingest(stack, resource, **env) == states.FAILED
    rec = record(stack, resource)
    assert rec.reason == reason
    assert standin.calls("upload-links") == 0 and standin.stats()["uploads"] == {}
    return rec.error or ""


# -- each option, three ways in ---------------------------------------------------------------


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.key)
def test_an_option_in_the_metadata_reaches_the_request(stack: Stack, standin, option: Option) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata=option.given())
    assert at(the_request(stack, standin, resource), option.path) == option.sent


@pytest.mark.parametrize("option", WITH_DEFAULTS, ids=lambda option: option.key)
def test_an_option_set_deploy_wide_reaches_the_request(stack: Stack, standin, option: Option) -> None:
    env = {env_var(key): text for key, text in option.given().items()}
    resource = stack.put("talk.mp4", VIDEO)
    assert at(the_request(stack, standin, resource, **env), option.path) == option.sent


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.key)
def test_an_option_given_to_the_upload_command_reaches_the_request(
    stack: Stack, standin, option: Option, tmp_path: Path
) -> None:
    video = tmp_path / "talk.mp4"
    video.write_bytes(VIDEO)
    flags = [part for key, text in option.given().items() for part in (flag(key), text)]
    args = cli.parser().parse_args(["upload", str(video), f"gs://{stack.source_bucket}/talk.mp4", *flags])
    assert cli.upload(args, stack.storage) == 0
    resource = object_resource(stack.storage.bucket(stack.source_bucket).get_blob("talk.mp4"))
    assert at(the_request(stack, standin, resource), option.path) == option.sent


def test_the_title_defaults_to_the_file_name_without_folders_and_extension(stack: Stack, standin) -> None:
    resource = stack.put("shows/2026/ep12.final.mp4", VIDEO)
    assert the_request(stack, standin, resource)["uploadedVideoAttr"] == {"title": "ep12.final"}


def test_a_per_video_option_wins_over_the_deploy_wide_one(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-aspect-ratio": "landscape"})
    request = the_request(stack, standin, resource, OPUS_DEFAULT_ASPECT_RATIO="square")
    assert request["renderPref"] == {"layoutAspectRatio": "landscape"}


def test_up_to_n_seconds_clip_durations_reach_the_request(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-clip-durations": "0-30,0-60"})
    assert the_request(stack, standin, resource)["curationPref"]["clipDurations"] == [[0, 30], [0, 60]]


# -- combinations OpusClip would silently ignore -------------------------------------------------


def test_a_prompt_without_clip_anything_is_refused_before_any_byte(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-prompt": "the funny bits"})
    assert "ClipAnything" in refused(stack, standin, resource, "bad-metadata")


def test_a_prompt_with_clip_basic_is_refused(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-prompt": "the funny bits", "opus-model": "ClipBasic"})
    assert "opus-prompt" in refused(stack, standin, resource, "bad-metadata")


def test_topic_keywords_with_clip_anything_are_refused_before_any_byte(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-topic-keywords": "AI", "opus-model": "clipanything"})
    assert "ClipBasic" in refused(stack, standin, resource, "bad-metadata")


def test_a_combination_is_judged_with_the_deploy_wide_defaults(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-topic-keywords": "AI"})
    assert "opus-topic-keywords" in refused(stack, standin, resource, "bad-metadata", OPUS_DEFAULT_MODEL="ClipAnything")


def test_a_prompt_too_long_is_refused_before_any_byte(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-prompt": "x" * 1001, "opus-model": "ClipAnything"})
    assert "at most 1000" in refused(stack, standin, resource, "bad-metadata")


# -- brand templates ----------------------------------------------------------------------------


def test_a_brand_template_the_workspace_lacks_fails_before_any_byte(stack: Stack, standin) -> None:
    standin.configure(brandTemplates=["tpl_mine_1", "tpl_mine_2"])
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-brand-template-id": "tpl_someone_elses"})
    assert "tpl_someone_elses" in refused(stack, standin, resource, "unknown-brand-template")
    assert standin.calls("brand-templates") == 1


def test_a_deploy_wide_brand_template_is_checked_too(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO)
    refused(stack, standin, resource, "unknown-brand-template", OPUS_DEFAULT_BRAND_TEMPLATE_ID="tpl_gone")


def test_a_brand_template_of_the_workspace_is_sent(stack: Stack, standin) -> None:
    standin.configure(brandTemplates=["tpl_mine_1"])
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-brand-template-id": "tpl_mine_1"})
    assert the_request(stack, standin, resource)["brandTemplateId"] == "tpl_mine_1"


def test_a_preset_brand_template_is_not_looked_up(stack: Stack, standin) -> None:
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-brand-template-id": "preset-fancy-Karaoke"})
    assert the_request(stack, standin, resource)["brandTemplateId"] == "preset-fancy-Karaoke"
    assert standin.calls("brand-templates") == 0


def test_without_the_enterprise_list_the_template_is_used_unchecked_with_an_info_line(
    stack: Stack, standin, capsys
) -> None:
    standin.configure(brandTemplates=None)
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-brand-template-id": "tpl_mine_1"})
    capsys.readouterr()
    assert the_request(stack, standin, resource)["brandTemplateId"] == "tpl_mine_1"
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "brand_template_unchecked" in x]
    assert line["severity"] == "INFO" and "tpl_mine_1" in line["message"]
    assert standin.calls("brand-templates") == 1


def test_the_brand_template_list_is_read_once_per_instance_for_a_while(stack: Stack, standin) -> None:
    standin.configure(brandTemplates=["tpl_mine_1"])
    svc = services(stack)
    for name in ("one.mp4", "two.mp4"):
        resource = stack.put(name, VIDEO, metadata={"opus-brand-template-id": "tpl_mine_1"})
        assert handle_finalized(storage_object(resource), svc) == states.QUEUED
    assert standin.calls("brand-templates") == 1


class CountingBudget:
    """A request budget that grants every call and counts them."""

    def __init__(self) -> None:
        self.grants = 0

    def acquire(self, max_wait: float, kind: str | None = None, share: float = 1.0) -> None:
        self.grants += 1


def test_the_brand_template_list_counts_against_the_request_budget(stack: Stack, standin) -> None:
    standin.configure(brandTemplates=["tpl_mine_1"])
    svc = services(stack)
    budget = CountingBudget()
    svc.opus = OpusClient(svc.settings.opus_api_base_url, svc.settings.opus_api_key, limiter=budget)
    resource = stack.put("talk.mp4", VIDEO, metadata={"opus-brand-template-id": "tpl_mine_1"})
    assert handle_finalized(storage_object(resource), svc) == states.QUEUED
    assert standin.calls("brand-templates") == 1 and budget.grants == 2  # the list, then the upload link
