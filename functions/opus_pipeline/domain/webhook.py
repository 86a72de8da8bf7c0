"""OpusClip's webhook, a hint that a project ended: its URL, and who may call it. Pure logic.

OpusClip documents no body, so nothing in it is trusted: the receiver only learns *which* video
to look at, from the URL this pipeline registered, and then asks OpusClip itself. The URL
carries a secret ``token`` (compared in constant time); a request that also carries
``X-Opus-Signature`` must verify: hex HMAC-SHA256 over the raw body followed by the
``X-Opus-Salt`` value, keyed with the organisation's API key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_BODY_BYTES = 64 * 1024
VIDEO_PARAM = "video"


def registered_url(base_url: str, token: str, video_key: str) -> str:
    """The conclusion action's URL for one video: the receiver, its token, the video's key."""
    parts = urlsplit(base_url)
    query = [*parse_qsl(parts.query), ("token", token), (VIDEO_PARAM, video_key)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def signature(api_key: str, body: bytes, salt: str) -> str:
    return hmac.new(api_key.encode(), body + salt.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """``status`` is what to answer when the call is refused (``None``: accepted)."""

    status: int | None
    why: str = ""


def judge(
    expected_token: str | None,
    api_key: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes | None,
) -> Verdict:
    """Whether a call may go on; ``body`` is ``None`` when it was longer than ``MAX_BODY_BYTES``.

    The reasons are for the log: they name what was wrong, never the values.
    """
    if body is None:
        return Verdict(413, f"a body over {MAX_BODY_BYTES} bytes")
    given = query.get("token", "")
    if not expected_token or not hmac.compare_digest(given.encode(), expected_token.encode()):
        return Verdict(401, "a missing or wrong token")
    sent = headers.get("X-Opus-Signature")
    if sent is not None:
        expected = signature(api_key, body, headers.get("X-Opus-Salt", ""))
        if not hmac.compare_digest(sent.strip().lower().encode(), expected.encode()):
            return Verdict(401, "an X-Opus-Signature that does not verify")
    return Verdict(None)
