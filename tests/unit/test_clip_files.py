"""What the manifest says of a clip's files: which one is copied, at what quality, where its
captions go, its time ranges in seconds; and the settings: the organisation, the deploy-wide selection."""

from __future__ import annotations

import pytest

from opus_pipeline import config
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.manifest import caption_object_name, copy_source, manifest
from opus_pipeline.errors import ConfigError

from conftest import REQUIRED_ENV

SOURCE = StorageObject(bucket="videos", name="talk.mp4", generation=1, size=10)
CLIP = {"id": "P1.CU1", "curationId": "CU1", "projectId": "P1", "durationMs": 19478, "timeRanges": [[192170, 211630]]}


def test_the_hd_file_is_copied_when_opusclip_gives_one() -> None:
    assert copy_source({"uriForExport": "https://h/ehd.mp4", "uriForPreview": "https://h/esd.mp4"}) == (
        "https://h/ehd.mp4",
        "hd",
    )


def test_else_the_preview_is() -> None:
    assert copy_source({"uriForExport": "", "uriForPreview": "https://h/esd.mp4"}) == ("https://h/esd.mp4", "preview")


def test_a_clip_with_neither_has_nothing_to_copy() -> None:
    assert copy_source({"uriForExport": None, "uriForPreview": 5}) is None


def test_caption_files_lie_beside_the_clip() -> None:
    assert caption_object_name(SOURCE, CLIP, 0, "srt") == "talk.mp4/clips/CU1.srt"
    assert caption_object_name(SOURCE, CLIP, 0, "vtt") == "talk.mp4/clips/CU1.vtt"


def test_the_manifest_keeps_time_ranges_in_seconds_and_the_clip_text() -> None:
    doc = manifest(SOURCE, "U1", "P1", "COMPLETE", "now", [{**CLIP, "text": "hello"}], {})
    [entry] = doc["clips"]
    assert entry["timeRanges"] == [[192.17, 211.63]] and entry["text"] == "hello"


def test_transcript_availability_is_told_only_when_it_was_asked() -> None:
    assert "transcriptAvailable" not in manifest(SOURCE, "U1", "P1", "COMPLETE", "now", [], {})
    doc = manifest(SOURCE, "U1", "P1", "COMPLETE", "now", [], {}, transcript_available=False)
    assert doc["transcriptAvailable"] is False and list(doc)[-1] == "clips"


def test_the_deploy_wide_selection_variables_use_the_metadata_syntax() -> None:
    settings = config.load({**REQUIRED_ENV, "OPUS_DEFAULT_COPY_TOP": " 3 ", "OPUS_DEFAULT_MIN_SCORE": "0"})
    assert (settings.default_preferences.copyTop, settings.default_preferences.minScore) == (3, 0)
    with pytest.raises(ConfigError, match="OPUS_DEFAULT_MIN_SCORE"):
        config.load({**REQUIRED_ENV, "OPUS_DEFAULT_MIN_SCORE": "200"})


def test_the_organisation_is_read_from_opus_org_id() -> None:
    assert config.load(REQUIRED_ENV).opus_org_id is None
    assert config.load({**REQUIRED_ENV, "OPUS_ORG_ID": " org_Example00000001 "}).opus_org_id == "org_Example00000001"


@pytest.mark.parametrize("bad", ["org one", "org\u00e9", "org\x07"])
def test_an_organisation_id_that_cannot_be_a_header_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="OPUS_ORG_ID"):
        config.load({**REQUIRED_ENV, "OPUS_ORG_ID": bad})
