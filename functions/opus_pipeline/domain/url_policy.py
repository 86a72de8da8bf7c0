"""Which hosts the pipeline may talk to when a remote answer names the URL. Pure logic.

The upload-link ``url`` and the session ``Location`` come from OpusClip's answers, and so do the
clip files' ``uriForExport``: before a byte of a user's video is sent to one, or a clip is
fetched from one, it must name a host the operator listed.

The check parses the URL twice: with the standard library, and with urllib3's parser, which is
the one the transport (requests) connects with. Parsers disagree on odd URLs — urllib3 ends the
host at a backslash, ``urlsplit`` reads ``evil.example\\@listed.host`` as user-info and a listed
host — so a URL is accepted only when both read the same scheme, host and port, and its
authority holds nothing but host characters (no user-info, ``@``, ``\\``, ``%``, whitespace or
control character, which are where the parsers' readings part).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from urllib3.util import parse_url

from opus_pipeline.errors import RefusedHostError

DEFAULT_PORTS = {"https": 443, "http": 80}
# A host name, an IPv4 address or a bracketed IPv6 literal, and an optional port: nothing else.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refused(what: str, why: str) -> RefusedHostError:
    return RefusedHostError(f"the {what} {why}; nothing was sent or fetched")


def _host_port(url: str, what: str) -> tuple[str, str, int | None]:
    """Scheme, host (lower case, IPv6 without brackets) and port, as both parsers read them."""
    if any(c.isspace() or not c.isprintable() for c in url) or "\\" in url:
        raise _refused(what, "contains whitespace, a control character or a backslash")
    try:
        split = urlsplit(url)
        split_port = split.port
        transport = parse_url(url)
    except ValueError:
        raise _refused(what, "is not a valid URL") from None
    if not _AUTHORITY.fullmatch(split.netloc):
        raise _refused(what, "has user-info or characters other than a host and port in its authority")
    scheme = split.scheme.lower()
    host = (split.hostname or "").lower()
    transport_host = (transport.host or "").lower().removeprefix("[").removesuffix("]")
    if (transport.scheme or "", transport_host, transport.port) != (scheme, host, split_port) or transport.auth:
        raise _refused(what, "is read differently by the URL parser and the HTTP transport")
    return scheme, host, split_port


def check_url(url: str, allowed: tuple[str, ...], what: str, setting: str = "OPUS_UPLOAD_URL_HOSTS") -> None:
    """Raise ``RefusedHostError`` unless ``url`` is https (or http on loopback) to a host listed
    in ``setting``; a host listed without a port allows its scheme's default port only. ``what``
    names the URL for the message; the URL itself may be a credential, so it is never shown."""
    scheme, host, port = _host_port(url, what)
    default_port = DEFAULT_PORTS.get(scheme)
    shown = f"[{host}]" if ":" in host else host
    candidates = {f"{shown}:{port or default_port}"}
    if port in (None, default_port):
        candidates.add(shown)
    if not host or not candidates & set(allowed):
        raise RefusedHostError(
            f"the {what} points to {shown or '?'!r} port {port or default_port}, which is not in {setting}; "
            "nothing was sent or fetched. Add the host (with its port, unless it is the scheme's default) "
            "there only if OpusClip really uses it."
        )
    if scheme == "https" or (scheme == "http" and is_loopback(host)):
        return
    raise RefusedHostError(
        f"the {what} uses {scheme or 'no'} scheme; only https is allowed (plain http only on "
        "loopback); nothing was sent or fetched"
    )
