"""The stand-in's record of social posting (``social.py``): what was posted, scheduled and cancelled,
and when each posting endpoint last took a call (OpusClip allows them 1 request a second each)."""

from __future__ import annotations

import threading
import time
from typing import Any

SPACING_SECONDS = 1.0  # "1 request a second" per endpoint


class SocialBook:
    """What was posted, scheduled and cancelled, and when each endpoint last took a call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.last: dict[str, float] = {}
        self.refused = 0

    def admit(self, endpoint: str) -> bool:
        """One call of ``endpoint`` within its limit; False (refused) when the last was under a second ago."""
        with self.lock:
            now = time.monotonic()
            if now - self.last.get(endpoint, -SPACING_SECONDS) < SPACING_SECONDS:
                self.refused += 1
                return False
            self.last[endpoint] = now
            return True

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "posts": [dict(p) for p in self.posts.values()],
                "schedules": [dict(s) for s in self.schedules.values()],
                "refused": self.refused,
            }
