"""The one retry of every loop that tries an operation again after a transient failure.

As google-cloud-storage hands one ``retry.py`` policy to every call, every loop here that tries
again (a range read of the source, a clip copy, an upload request) takes its waits from
``Backoff``: truncated exponential backoff with full jitter, from ``google.api_core``'s own
generator (1, 2, 4 … ``cap`` seconds at most, each drawn from [0, that]), except that a server's
``Retry-After`` (carried on the ``TransientError``) wins when it is shorter than the cap: a longer
one would hold an invocation for nothing, and the platform's redelivery waits instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from google.api_core.retry import exponential_sleep_generator

from opus_pipeline.errors import TransientError

BACKOFF_CAP_SECONDS = 32.0
T = TypeVar("T")


class Backoff:
    """The waits between one operation's attempts; ``restart`` when the operation made progress
    (an upload session that confirmed more bytes owes nothing to its earlier failures)."""

    def __init__(self, cap: float = BACKOFF_CAP_SECONDS, initial: float = 1.0) -> None:
        self.cap = cap
        self.initial = initial
        self._waits: Iterator[float] = iter(())
        self.restart()

    def restart(self) -> None:
        self._waits = exponential_sleep_generator(min(self.initial, self.cap), self.cap, multiplier=2.0)

    def next_wait(self, exc: TransientError | None = None) -> float:
        """Seconds to wait before the next attempt after ``exc``."""
        wait = next(self._waits)
        hint = exc.retry_after if exc is not None else None
        return hint if hint is not None and hint <= self.cap else wait


def retried(
    operation: Callable[[], T],
    attempts: int,
    sleep: Callable[[float], None],
    cap: float = BACKOFF_CAP_SECONDS,
) -> T:
    """``operation()``, tried up to ``attempts`` times while it raises ``TransientError``; the last
    failure is raised. Permanent errors are raised at once."""
    backoff = Backoff(cap)
    for _ in range(attempts - 1):
        try:
            return operation()
        except TransientError as exc:
            sleep(backoff.next_wait(exc))
    return operation()
