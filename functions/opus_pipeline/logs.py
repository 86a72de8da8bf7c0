"""Structured logs: one JSON object per line on stdout, as Cloud Logging parses it.

``severity`` and ``message`` are read by Cloud Logging; ``logging.googleapis.com/labels`` become
log labels; any other field lands in ``jsonPayload`` where the log-based metrics read ``event``,
``reason`` and ``bytes``. Registered secrets and URLs' queries are redacted (``redaction.py``) as a
last line of defence: the code does not pass them here in the first place.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from opus_pipeline.redaction import redact, register_secret

__all__ = ["Logger", "error", "info", "log", "register_secret", "warning"]


def log(
    severity: str,
    message: str,
    *,
    labels: dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Write one structured log line (``severity`` is a Cloud Logging severity name)."""
    entry: dict[str, Any] = {"severity": severity, "message": message}
    if labels:
        entry["logging.googleapis.com/labels"] = {k: str(v) for k, v in labels.items() if v is not None}
    entry.update(fields)
    line = redact(json.dumps(entry, default=str, ensure_ascii=False))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def info(message: str, **kwargs: Any) -> None:
    log("INFO", message, **kwargs)


def warning(message: str, **kwargs: Any) -> None:
    log("WARNING", message, **kwargs)


def error(message: str, **kwargs: Any) -> None:
    log("ERROR", message, **kwargs)


class Logger:
    """Log lines that all carry one video's labels; ``bind`` adds one as it becomes known."""

    def __init__(self, labels: dict[str, Any]) -> None:
        self.labels = dict(labels)

    def bind(self, **labels: Any) -> None:
        self.labels.update(labels)

    def info(self, message: str, **fields: Any) -> None:
        log("INFO", message, labels=self.labels, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        log("WARNING", message, labels=self.labels, **fields)

    def error(self, message: str, **fields: Any) -> None:
        log("ERROR", message, labels=self.labels, **fields)
