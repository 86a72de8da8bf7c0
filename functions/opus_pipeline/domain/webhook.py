"""OpusClip's webhook, a hint that a project ended: its URL, and who may call it. Pure logic.

OpusClip documents no body, so nothing in it is trusted: the receiver only learns *which* video
to look at, from the URL this pipeline registered, and then asks OpusClip itself. The URL
carries a ``token`` made for that one video, the HMAC-SHA256 of the video's key keyed with the
deploy secret ``OPUS_WEBHOOK_TOKEN``: a URL that leaks (OpusClip's dashboard, a proxy's log)
names one video only, and no token for another can be made from it. The token is checked first,
in constant time, before the body is read. A request that carries ``X-Opus-Signature`` must
verify (hex HMAC-SHA256 over the raw body followed by the ``X-Opus-Salt`` value, keyed with the
organisation's API key); with ``OPUS_WEBHOOK_REQUIRE_SIGNATURE`` an unsigned call is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_BODY_BYTES = 64 * 1024
VIDEO_PARAM = "video"
TOKEN_PARAM = "token"
# A look at OpusClip for one video at most this often, however many calls arrive: the 30 calls a
# minute of the key are shared with every function, and a caller must not be able to spend them.
LOOK_INTERVAL_SECONDS = 60.0


def video_token(secret: str, video_key: str) -> str:
    """The token of one video's URL: only who holds the deploy secret can make one."""
    return hmac.new(secret.encode(), video_key.encode(), hashlib.sha256).hexdigest()


def registered_url(base_url: str, secret: str, video_key: str) -> str:
    """The conclusion action's URL for one video: the receiver, the video's token, its key."""
    parts = urlsplit(base_url)
    query = [*parse_qsl(parts.query), (TOKEN_PARAM, video_token(secret, video_key)), (VIDEO_PARAM, video_key)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def signature(api_key: str, body: bytes, salt: str) -> str:
    return hmac.new(api_key.encode(), body + salt.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """``status`` is what to answer when the call is refused (``None``: accepted)."""

    status: int | None
    why: str = ""


def judge_url(secret: str | None, query: Mapping[str, str]) -> Verdict:
    """Whether the URL's token is the one made for the video it names; before anything is read.
    The reasons are for the log: they name what was wrong, never the values."""
    given = query.get(TOKEN_PARAM, "")
    key = query.get(VIDEO_PARAM, "")
    if not secret or not key or not hmac.compare_digest(given.encode(), video_token(secret, key).encode()):
        return Verdict(401, "a missing or wrong token for the video named")
    return Verdict(None)


def judge_body(api_key: str, headers: Mapping[str, str], body: bytes | None, require_signature: bool) -> Verdict:
    """Whether the body may be accepted; ``body`` is ``None`` when it was longer than ``MAX_BODY_BYTES``."""
    if body is None:
        return Verdict(413, f"a body over {MAX_BODY_BYTES} bytes")
    sent = headers.get("X-Opus-Signature")
    if sent is None and require_signature:
        return Verdict(401, "no X-Opus-Signature, which OPUS_WEBHOOK_REQUIRE_SIGNATURE requires")
    if sent is None:
        return Verdict(None)
    expected = signature(api_key, body, headers.get("X-Opus-Salt", ""))
    if not hmac.compare_digest(sent.strip().lower().encode(), expected.encode()):
        return Verdict(401, "an X-Opus-Signature that does not verify")
    return Verdict(None)


def look_due(last_look: float, now: float) -> bool:
    """Whether a webhook call may make OpusClip be asked again about its video."""
    return not 0 <= now - last_look < LOOK_INTERVAL_SECONDS
