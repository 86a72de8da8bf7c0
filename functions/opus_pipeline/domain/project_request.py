"""The ``POST /api/clip-projects`` body: built from preferences and settings, checked before sending.

Pure logic. The JSON Schema beside this file is the project's own reading of OpusClip's
documented ``CreateClipProjectCommand``; a wrong genre or clip range is caught here, with a
reason a person can act on, rather than by OpusClip.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opus_pipeline.domain.preferences import Preferences
from opus_pipeline.errors import InvalidCommandError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # only project creation checks bodies: ingest never pays for it

    schema = json.loads(Path(__file__).with_name("create_clip_project.schema.json").read_text())
    return Draft202012Validator(schema)


def build_command(
    upload_id: str, prefs: Preferences, notify_email: str | None = None, webhook_url: str | None = None
) -> dict[str, Any]:
    """The request body; fields that are not set are omitted, never sent as null. ``prefs`` are
    the effective ones (``preferences.effective``), which always carry the clip durations."""
    body: dict[str, Any] = {"videoUrl": upload_id}
    for pref, value in prefs.set_items():
        if not pref.sent:
            continue
        place = body
        for name in pref.path:
            place = place.setdefault(name, {})
        place[pref.field] = pref.syntax.to_json(value)
    actions = []
    if notify_email:
        actions.append({"type": "EMAIL", "notifyFailure": True, "email": notify_email})
    if webhook_url:
        actions.append({"type": "WEBHOOK", "notifyFailure": True, "url": webhook_url})
    if actions:
        body["conclusionActions"] = actions
    return body


def check_command(body: dict[str, Any]) -> None:
    """Raise ``InvalidCommandError`` naming every field that breaks the documented schema."""
    problems = [
        f"{'.'.join(map(str, error.absolute_path)) or 'body'}: {error.message}"
        for error in _validator().iter_errors(body)
    ]
    rng = body.get("curationPref", {}).get("range")
    if rng and rng.get("startSec", 0) >= rng.get("endSec", 0):
        problems.append("curationPref.range: startSec must be less than endSec")
    if problems:
        raise InvalidCommandError("the clip-project request is invalid: " + "; ".join(problems))
