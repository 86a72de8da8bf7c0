"""OpusClip's request budget (``OPUS_RATE_PER_MINUTE`` per API key), shared by every instance.

The window of the last minute's grants (``domain/rate_window.py``) is one JSON object in
``STATE_BUCKET`` advanced by the one compare-and-swap (``gcs/cas.py``): a call goes out only
once its grant is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from google.cloud import storage

from opus_pipeline.domain import rate_window
from opus_pipeline.errors import BudgetSpentError, ContendedError
from opus_pipeline.gcs.cas import CasObject, Edit

WINDOW_OBJECT = "admission/rate.json"
CONTENDED_PAUSE_SECONDS = 0.2  # after a change lost every race: a breath, then try again until give-up


class RateLimiter:
    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        per_minute: int,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._object = CasObject(client.bucket(bucket), WINDOW_OBJECT)
        self.per_minute = per_minute
        self._wall = wall
        self._sleep = sleep

    @property
    def conflicts(self) -> int:
        """For the benchmark: how often instances raced for the window."""
        return self._object.conflicts

    def _take(self, raw: bytes | None) -> Edit[float]:
        """Grant a call now (result 0) or say how long to wait for one (nothing written)."""
        grants = list(json.loads(raw)) if raw else []
        now = self._wall()
        wait = rate_window.wait_seconds(grants, self.per_minute, now)
        if wait > 0:
            return Edit(wait)
        return Edit(0.0, json.dumps([*rate_window.recent(grants, now), now]).encode())

    def acquire(self, max_wait: float) -> None:
        """Take one call of the budget, waiting up to ``max_wait`` seconds for it."""
        give_up = self._wall() + max_wait
        while True:
            try:
                wait, _ = self._object.change(self._take)
            except ContendedError:
                wait = CONTENDED_PAUSE_SECONDS  # other instances are taking grants: the window moves on
            else:
                if wait <= 0:
                    return
            if self._wall() + wait > give_up:
                raise BudgetSpentError(
                    f"OpusClip's budget of {self.per_minute} requests a minute is spent for the next {wait:.0f}s"
                )
            self._sleep(wait)
