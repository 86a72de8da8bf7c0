"""What no text people read may hold: the registered secrets, and the query and user-info of URLs.

Every error message (``errors.PipelineError``) and every log line (``logs``) passes through
``redact``, so that OpusClip's error detail, which may echo a request (the API key, a signed URL),
reaches neither a state record's ``error``, nor an object's ``opus-error``, nor a log. Signed URLs
and upload sessions carry their credential in the query string (``X-Goog-Signature``,
``upload_id``), which is why any URL's query is dropped whoever registered it.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"
MIN_SECRET_CHARS = 6  # shorter values would mask ordinary words
_secrets: set[str] = set()
# http(s)://[user-info@]host/path[?query][#fragment], as far as a URL reaches in running text
# (not gs:// paths: an object name may hold "?" or "#" and is not a credential).
_URL = re.compile(
    r"(?P<scheme>\bhttps?://)(?:[^\s/?#@\"'<>]*@)?(?P<rest>[^\s?#\"'<>]*)(?P<query>[?#][^\s\"'<>]*)?",
    re.IGNORECASE,
)


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it might appear in an error or a log line."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret masked and every URL's user-info and query removed."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL.sub(_without_credentials, text)


def _without_credentials(url: re.Match[str]) -> str:
    return url["scheme"] + url["rest"] + ("?[query removed]" if url["query"] else "")
