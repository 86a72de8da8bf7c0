"""Event parsing, upload-host policy, state decisions and protocol parsing (pure logic)."""

from __future__ import annotations

import pytest

from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject, skip_reason, storage_object
from opus_pipeline.domain.url_policy import check_url
from opus_pipeline.errors import PermanentError, RefusedHostError, TransientError
from opus_pipeline.opus.resumable import committed_bytes

GCS = ("storage.googleapis.com",)


def obj(name: str, content_type: str = "") -> StorageObject:
    return StorageObject(bucket="b", name=name, generation=1, size=1, content_type=content_type)


def test_event_data_parses_strings_to_numbers() -> None:
    parsed = storage_object({"bucket": "b", "name": "v.mp4", "generation": "17", "size": "42", "metadata": None})
    assert (parsed.generation, parsed.size, parsed.key) == (17, 42, "b/v.mp4#17")


def test_malformed_event_is_permanent() -> None:
    with pytest.raises(PermanentError, match="malformed"):
        storage_object({"bucket": "b"})


@pytest.mark.parametrize(
    ("name", "content_type", "prefix", "skipped"),
    [
        ("talk.mp4", "", "", False),
        ("talk.bin", "video/quicktime", "", False),
        ("TALK.MKV", "application/octet-stream", "", False),
        ("notes.txt", "text/plain", "", True),
        ("folder/", "", "", True),
        ("in/talk.mp4", "video/mp4", "in/", False),
        ("out/talk.mp4", "video/mp4", "in/", True),
    ],
)
def test_skip_rules(name: str, content_type: str, prefix: str, skipped: bool) -> None:
    assert (skip_reason(obj(name, content_type), prefix) is not None) == skipped


def test_non_videos_are_marked_but_placeholders_and_other_prefixes_are_not_touched() -> None:
    assert skip_reason(obj("notes.txt", "text/plain"), "").show
    assert not skip_reason(obj("folder/"), "").show
    assert not skip_reason(obj("out/talk.mp4", "video/mp4"), "in/").show


def test_objects_of_the_state_bucket_are_never_ingested_or_touched() -> None:
    skip = skip_reason(obj("videos/b/talk.mp4#1.json", "application/json"), "", state_bucket="b")
    assert skip is not None and not skip.show


@pytest.mark.parametrize(
    "url",
    [
        "https://storage.googleapis.com/ext.gcs.opus.pro/upload/org/google-upload",
        "https://STORAGE.googleapis.com:443/x",
    ],
)
def test_listed_https_hosts_are_allowed(url: str) -> None:
    check_url(url, GCS, "url")


@pytest.mark.parametrize(
    ("url", "allowed", "words"),
    [
        ("https://evil.example/x", GCS, "not in OPUS_UPLOAD_URL_HOSTS"),
        ("http://storage.googleapis.com/x", GCS, "only https"),
        ("https://storage.googleapis.com.evil.example/x", GCS, "not in"),
        ("http://10.0.0.5:8080/x", ("10.0.0.5:8080",), "only https"),
        ("http://127.0.0.1:9000/x", ("127.0.0.1:9001",), "not in"),
        ("ftp://storage.googleapis.com/x", GCS, "scheme"),
    ],
)
def test_other_hosts_and_plain_http_are_refused(url: str, allowed: tuple, words: str) -> None:
    with pytest.raises(RefusedHostError, match=words):
        check_url(url, allowed, "url")


def test_listed_loopback_may_use_plain_http() -> None:
    check_url("http://127.0.0.1:9000/upload/x", ("127.0.0.1:9000",), "url")
    check_url("http://localhost:9000/upload/x", ("localhost:9000",), "url")
    check_url("http://localhost/upload/x", ("localhost",), "url")


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@storage.googleapis.com/x",  # urllib3 connects to evil.example
        "https://evil.example\\storage.googleapis.com/x",
        "https://storage.googleapis.com\\@evil.example/x",
        "https://user:pw@storage.googleapis.com/x",
        "https://user@storage.googleapis.com/x",
        "https://@storage.googleapis.com/x",
        "https://storage.googleapis.com%2F@evil.example/x",
        "https://%73torage.googleapis.com/x",  # urllib3 decodes the host, urlsplit does not
        "https://storage.googleapis.com%00.evil.example/x",
        "https://storage.googleapis.com /x",
        "https://storage.googleapis.com\t/x",
        "https://storage.googleapis.com/x\r\nHost: evil.example",
        "https://stor\u0430ge.googleapis.com/x",  # a Cyrillic a
    ],
)
def test_urls_the_two_parsers_could_read_differently_are_refused(url: str) -> None:
    with pytest.raises(RefusedHostError):
        check_url(url, GCS, "url")


def test_a_host_listed_without_a_port_allows_only_the_default_port() -> None:
    with pytest.raises(RefusedHostError, match="8443"):
        check_url("https://storage.googleapis.com:8443/x", GCS, "url")
    with pytest.raises(RefusedHostError):
        check_url("http://localhost:9000/x", ("localhost",), "url")


def test_a_listed_port_is_allowed() -> None:
    check_url("https://storage.googleapis.com:8443/x", ("storage.googleapis.com:8443",), "url")


def test_ipv6_literals_match_only_their_bracketed_listing() -> None:
    check_url("http://[::1]:9000/x", ("[::1]:9000",), "url")
    check_url("https://[2001:db8::1]/x", ("[2001:db8::1]",), "url")
    with pytest.raises(RefusedHostError):
        check_url("http://[::1]:9001/x", ("[::1]:9000",), "url")
    with pytest.raises(RefusedHostError):
        check_url("https://[2001:db8::1]/x", GCS, "url")


def test_percent_encoding_in_the_path_and_query_is_allowed() -> None:
    check_url("https://storage.googleapis.com/b/o%2Fx?X-Goog-Signature=ab%2Fcd&upload_id=1", GCS, "url")


def test_refusal_does_not_show_the_url_path() -> None:
    with pytest.raises(RefusedHostError) as caught:
        check_url("https://evil.example/session?upload_id=SECRET", GCS, "session Location")
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(("header", "committed"), [(None, 0), ("bytes=0-0", 1), ("bytes=0-262143", 262144)])
def test_range_header_gives_committed_bytes(header: str | None, committed: int) -> None:
    assert committed_bytes(header) == committed


def test_unreadable_range_header_is_transient() -> None:
    with pytest.raises(TransientError):
        committed_bytes("bytes=5-10")


ME, OTHER, NOW = "me", "other", 1000.0


@pytest.mark.parametrize(
    ("state", "owner", "expires", "step"),
    [
        (states.RECEIVED, None, 0, states.IngestStep.UPLOAD),
        (states.UPLOADING, OTHER, NOW + 10, states.IngestStep.BUSY),
        (states.UPLOADING, OTHER, NOW - 1, states.IngestStep.UPLOAD),
        (states.UPLOADING, ME, NOW + 10, states.IngestStep.UPLOAD),
        (states.UPLOADED, None, 0, states.IngestStep.PUBLISH),
        (states.UPLOADED, OTHER, NOW + 10, states.IngestStep.BUSY),
        (states.QUEUED, None, 0, states.IngestStep.NOTHING),
        (states.FAILED, None, 0, states.IngestStep.NOTHING),
        (states.SUPERSEDED, None, 0, states.IngestStep.NOTHING),
        (states.PROJECT_CREATED, None, 0, states.IngestStep.NOTHING),
    ],
)
def test_ingest_step(state: str, owner: str | None, expires: float, step: states.IngestStep) -> None:
    assert states.ingest_step(state, owner, expires, ME, NOW) is step


@pytest.mark.parametrize(
    ("state", "complete", "live", "action"),
    [
        (states.FAILED, True, False, states.RetryAction.REPUBLISH),
        (states.FAILED, False, False, states.RetryAction.REINGEST),
        (states.QUEUED, True, False, states.RetryAction.REPUBLISH),
        (states.QUEUED, True, True, states.RetryAction.REPUBLISH),  # ingest's hand-over lease, left to lapse
        (states.UPLOADED, True, False, states.RetryAction.REPUBLISH),
        (states.UPLOADING, False, False, states.RetryAction.REINGEST),
        (states.UPLOADING, False, True, states.RetryAction.NONE),
        (states.CREATING, True, False, states.RetryAction.REPUBLISH),
        (states.CREATING, True, True, states.RetryAction.NONE),
        (states.WAITING, True, False, states.RetryAction.REPUBLISH),
        (states.PROJECT_CREATED, True, False, states.RetryAction.NONE),
        (states.SUPERSEDED, False, False, states.RetryAction.NONE),
    ],
)
def test_retry_action(state: str, complete: bool, live: bool, action: states.RetryAction) -> None:
    assert states.retry_action(state, complete, live) is action
