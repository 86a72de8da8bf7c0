"""The redaction rule, pure: no secret survives in the text of an error as it is made."""

from __future__ import annotations

import pytest

from opus_pipeline import logs
from opus_pipeline.errors import OpusApiError, PermanentError
from opus_pipeline.redaction import redact

from support import SIGNED, assert_no_secret


def test_a_registered_secret_is_masked_in_an_error_message() -> None:
    logs.register_secret("sk-registered-123456")
    assert str(PermanentError("key sk-registered-123456 refused")) == "key [REDACTED] refused"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"see {SIGNED} now", "see https://storage.googleapis.com/b/o.mp4?[query removed] now"),
        ("at https://user:pw@api.opus.pro/x", "at https://api.opus.pro/x"),
        ('"http://127.0.0.1:9/session?upload_id=abc#frag"', '"http://127.0.0.1:9/session?[query removed]"'),
        ("gs://bucket/what?.mp4 stays", "gs://bucket/what?.mp4 stays"),
    ],
)
def test_urls_lose_their_query_and_user_info(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_an_error_of_every_kind_is_redacted_as_it_is_made() -> None:
    error = OpusApiError(f"rejected: {SIGNED}", reason="opus-rejected")
    assert_no_secret(str(error))
