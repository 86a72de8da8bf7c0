"""The stand-in's strict check of ``POST /api/clip-projects`` bodies.

Built from OpusClip's own OpenAPI components (vendored beside this file), made strict: unknown
fields are refused, and the rules the descriptions state in prose are enforced. It is kept apart
from the pipeline's hand-written schema on purpose, so that each checks the other.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

OFFERED_DURATIONS = ([0, 30], [30, 60], [60, 90], [90, 180], [0, 90])
MAX_CLIP_SECONDS = 180  # OpusClip's own client sends "up to N seconds" as [0, N]


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items() if k not in ("example", "readOnly", "default")}
        if "$ref" in node:
            node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def _validator() -> Draft202012Validator:
    raw = json.loads((Path(__file__).with_name("opus-openapi-clip-projects.json")).read_text())
    defs = _strict(copy.deepcopy(raw["schemas"]))
    # The upload guide documents curationPref.skipCurate, which the OpenAPI components omit.
    defs["CurationPreferenceDto"]["properties"]["skipCurate"] = {"type": "boolean"}
    # What OpusClip's own client sends (opus-skills SKILL.md and api-reference.md) beyond the components.
    defs["CurationPreferenceDto"]["properties"].update(
        model={"enum": ["ClipBasic", "ClipAnything"]},
        customPrompt={"type": "string", "maxLength": 1000},
        enableAutoHook={"type": "boolean"},
    )
    # The component lists every field as required (it is also a brand template's full answer); a
    # request sets only those it changes, as OpusClip's client does.
    defs["RenderPreferenceDto"].pop("required", None)
    defs["RenderPreferenceDto"]["properties"]["quickstartConfig"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"enableRemoveFillerWords": {"type": "boolean"}},
    }
    defs["CreateClipProjectCommand"]["properties"].update(
        renderPref={"$ref": "#/$defs/RenderPreferenceDto"},
        uploadedVideoAttr={
            "type": "object",
            "additionalProperties": False,
            "properties": {"title": {"type": "string"}},
        },
    )
    schema = {"$defs": defs, "$ref": "#/$defs/CreateClipProjectCommand"}
    return Draft202012Validator(schema)


def problems(body: Any) -> list[str]:
    """Every way ``body`` breaks the documented contract (empty when it is valid)."""
    found = [f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}" for e in _validator().iter_errors(body)]
    if found:
        return found
    curation = body.get("curationPref", {})
    if "clipDurations" not in curation:  # optional in the description, but OpusClip's client says it is refused
        found.append("curationPref/clipDurations is required")
    for pair in curation.get("clipDurations", []):
        if not _offered(pair):
            found.append(f"curationPref/clipDurations: {pair} is not an offered duration")
    rng = curation.get("range")
    if rng is not None and not rng.get("startSec", 0) < rng.get("endSec", 0):
        found.append("curationPref/range: startSec must be less than endSec")
    for action in body.get("conclusionActions", []):
        needed = {"EMAIL": "email", "WEBHOOK": "url"}[action["type"]]
        if not action.get(needed):
            found.append(f"conclusionActions: a {action['type']} action needs {needed!r}")
    return found


def _offered(pair: Any) -> bool:
    """A documented bucket, or [0, N] with 1 <= N <= 180 as OpusClip's own client sends."""
    if pair in OFFERED_DURATIONS:
        return True
    whole = isinstance(pair, list) and len(pair) == 2 and all(type(n) is int for n in pair)
    return whole and pair[0] == 0 and 1 <= pair[1] <= MAX_CLIP_SECONDS
