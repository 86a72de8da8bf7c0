"""The stand-in as a client: the WEBHOOK conclusion actions OpusClip POSTs when a project ends."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from .state import Project, StandIn

WEBHOOK_TIMEOUT = 10


def conclude(state: StandIn, project: Project, action: dict[str, Any], at: float | None = None) -> None:
    """Send a WEBHOOK conclusion action, as OpusClip does when a project ends: on COMPLETE, and on
    STALLED only with ``notifyFailure``. OpusClip documents no body, so it carries what receivers
    guess at (projectId, stage); the signature is as documented: hex HMAC-SHA256 under the API key
    over the raw body followed by the per-request salt. Sent once, no retries (none documented).
    ``at``: the moment it is sent for (a project that stalled and moved on is sent for again then)."""
    stage = project.stage(max(time.time(), project.ends if at is None else at))[0]  # a timer may wake a hair early
    if (stage == "STALLED" and not action.get("notifyFailure")) or state.project(project.id) is not project:
        return
    fault = state.take_fault("webhook")
    kind = fault.kind if fault else None
    delivery = {"url": action["url"], "projectId": project.id, "stage": stage, "fault": kind}
    if kind == "drop":
        return state.record_webhook(delivery, None, "dropped by an injected fault")
    if fault is not None and kind == "slow":
        time.sleep(fault.seconds)
    body = json.dumps({"projectId": project.id, "stage": stage}).encode()
    key = ("not-" + state.api_key) if kind == "bad_signature" else state.api_key
    for _ in range(fault.copies if fault is not None and kind == "duplicate" else 1):
        if state.project(project.id) is not project:  # reset meanwhile
            return None
        salt = secrets.token_hex(8)
        headers = {
            "Content-Type": "application/json",
            "X-Opus-Signature": hmac.new(key.encode(), body + salt.encode(), hashlib.sha256).hexdigest(),
            "X-Opus-Salt": salt,
            "X-Opus-Timestamp": str(int(time.time())),
        }
        try:
            response = requests.post(action["url"], data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
        except requests.RequestException as exc:
            state.record_webhook(delivery, None, type(exc).__name__)  # not str(exc): it quotes the URL and its token
        else:
            state.record_webhook(delivery, response.status_code, None)
    return None
