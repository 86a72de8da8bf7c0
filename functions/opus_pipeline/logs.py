"""Structured logs: one JSON object per line on stdout, as Cloud Logging parses it.

``severity`` and ``message`` are read by Cloud Logging; ``logging.googleapis.com/labels`` become
log labels; any other field lands in ``jsonPayload`` where the log-based metrics read ``event``,
``reason`` and ``bytes``. Registered secrets are masked as a last line of defence: the code does
not pass them here in the first place.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it might appear in a log line."""
    if value and len(value) >= 6:
        _secrets.add(value)


def _mask(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "[REDACTED]")
    return text


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
    line = _mask(json.dumps(entry, default=str, ensure_ascii=False))
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
