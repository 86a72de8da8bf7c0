"""Each preference is declared once in ``PREFERENCES``; every place that handles preferences follows it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from opus_local.clip_schema import problems as standin_problems
from opus_pipeline import cli, config
from opus_pipeline.domain.preferences import (
    PREFERENCES,
    STATUS_KEYS,
    Preference,
    Preferences,
    built_in,
    parse_metadata,
    to_metadata,
)
from opus_pipeline.domain.project_request import build_command, check_command

from conftest import REQUIRED_ENV

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CONFIGURATION = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


@pytest.fixture(params=PREFERENCES, ids=lambda pref: pref.suffix)
def pref(request: pytest.FixtureRequest) -> Preference:
    return request.param


@pytest.fixture
def prefs(pref: Preference) -> Preferences:
    """The declared example, set as the object's metadata."""
    prefs = parse_metadata({pref.key: pref.example})
    assert [p for p, _ in prefs.set_items()] == [pref]
    return prefs


def test_metadata_is_written_back_as_the_same_key(pref: Preference, prefs: Preferences) -> None:
    assert list(to_metadata(prefs)) == [pref.key]
    assert parse_metadata(to_metadata(prefs)) == prefs


def test_the_message_carries_it_under_opusclips_field_name(pref: Preference, prefs: Preferences) -> None:
    message = prefs.to_message()
    assert list(message) == [pref.field]
    assert Preferences.from_message(message) == prefs


@pytest.mark.parametrize("pref", [p for p in PREFERENCES if p.sent], ids=lambda pref: pref.suffix)
def test_the_request_body_has_it_in_its_declared_place(pref: Preference, prefs: Preferences) -> None:
    """The body differs from the one without it by exactly this field, at the end of its path."""
    always = built_in("talk.mp4")
    body = build_command("up_1", prefs.over(always))
    expected = copy.deepcopy(build_command("up_1", always))
    place = expected
    for name in pref.path:
        place = place.setdefault(name, {})
    place[pref.field] = prefs.to_message()[pref.field]
    assert body == expected
    check_command(body)
    assert standin_problems(body) == []  # OpusClip's own components (and its client's fields) know it too


@pytest.mark.parametrize("pref", [p for p in PREFERENCES if not p.sent], ids=lambda pref: pref.suffix)
def test_what_the_pipeline_reads_itself_is_never_sent(pref: Preference, prefs: Preferences) -> None:
    always = built_in("talk.mp4")
    assert build_command("up_1", prefs.over(always)) == build_command("up_1", always)


def test_places_nest_in_the_request_body() -> None:
    prefs = parse_metadata({"opus-remove-filler-words": "true", "opus-aspect-ratio": "square"})
    assert build_command("up_1", prefs)["renderPref"] == {
        "layoutAspectRatio": "square",
        "quickstartConfig": {"enableRemoveFillerWords": True},
    }


@pytest.mark.parametrize("pref", [p for p in PREFERENCES if p.deploy_default], ids=lambda pref: pref.suffix)
def test_its_default_variable_uses_the_metadata_syntax(pref: Preference, prefs: Preferences) -> None:
    assert pref.env_var in config.ENV_VARS
    assert config.load({**REQUIRED_ENV, pref.env_var: pref.example}).default_preferences == prefs


def test_its_cli_flag_sets_it(pref: Preference, prefs: Preferences) -> None:
    args = cli.parser().parse_args(["upload", "talk.mp4", "gs://videos/", pref.flag, pref.example])
    assert cli.preferences_from_args(args) == prefs


def test_the_readme_documents_its_key_and_the_configuration_page_its_variable(pref: Preference) -> None:
    assert f"`{pref.key}`" in README and (pref.env_var or "") in CONFIGURATION


def test_status_keys_are_never_taken_for_preferences() -> None:
    assert not STATUS_KEYS & {pref.key for pref in PREFERENCES}
    assert parse_metadata(dict.fromkeys(STATUS_KEYS, "x")) == Preferences()


def test_a_bad_flag_value_is_refused_naming_the_flag() -> None:
    args = cli.parser().parse_args(["upload", "talk.mp4", "gs://videos/", "--skip-curate", "maybe"])
    with pytest.raises(cli.PermanentError, match="--skip-curate='maybe'"):
        cli.preferences_from_args(args)
