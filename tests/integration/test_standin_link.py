"""The stand-in's link model for the upload session: a turnaround per PUT and a body rate, off by default."""

from __future__ import annotations

import time

import pytest
import requests

from opus_local.videos import video_bytes
from opus_pipeline.opus import resumable

from conftest import API_KEY, CHUNK


def test_the_link_model_is_off_by_default(standin) -> None:
    config = standin.config()
    assert config["linkTurnaroundSeconds"] is None and config["linkBytesPerSecond"] is None


def test_each_session_put_is_answered_a_turnaround_after_its_body_arrived(standin) -> None:
    standin.model_link(0.4, None)
    session = resumable.ResumableSession(requests.Session(), standin.open_session(API_KEY), 2 * CHUNK)

    began = time.monotonic()
    session.recover()
    queried = time.monotonic()
    session.put(memoryview(video_bytes(2 * CHUNK)))
    sent = time.monotonic()

    assert queried - began >= 0.4 and sent - queried >= 0.4


def test_bodies_are_read_no_faster_than_the_modelled_rate(standin) -> None:
    standin.model_link(None, 1024 * 1024)
    data = video_bytes(2 * CHUNK)  # 512 KiB: half a second at 1 MiB/s
    session = resumable.ResumableSession(requests.Session(), standin.open_session(API_KEY), len(data))

    began = time.monotonic()
    assert session.put(memoryview(data)).complete
    assert time.monotonic() - began >= 0.5


@pytest.mark.parametrize(
    "setting", [{"linkTurnaroundSeconds": -1}, {"linkBytesPerSecond": 0}, {"linkBytesPerSecond": 1.5}]
)
def test_the_link_model_refuses_impossible_settings(standin, setting: dict) -> None:
    with pytest.raises(requests.HTTPError):
        standin.configure(**setting)
