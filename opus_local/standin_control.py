"""Client of the stand-in's control API (tests, the local stack, the benchmark)."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from . import standin
from .videos import unique_video

DEFAULT_CURATION = {"clipDurations": [[0, 90]]}  # what the pipeline sends when nobody chose durations


class StandInControl:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.base_url}/_standin/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def _get(self, path: str) -> Any:
        response = requests.get(f"{self.base_url}/_standin/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def inject(self, *faults: dict[str, Any]) -> None:
        """Queue faults, e.g. ``{"endpoint": "chunk", "kind": "status", "status": 503, "times": 2}``."""
        self._post("faults", {"faults": list(faults)})

    def clear_faults(self) -> None:
        self._post("faults", {"faults": [], "clear": True})

    def set_quota(self, total_amount: int, use_amount: int = 0) -> None:
        self._post("quota", {"totalAmount": total_amount, "useAmount": use_amount})

    def reset(self) -> None:
        """Forget everything, the configuration included (back to its defaults)."""
        self._post("reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings by their wire names, e.g. ``configure(projectSeconds=3, clipsPerProject=5)``;
        all or nothing (HTTP 400 on an unknown name or a bad value). Returns the whole configuration."""
        return self._post("config", settings)

    def model_link(self, turnaround_seconds: float | None, bytes_per_second: int | None) -> dict[str, Any]:
        """Answer each upload-session PUT ``turnaround_seconds`` after its body arrived and read bodies
        no faster than ``bytes_per_second`` (None: off, the default); kept until a reset."""
        return self.configure(linkTurnaroundSeconds=turnaround_seconds, linkBytesPerSecond=bytes_per_second)

    def config(self) -> dict[str, Any]:
        return self._get("config")

    def stall(self, project_id: str, resume_after: float | None = None) -> None:
        """Make a project still in flight end STALLED instead of COMPLETE (moving on to COMPLETE
        ``resume_after`` seconds later, when given)."""
        self._post("stall", {"projectId": project_id, "resumeAfter": resume_after})

    def stall_next(self, count: int = 1, resume_after: float | None = None) -> None:
        """Make the next ``count`` projects created end STALLED (moving on ``resume_after`` s later)."""
        self._post("stall", {"next": count, "resumeAfter": resume_after})

    def project_list(self, api_key: str) -> list[dict[str, Any]]:
        """Every project, newest first, read page by page from the project list as a client of
        OpusClip reads it (``GET /api/clip-projects?q=mine``)."""
        items: list[dict[str, Any]] = []
        for page in itertools.count():
            response = requests.get(
                f"{self.base_url}/api/clip-projects",
                params={"q": "mine", "page": page, "pageSize": 100},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            )
            response.raise_for_status()
            found = response.json()["data"]["list"]
            items.extend(found)
            if len(found) < 100:
                return items
        return items

    def projects_per_upload(self, api_key: str) -> Counter[str]:
        """How many projects the project list shows for each upload id (its ``sourceId``)."""
        return Counter(item["sourceId"] for item in self.project_list(api_key))

    def new_month(self) -> None:
        """Reset the month's credits, as OpusClip does on the 1st (UTC)."""
        self._post("new-month", {})

    def forget_uploads(self) -> list[str]:
        """Expire every upload made so far, as OpusClip might (undocumented): a create naming one is
        then refused as for an unknown upload. The ids forgotten."""
        return self._post("forget-uploads", {})["forgotten"]

    def credits_used(self) -> int:
        """The credits this month's projects were charged."""
        return self.stats()["creditsUsed"]

    def webhook_fault(self, kind: str, times: int = 1, skip: int = 0, **options: Any) -> None:
        """Misbehave on the next webhooks sent: ``drop``, ``slow`` (``seconds=``), ``duplicate``
        (``copies=``) or ``bad_signature``."""
        self.inject({"endpoint": "webhook", "kind": kind, "times": times, "skip": skip, **options})

    def project(self, project_id: str) -> dict[str, Any]:
        """The project as OpusClip would answer it now, plus the ``request`` it was created with."""
        return self._get(f"projects/{project_id}")

    def clip_md5s(self, project_id: str) -> dict[str, str]:
        """Clip id → md5 of its file (the export's, else the preview's), for the project's clips (none
        until it is COMPLETE)."""
        files = self.stats()["clipFiles"]
        return {clip_id: f["md5"] for clip_id, f in files.items() if clip_id.startswith(f"{project_id}.")}

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempted, in order, with its response status (None when not answered)."""
        return self.stats()["webhooks"]

    def refused(self) -> dict[str, int]:
        """Calls refused by the limits: ``{"rate": n, "concurrent": n}``."""
        return self.stats()["refused"]

    def stats(self) -> dict[str, Any]:
        return self._get("stats")

    def social(self) -> dict[str, Any]:
        """Every post (``posts``), schedule (``schedules``, each with ``cancelled``) made through the
        social-posting endpoints, and how many calls their 1-a-second limit refused (``refused``)."""
        return self._get("social")

    def social_accounts(self, accounts: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The connected accounts ``GET /api/social-accounts?q=mine`` lists (None: a 403)."""
        return self.configure(socialAccounts=accounts)

    def calls(self, endpoint: str) -> int:
        return self.stats()["calls"].get(endpoint, 0)

    def open_session(self, api_key: str) -> str:
        """An upload link and a started session, as a client of OpusClip gets them; the Location."""
        return self._start(api_key)[1]

    def _start(self, api_key: str) -> tuple[str, str]:
        link = requests.post(
            f"{self.base_url}/api/upload-links",
            json={"video": {"usecase": "LocalUpload"}},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )
        link.raise_for_status()
        started = requests.post(link.json()["url"], headers={"x-goog-resumable": "start"}, data=b"", timeout=10)
        return link.json()["uploadId"], started.headers["Location"]

    def upload(self, upload_id: str) -> dict[str, Any]:
        return self.stats()["uploads"][upload_id]

    def upload_video(self, api_key: str) -> str:
        """A small real video uploaded whole, as a client of OpusClip uploads it; its upload id."""
        upload_id, location = self._start(api_key)
        data = unique_video()
        requests.put(
            location, data=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}, timeout=10
        ).raise_for_status()
        return upload_id

    def create_project(self, api_key: str, *, upload_id: str | None = None, **request: Any) -> requests.Response:
        """``POST /api/clip-projects`` for ``upload_id`` (by default a small real video uploaded whole
        first: the stand-in bills by its duration) with ``request`` added to the body, as the pipeline
        sends it (with the clip durations OpusClip requires unless ``request`` chooses them); the raw
        answer, so that refusals can be inspected."""
        upload_id = upload_id or self.upload_video(api_key)
        return requests.post(
            f"{self.base_url}/api/clip-projects",
            json={
                "videoUrl": upload_id,
                **request,
                "curationPref": {**DEFAULT_CURATION, **request.get("curationPref", {})},
            },
            headers={"Authorization": f"Bearer {api_key}", "x-opus-upload-id": upload_id},
            timeout=10,
        )


class RunningStandIn:
    """The stand-in served on a thread of this process (tests)."""

    def __init__(self, api_key: str, storage_dir: Path) -> None:
        self.server = standin.serve("127.0.0.1", 0, api_key, storage_dir)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.control = StandInControl(self.url)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
