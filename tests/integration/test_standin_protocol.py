"""The stand-in is as strict as the documented protocol, and the session client speaks it."""

from __future__ import annotations

import os

import pytest
import requests

from opus_pipeline.errors import PermanentError
from opus_pipeline.opus import resumable

from conftest import API_KEY, CHUNK, md5_hex


@pytest.fixture
def session_url(standin) -> str:
    return standin.open_session(API_KEY)


def put(url: str, body: bytes, content_range: str) -> requests.Response:
    return requests.put(url, data=body, headers={"Content-Range": content_range}, timeout=10)


def test_upload_links_require_the_bearer_key(standin) -> None:
    response = requests.post(f"{standin.base_url}/api/upload-links", json={"video": {"usecase": "LocalUpload"}})
    assert response.status_code == 401


def test_non_final_chunk_must_be_a_multiple_of_256_kib(session_url: str) -> None:
    assert put(session_url, b"x" * 1000, "bytes 0-999/5000").status_code == 400


def test_chunk_must_start_at_the_committed_offset(session_url: str) -> None:
    assert put(session_url, b"x" * CHUNK, f"bytes {CHUNK}-{2 * CHUNK - 1}/{4 * CHUNK}").status_code == 400


def test_chunks_commit_with_308_and_range_then_the_last_gets_200(session_url: str, standin) -> None:
    data = os.urandom(CHUNK + 10)
    session = resumable.ResumableSession(requests.Session(), session_url, len(data))
    first = session.put(memoryview(data[:CHUNK]))
    assert first == resumable.Progress(committed=CHUNK, complete=False)
    assert session.recover() == first
    last = session.put(memoryview(data[CHUNK:]))
    assert last.complete
    [upload] = standin.stats()["uploads"].values()
    assert upload["md5"] == md5_hex(data)


def test_other_4xx_from_the_session_is_permanent(session_url: str) -> None:
    with pytest.raises(PermanentError, match="HTTP 400"):
        resumable.ResumableSession(requests.Session(), session_url, 5000).put(memoryview(b"x" * 10))
