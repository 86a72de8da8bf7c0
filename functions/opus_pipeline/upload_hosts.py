"""Where private video bytes may be sent. Pure logic.

The upload-link ``url`` and the session ``Location`` come from a remote answer; before a single
byte of a user's video follows them, they must name a host the operator listed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import RefusedHostError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_upload_url(url: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise ``RefusedHostError`` unless ``url`` is https (or http on loopback) to a listed host.

    ``what`` names the URL for the error message; the URL itself is a credential and is not shown.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise RefusedHostError(f"the {what} is not a valid URL; nothing was uploaded") from None
    scheme = parts.scheme.lower()
    default_port = {"https": 443, "http": 80}.get(scheme)
    candidates = {host, f"{host}:{port or default_port}"}
    if not host or not candidates & set(allowed):
        raise RefusedHostError(
            f"the {what} points to host {host or '?'!r}, which is not in OPUS_UPLOAD_URL_HOSTS; "
            "nothing was uploaded. Add the host there only if OpusClip really uses it."
        )
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return
    raise RefusedHostError(
        f"the {what} uses {scheme or 'no'} scheme; only https is allowed (plain http only on "
        "loopback); nothing was uploaded"
    )
