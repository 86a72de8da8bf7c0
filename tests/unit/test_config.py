"""Configuration is validated once, and a bad variable is named (pure logic)."""

from __future__ import annotations

import pytest

from opus_pipeline import config
from opus_pipeline.errors import ConfigError

from conftest import REQUIRED_ENV


def test_defaults() -> None:
    settings = config.load(REQUIRED_ENV)
    assert settings.opus_api_base_url == "https://api.opus.pro"
    assert settings.upload_url_hosts == ("storage.googleapis.com",)
    assert settings.upload_chunk_size == 16 * 1024 * 1024
    assert settings.max_video_bytes == 30_000_000_000  # OpusClip: 30 GB per upload
    assert settings.max_video_seconds == 36_000  # and 10 hours
    assert settings.upload_deadline_seconds < 540


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"OPUS_API_KEY": ""}, "OPUS_API_KEY"),
        ({"STATE_BUCKET": " "}, "STATE_BUCKET"),
        ({"SOURCE_BUCKET": ""}, "SOURCE_BUCKET"),
        ({"OPUS_WEBHOOK_REQUIRE_SIGNATURE": "yes"}, "OPUS_WEBHOOK_REQUIRE_SIGNATURE"),
        ({"CLIP_REQUESTS_TOPIC": "clip-requests"}, "CLIP_REQUESTS_TOPIC"),
        ({"UPLOAD_CHUNK_SIZE": "1000000"}, "UPLOAD_CHUNK_SIZE"),
        ({"UPLOAD_CHUNK_SIZE": "16MB"}, "UPLOAD_CHUNK_SIZE"),
        ({"MAX_VIDEO_BYTES": "-1"}, "MAX_VIDEO_BYTES"),
        ({"MAX_VIDEO_SECONDS": "0"}, "MAX_VIDEO_SECONDS"),
        ({"OPUS_MONTHLY_CREDIT_BUDGET": "900 credits"}, "OPUS_MONTHLY_CREDIT_BUDGET"),
        ({"INGEST_REQUESTS_TOPIC": ""}, "INGEST_REQUESTS_TOPIC"),
        ({"OPUS_API_BASE_URL": "api.opus.pro"}, "OPUS_API_BASE_URL"),
        ({"OPUS_UPLOAD_URL_HOSTS": "https://storage.googleapis.com/"}, "OPUS_UPLOAD_URL_HOSTS"),
        ({"OPUS_DEFAULT_GENRE": "Polka"}, "OPUS_DEFAULT_GENRE"),
        ({"OPUS_DEFAULT_CLIP_DURATIONS": "15-45"}, "OPUS_DEFAULT_CLIP_DURATIONS"),
    ],
)
def test_a_bad_variable_is_named(overrides: dict, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.load({**REQUIRED_ENV, **overrides})


def test_the_monthly_credit_budget_is_off_unless_set() -> None:
    assert config.load(REQUIRED_ENV).monthly_credit_budget is None
    assert config.load({**REQUIRED_ENV, "OPUS_MONTHLY_CREDIT_BUDGET": "600"}).monthly_credit_budget == 600


def test_preference_defaults_use_the_metadata_syntax() -> None:
    settings = config.load({**REQUIRED_ENV, "OPUS_DEFAULT_GENRE": "podcast", "OPUS_DEFAULT_SKIP_CURATE": "true"})
    assert settings.default_preferences.to_message() == {"genre": "Podcast", "skipCurate": True}


def test_the_key_is_not_in_the_settings_repr() -> None:
    assert "sk-abcdef" not in repr(config.load(REQUIRED_ENV))
