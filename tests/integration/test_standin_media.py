"""The stand-in's clip files are real: small ffmpeg-made MP4s, each its own, and JPEG thumbnails."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

from opus_local.videos import ffprobe_duration

from conftest import API_KEY


def complete_project(standin, **settings) -> list[dict]:
    """The clips of a project that is COMPLETE at once, every clip scored (so with a thumbnail)."""
    standin.configure(projectSeconds=0, scoredClips="all", **settings)
    project_id = standin.create_project(API_KEY).json()["id"]
    query = {"q": "findByProjectId", "projectId": project_id, "pageNum": 1, "pageSize": 10}
    answer = requests.get(
        f"{standin.base_url}/api/exportable-clips",
        params=query,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    return answer.json()


def test_each_clip_file_is_a_real_video(standin, tmp_path: Path) -> None:
    for n, clip in enumerate(complete_project(standin)):
        path = tmp_path / f"clip{n}.mp4"
        path.write_bytes(requests.get(clip["uriForExport"], timeout=10).content)
        assert ffprobe_duration(path) > 1


def test_a_large_clip_file_is_a_real_video_of_exactly_its_size(standin, tmp_path: Path) -> None:
    [clip, *_] = complete_project(standin, clipBytes=5 * 1024 * 1024 + 3)
    path = tmp_path / "clip.mp4"
    path.write_bytes(requests.get(clip["uriForExport"], timeout=10).content)
    assert path.stat().st_size == 5 * 1024 * 1024 + 3 and ffprobe_duration(path) > 1


def test_every_clip_file_has_its_own_md5(standin) -> None:
    clips = complete_project(standin, clipsPerProject=4)
    files = [
        requests.get(clip[kind], timeout=10).content for clip in clips for kind in ("uriForExport", "uriForPreview")
    ]
    assert len({hashlib.md5(data).hexdigest() for data in files}) == 8


def test_thumbnails_are_jpeg_images(standin, tmp_path: Path) -> None:
    [clip, *_] = complete_project(standin)
    data = requests.get(clip["uriForThumbnail"], timeout=10).content
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"


def test_clips_say_whether_their_file_is_still_rendering(standin) -> None:
    clips = complete_project(standin, renderSeconds=60, renderingClips=1)
    assert [clip["renderAsVideoFile"] for clip in clips] == [{"pending": True}, {"pending": False}, {"pending": False}]
    assert requests.get(clips[0]["uriForExport"], timeout=10).status_code == 404
    assert requests.get(clips[1]["uriForExport"], timeout=10).status_code == 200
