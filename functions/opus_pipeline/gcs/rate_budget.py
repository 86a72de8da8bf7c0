"""OpusClip's request budget (``OPUS_RATE_PER_MINUTE`` per API key), shared by every instance.

A sliding window, not a token bucket: OpusClip states its limit as "N requests per minute", and
a bucket that refills continuously would let a burst of N be followed by more within the same
minute. The window is a list of the grant times of the last minute, kept in one JSON object in
``STATE_BUCKET`` and advanced by compare-and-swap: a call goes out only once its grant is
written. ``MARGIN_SECONDS`` widens the window so that a call granted here and arriving a little
later still falls inside OpusClip's own minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline.errors import BudgetSpentError
from opus_pipeline.gcs.ledger import written_by_us

WINDOW_OBJECT = "admission/rate.json"
WINDOW_SECONDS = 60.0
MARGIN_SECONDS = 2.0


def wait_seconds(grants: list[float], per_minute: int, now: float) -> float:
    """Pure: 0 when a call may go now, else how long until the oldest grant leaves the window."""
    recent = sorted(t for t in grants if t > now - WINDOW_SECONDS - MARGIN_SECONDS)
    if len(recent) < per_minute:
        return 0.0
    return recent[-per_minute] + WINDOW_SECONDS + MARGIN_SECONDS - now


class RateLimiter:
    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        per_minute: int,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._blob_name = WINDOW_OBJECT
        self._bucket = client.bucket(bucket)
        self.per_minute = per_minute
        self._wall = wall
        self._sleep = sleep
        self.conflicts = 0  # for the benchmark: how often instances raced for the window

    def _read(self) -> tuple[list[float], int]:
        blob = self._bucket.blob(self._blob_name)
        try:
            raw = blob.download_as_bytes()
        except gexc.NotFound:
            return [], 0
        return list(json.loads(raw)), int(blob.generation)

    def acquire(self, max_wait: float) -> None:
        """Take one call of the budget, waiting up to ``max_wait`` seconds for it."""
        give_up = self._wall() + max_wait
        while True:
            grants, generation = self._read()
            now = self._wall()
            wait = wait_seconds(grants, self.per_minute, now)
            if wait <= 0:
                recent = json.dumps([t for t in grants if t > now - WINDOW_SECONDS - MARGIN_SECONDS] + [now]).encode()
                blob = self._bucket.blob(self._blob_name)
                try:
                    blob.upload_from_string(recent, content_type="application/json", if_generation_match=generation)
                    return
                except gexc.PreconditionFailed:
                    if written_by_us(blob, recent):  # a retried write of ours (see ledger.py)
                        return
                    self.conflicts += 1
                    continue
            if now + wait > give_up:
                raise BudgetSpentError(
                    f"OpusClip's budget of {self.per_minute} requests a minute is spent for the next {wait:.0f}s"
                )
            self._sleep(wait)
