"""The one place where retry semantics are decided.

A ``PermanentError`` means "retrying the same event cannot help": the video is marked failed, the
function returns normally and the event is acknowledged. A ``TransientError`` means "try again
later": the function raises and the platform (Eventarc or Pub/Sub) redelivers with backoff.

Messages of these exceptions are shown to people (logs, object status); they must never contain
the API key or an upload session URL, which is why transport errors are wrapped here instead of
being re-raised with their own text.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class; ``reason`` is a short machine label, the message is for people."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PermanentError(PipelineError):
    """Retrying cannot help: mark the video failed and acknowledge the event."""

    reason = "permanent"


class TransientError(PipelineError):
    """Retrying later may help: raise so the platform redelivers.

    ``retry_after`` carries a server's hint, in seconds, when it gave one.
    """

    reason = "transient"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class InProgressError(TransientError):
    """Another invocation holds the video's lease; the retry takes over if that one dies."""

    reason = "in-progress"


class SessionExpiredError(PipelineError):
    """The OpusClip upload session is unknown or expired (404/410): a new one is needed."""

    reason = "session-expired"


class SupersededError(PipelineError):
    """The pinned object generation is gone and the live object holds other bytes."""

    reason = "superseded"


class PoisonMessageError(PermanentError):
    """A message that can never be processed; it is logged and acknowledged, never looped."""

    reason = "poison-message"


class RefusedHostError(PermanentError):
    """A URL (or a redirect) would send bytes or credentials to a host nobody listed."""

    reason = "refused-host"


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""
