"""Client of the stand-in's control API (tests, the local stack, the benchmark)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import requests

from . import standin


class StandInControl:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.base_url}/_standin/{path}", json=body, timeout=10)
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
        self._post("reset", {})

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/_standin/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def calls(self, endpoint: str) -> int:
        return self.stats()["calls"].get(endpoint, 0)

    def open_session(self, api_key: str) -> str:
        """An upload link and a started session, as a client of OpusClip gets them; the Location."""
        link = requests.post(
            f"{self.base_url}/api/upload-links",
            json={"video": {"usecase": "LocalUpload"}},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        )
        link.raise_for_status()
        started = requests.post(link.json()["url"], headers={"x-goog-resumable": "start"}, data=b"", timeout=10)
        return started.headers["Location"]

    def upload(self, upload_id: str) -> dict[str, Any]:
        return self.stats()["uploads"][upload_id]


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
