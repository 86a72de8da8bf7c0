"""Where publishing plans live: ``gs://OUTPUT/<name>/publish.json`` beside the manifest, changed only
by the one compare-and-swap (``gcs/cas.py``), and the sweeper's to-do list of plans with work left,
one empty marker per video in ``STATE_BUCKET`` (``publish/<key>``), so a pass lists the plans that
need it, not every video ever published.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import storage

from opus_pipeline import logs
from opus_pipeline.domain import manifest
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import object_from_key
from opus_pipeline.gcs.cas import STORAGE_TRANSIENT, CasObject, Edit, listing, storage_trouble

MARKER_PREFIX = "publish/"
R = TypeVar("R")
Plan = dict[str, Any]


def plan_name(source: StorageObject) -> str:
    return f"{manifest.output_prefix(source)}/publish.json"


def _json(raw: bytes | None) -> Plan | None:
    return json.loads(raw) if raw else None


def _bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")


class PublishPlans:
    def __init__(self, client: storage.Client, output_bucket: str, state_bucket: str) -> None:
        self._output = client.bucket(output_bucket)
        self._state = client.bucket(state_bucket)
        self.output_bucket = output_bucket

    def uri(self, source: StorageObject) -> str:
        return f"gs://{self.output_bucket}/{plan_name(source)}"

    def read(self, source: StorageObject) -> Plan | None:
        return _json(CasObject(self._output, plan_name(source)).read().raw)

    def change(self, source: StorageObject, edit: Callable[[Plan | None], tuple[R, Plan | None]]) -> R:
        """Apply ``edit`` to the plan (None: none yet) and write what it returns (None: nothing), by CAS."""

        def on_bytes(raw: bytes | None) -> Edit[R]:
            result, plan = edit(_json(raw))
            return Edit(result, None if plan is None else _bytes(plan))

        return CasObject(self._output, plan_name(source)).change(on_bytes)[0]

    def change_manifest(self, source: StorageObject, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> dict | None:
        """Rewrite ``clips.json`` through ``edit`` by CAS; the new manifest (None: there is none)."""

        def on_bytes(raw: bytes | None) -> Edit[dict | None]:
            if raw is None:
                return Edit(None)
            doc = edit(json.loads(raw))
            return Edit(doc, _bytes(doc))

        return CasObject(self._output, manifest.manifest_name(source)).change(on_bytes)[0]

    # -- the to-do list ---------------------------------------------------------------------

    def mark(self, source: StorageObject) -> None:
        """The plan has work left (sends, or a cancellation): the sweeper's passes look at it."""
        try:
            self._state.blob(MARKER_PREFIX + source.key).upload_from_string(b"", content_type="text/plain")
        except STORAGE_TRANSIENT as exc:
            raise storage_trouble(exc, "mark a publishing plan") from None

    def unmark(self, source: StorageObject) -> None:
        with contextlib.suppress(gexc.NotFound):
            self._state.blob(MARKER_PREFIX + source.key).delete()

    def marked(self) -> list[StorageObject]:
        """The videos whose plan has work left; a marker naming no video is skipped with a log line."""
        found = []
        for item in listing(self._state, MARKER_PREFIX):
            try:
                found.append(object_from_key(item.name[len(MARKER_PREFIX) :]))
            except ValueError:
                logs.warning(f"publishing: skipped the marker {item.name!r}, which names no video; delete it")
        return found
