"""Which hosts the pipeline may talk to when a remote answer names the URL. Pure logic.

The upload-link ``url`` and the session ``Location`` come from OpusClip's answers, and so do the
clip files' ``uriForExport``: before a byte of a user's video is sent to one, or a clip is
fetched from one, it must name a host the operator listed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from opus_pipeline.errors import RefusedHostError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allowed: tuple[str, ...], what: str, setting: str = "OPUS_UPLOAD_URL_HOSTS") -> None:
    """Raise ``RefusedHostError`` unless ``url`` is https (or http on loopback) to a host listed
    in ``setting``. ``what`` names the URL for the message; the URL itself may be a credential."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise RefusedHostError(f"the {what} is not a valid URL; nothing was sent or fetched") from None
    scheme = parts.scheme.lower()
    default_port = {"https": 443, "http": 80}.get(scheme)
    candidates = {host, f"{host}:{port or default_port}"}
    if not host or not candidates & set(allowed):
        raise RefusedHostError(
            f"the {what} points to host {host or '?'!r}, which is not in {setting}; "
            "nothing was sent or fetched. Add the host there only if OpusClip really uses it."
        )
    if scheme == "https" or (scheme == "http" and is_loopback(host)):
        return
    raise RefusedHostError(
        f"the {what} uses {scheme or 'no'} scheme; only https is allowed (plain http only on "
        "loopback); nothing was sent or fetched"
    )
