"""The one taxonomy of errors: every class the pipeline raises, and what retrying it means.

A ``PermanentError`` means "retrying the same event cannot help": the video is marked failed, the
function returns normally and the event is acknowledged. A ``TransientError`` means "try again
later": the function raises and the platform (Eventarc or Pub/Sub) redelivers with backoff.

Messages of these exceptions are shown to people (logs, object status); they must never contain
the API key or an upload session URL, which is why transport errors are wrapped here instead of
being re-raised with their own text, and why every message is redacted as it is made.
"""

from __future__ import annotations

from opus_pipeline.redaction import redact


class PipelineError(Exception):
    """Base class; ``reason`` is a short machine label, the message is for people.

    The message is redacted once, here (``redaction.py``): whatever an answer echoed into it, it
    becomes the record's ``error``, the object's ``opus-error`` and log lines without a secret.
    """

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(redact(message))
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


# -- the state machine and the shared objects -------------------------------------------------


class IllegalTransitionError(PipelineError, RuntimeError):
    """A write that the state machine does not allow: a bug, never a user's mistake."""

    reason = "illegal-transition"


class ConflictError(PipelineError):
    """Someone else wrote the object since it was read (a lost compare-and-swap)."""

    reason = "conflict"


class ClaimLostError(PipelineError):
    """A record read without a claim was claimed by another delivery before this one claimed it;
    ``step`` is what the record, as now found, leaves this one to do (nothing of it is this one's to
    undo). Caught by the use case that claims."""

    reason = "claim-lost"

    def __init__(self, step: object) -> None:
        super().__init__(f"another delivery took the record up ({getattr(step, 'value', step)})")
        self.step = step


class ContendedError(TransientError):
    """A shared object kept changing under every attempt of one change: try again later. Not an
    ``InProgressError``: no other invocation holds this one's lease."""

    reason = "contended"


class UnknownVideoError(PermanentError, LookupError):
    """No record exists for the video, and the caller was not allowed to start one."""

    reason = "unknown-video"


# -- ingest -------------------------------------------------------------------------------------


class DeadlineReachedError(TransientError):
    """The invocation's streaming time is used up; the offset is recorded and a retry resumes."""

    reason = "deadline"


class RetryableStatusError(TransientError):
    """The upload session answered 408/429/5xx."""

    reason = "upload-retryable"


class UnreadableVideoError(PermanentError, ValueError):
    """The bytes are not a video whose duration can be read (truncated, corrupt, not a video)."""

    reason = "unreadable-video"


# -- preferences and the request body ---------------------------------------------------------


class PreferenceError(PermanentError):
    """A preference value is invalid; the message names the key and what is accepted."""

    reason = "bad-metadata"


class InvalidCommandError(PermanentError):
    """The create-project body does not match the schema OpusClip documents."""

    reason = "invalid-request"


# -- OpusClip's answers ------------------------------------------------------------------------


class OpusApiError(PermanentError):
    """OpusClip refused a request for a reason retrying cannot fix. ``status`` is its HTTP status
    (None for an answer that was accepted but unusable): which refusal it was matters after a
    monthly-cap wait, when a 4xx may mean OpusClip no longer has the upload (``domain/credits.py``)."""

    def __init__(self, message: str, *, reason: str, reset_at: str | None = None, status: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reset_at = reset_at
        self.status = status


class AnswerLostError(TransientError):
    """The request was sent but its answer never came (a read timeout, a connection dropped after
    the request went out): the server may have acted on it. ``http_policy.send`` raises it; a
    connection never made raises a plain ``TransientError``."""

    reason = "answer-lost"


class AmbiguousCreateError(TransientError):
    """A create call that spends credits may have been acted on and its answer does not say so: a
    lost answer, a 5xx, or a 2xx without a readable project id. Never asked again blind: the project
    list is looked at first (``usecases/create_project.py``)."""

    reason = "create-ambiguous"


class RateLimitedError(TransientError):
    """429: the per-key rate limit."""

    reason = "rate-limited"


class ConcurrentCapError(RateLimitedError):
    """429 with ``X-Cap-Reason: concurrent``: the plan's projects in flight are all taken."""

    reason = "concurrent-cap"


class BudgetSpentError(TransientError):
    """The shared request budget has no call left within the wait this caller allows."""

    reason = "rate-budget"


# -- the people's tool --------------------------------------------------------------------------


class NothingToRetryError(PermanentError):
    """``retry`` found the video in a state that needs no re-drive."""

    reason = "nothing-to-retry"


class CliError(PipelineError):
    """A one-line message for the user of ``opus-pipeline``."""

    reason = "cli"
