"""OpusClip's webhook, a hint that a project ended: its URL, and who may call it. Pure logic.

OpusClip documents no body, so nothing in it is trusted: the receiver only learns *which* video
to look at, from the URL this pipeline registered, and then asks OpusClip itself. The URL
carries a ``token`` made for that one video, the HMAC-SHA256 of the video's key keyed with the
deploy secret ``OPUS_WEBHOOK_TOKEN``: a URL that leaks (OpusClip's dashboard, a proxy's log)
names one video only, and no token for another can be made from it. The token is checked first,
in constant time, before the body is read. ``X-Opus-Signature`` is the HMAC-SHA256 over the raw
body followed by the ``X-Opus-Salt`` value (hex or base64), keyed with the workspace's *first* API
key: ``OPUS_WEBHOOK_SECRET`` when that is not ``OPUS_API_KEY``. With
``OPUS_WEBHOOK_REQUIRE_SIGNATURE`` a call without a signature that verifies is refused; without it,
the token alone admits the call as a hint (a signature that does not verify is logged), which costs
at most one look a minute at OpusClip.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence
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


def signing_keys(api_key: str, webhook_secret: str | None) -> tuple[str, ...]:
    """The keys a signature may be made with: ``OPUS_WEBHOOK_SECRET`` when set, and the API key."""
    return (webhook_secret, api_key) if webhook_secret and webhook_secret != api_key else (api_key,)


def _digest(sent: str) -> bytes | None:
    """The 32 bytes a signature header carries, written in hex or in base64 (either alphabet)."""
    text = sent.strip()
    padded = text + "=" * (-len(text) % 4)
    found = []
    with contextlib.suppress(ValueError):  # binascii.Error is a ValueError
        found.append(bytes.fromhex(text))
    for altchars in (None, b"-_"):
        with contextlib.suppress(ValueError):
            found.append(base64.b64decode(padded, altchars=altchars, validate=True))
    return next((raw for raw in found if len(raw) == hashlib.sha256().digest_size), None)


def verifies(keys: Sequence[str], body: bytes, salt: str, sent: str) -> bool:
    """Whether ``sent`` is the signature of ``body`` and ``salt`` under one of ``keys``."""
    given = _digest(sent)
    return given is not None and any(
        hmac.compare_digest(given, hmac.new(key.encode(), body + salt.encode(), hashlib.sha256).digest())
        for key in keys
    )


@dataclass(frozen=True)
class Verdict:
    """``status`` is what to answer when the call is refused (``None``: accepted); ``warning``, for
    an accepted call, what is worth a WARNING line."""

    status: int | None
    why: str = ""
    warning: str = ""


def judge_url(secret: str | None, query: Mapping[str, str]) -> Verdict:
    """Whether the URL's token is the one made for the video it names; before anything is read.
    The reasons are for the log: they name what was wrong, never the values."""
    given = query.get(TOKEN_PARAM, "")
    key = query.get(VIDEO_PARAM, "")
    if not secret or not key or not hmac.compare_digest(given.encode(), video_token(secret, key).encode()):
        return Verdict(401, "a missing or wrong token for the video named")
    return Verdict(None)


def judge_body(keys: Sequence[str], headers: Mapping[str, str], body: bytes | None, require_signature: bool) -> Verdict:
    """Whether the body may be accepted (``keys``: ``signing_keys``); ``body`` is ``None`` when it
    was longer than ``MAX_BODY_BYTES``."""
    if body is None:
        return Verdict(413, f"a body over {MAX_BODY_BYTES} bytes")
    sent = headers.get("X-Opus-Signature")
    if sent is None and require_signature:
        return Verdict(401, "no X-Opus-Signature, which OPUS_WEBHOOK_REQUIRE_SIGNATURE requires")
    if sent is None or verifies(keys, body, headers.get("X-Opus-Salt", ""), sent):
        return Verdict(None)
    mismatch = (
        "an X-Opus-Signature that does not verify with OPUS_WEBHOOK_SECRET or OPUS_API_KEY (OpusClip signs "
        "with the workspace's first API key: set OPUS_WEBHOOK_SECRET to that key)"
    )
    if require_signature:
        return Verdict(401, mismatch)
    return Verdict(None, warning=f"{mismatch}; the URL's token is right, so the call is taken as a hint")


def look_due(last_look: float, now: float) -> bool:
    """Whether a webhook call may make OpusClip be asked again about its video."""
    return not 0 <= now - last_look < LOOK_INTERVAL_SECONDS


def next_look_at(last_look: float, next_check: float) -> float:
    """When a video called about within a minute of its last look is looked at: at the end of that
    minute, unless its schedule had it sooner. The call is not dropped, and still costs no more
    than a look a minute."""
    return min(next_check, last_look + LOOK_INTERVAL_SECONDS)
