"""``opus-pipeline``: upload a video with its preferences, see statuses, retry a failed video.

Works against real GCS (Application Default Credentials) and against the emulators (their
``STORAGE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST`` variables). Errors are one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage

from .errors import PermanentError
from .ledger import Ledger, Stored
from .messages import ClipRequest
from .preferences import Preferences, parse_metadata, to_metadata
from .retry import retry_video

UPLOAD_CHUNK = 8 * 1024 * 1024


class CliError(Exception):
    """A one-line message for the user."""


@dataclass(frozen=True)
class GcsPath:
    bucket: str
    name: str

    @classmethod
    def parse(cls, text: str, need_name: bool = False) -> GcsPath:
        if not text.startswith("gs://") or not text[5:].split("/", 1)[0]:
            raise CliError(f"{text!r} is not a gs://BUCKET[/NAME] path")
        bucket, _, name = text[5:].partition("/")
        if need_name and not name:
            raise CliError(f"{text!r} names no object; use gs://BUCKET/NAME")
        return cls(bucket, name)


class _Progress:
    """A file wrapper that advances a progress bar as the client reads it."""

    def __init__(self, source: BinaryIO, total: int, label: str) -> None:
        from tqdm import tqdm

        self._source = source
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._bar.update(len(data))
        return data

    def tell(self) -> int:
        return self._source.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._source.seek(offset, whence)
        self._bar.n = position
        self._bar.refresh()
        return position

    def close(self) -> None:
        self._bar.close()


def preferences_from_args(args: argparse.Namespace) -> Preferences:
    raw = {
        "opus-genre": args.genre,
        "opus-topic-keywords": args.keywords,
        "opus-clip-durations": args.clip_durations,
        "opus-range": args.range,
        "opus-source-lang": args.source_lang,
        "opus-brand-template-id": args.brand_template,
        "opus-skip-curate": args.skip_curate,
    }
    return parse_metadata({k: v for k, v in raw.items() if v is not None})


def upload(args: argparse.Namespace, client: storage.Client) -> int:
    """Validate preferences locally, then upload with them as custom metadata."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    target = GcsPath.parse(args.destination)
    name = target.name if target.name and not target.name.endswith("/") else target.name + path.name
    metadata = to_metadata(preferences_from_args(args))
    blob = client.bucket(target.bucket).blob(name, chunk_size=UPLOAD_CHUNK)
    blob.metadata = metadata or None
    size = path.stat().st_size
    with open(path, "rb") as source:
        progress = _Progress(source, size, name)
        try:
            blob.upload_from_file(progress, size=size, content_type=_content_type(path), checksum="md5")
        finally:
            progress.close()
    print(f"uploaded gs://{target.bucket}/{name} ({size} bytes, generation {blob.generation})")
    return 0


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _row(stored: Stored) -> dict[str, Any]:
    rec = stored.record
    return {
        "object": rec.source.uri,
        "generation": str(rec.source.generation),
        "status": rec.state,
        "size": rec.source.size,
        "uploaded": rec.committed,
        "uploadId": rec.upload_id,
        "projectId": rec.project_id,
        "error": rec.error,
        "updated": rec.updated_at,
    }


def status(args: argparse.Namespace, client: storage.Client) -> int:
    target = GcsPath.parse(args.path)
    rows = [_row(s) for s in Ledger(client, _state_bucket(args)).records(target.bucket, target.name)]
    rows.sort(key=lambda r: r["updated"] or "", reverse=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no videos under gs://{target.bucket}/{target.name}")
        return 0
    columns = ("object", "status", "size", "uploadId", "projectId", "updated", "error")
    table = [[str(row[c] if row[c] is not None else "-") for c in columns] for row in rows]
    widths = [min(60, max(len(c), *(len(r[i]) for r in table))) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in table:
        print("  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _state_bucket(args: argparse.Namespace) -> str:
    bucket = args.state_bucket or os.environ.get("STATE_BUCKET")
    if not bucket:
        raise CliError("name the state bucket with --state-bucket or STATE_BUCKET")
    return bucket


def retry(args: argparse.Namespace, client: storage.Client) -> int:
    """Re-drive a failed video: ask for the project again, or deliver the object again."""
    target = GcsPath.parse(args.path, need_name=True)
    ledger = Ledger(client, _state_bucket(args))

    def publish(request: ClipRequest) -> None:
        topic = args.topic or os.environ.get("CLIP_REQUESTS_TOPIC")
        if not topic:
            raise CliError("name the clip-requests topic with --topic or CLIP_REQUESTS_TOPIC")
        pubsub_v1.PublisherClient().publish(topic, request.encode(), **request.attributes()).result(timeout=60)

    print(retry_video(client, ledger, target.bucket, target.name, publish).detail)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="opus-pipeline", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload a video with its OpusClip preferences")
    up.add_argument("file")
    up.add_argument("destination", help="gs://BUCKET[/NAME]")
    up.add_argument("--genre")
    up.add_argument("--keywords", help="comma-separated topic keywords")
    up.add_argument("--clip-durations", help="e.g. 0-30,30-60")
    up.add_argument("--range", help="START-END seconds")
    up.add_argument("--source-lang", help="auto or an ISO-639 code")
    up.add_argument("--brand-template", help="brand template id")
    up.add_argument("--skip-curate", choices=("true", "false"))
    up.set_defaults(run=upload)
    st = sub.add_parser("status", help="list videos and their statuses")
    st.add_argument("path", help="gs://BUCKET[/PREFIX]")
    st.add_argument("--json", action="store_true")
    st.add_argument("--state-bucket")
    st.set_defaults(run=status)
    rt = sub.add_parser("retry", help="re-drive a failed video without creating duplicates")
    rt.add_argument("path", help="gs://BUCKET/NAME")
    rt.add_argument("--state-bucket")
    rt.add_argument("--topic", help="projects/P/topics/T (default: CLIP_REQUESTS_TOPIC)")
    rt.set_defaults(run=retry)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args, storage.Client())
    except (CliError, PermanentError) as exc:
        print(f"opus-pipeline: {exc}", file=sys.stderr)
    except gexc.GoogleAPICallError as exc:
        print(f"opus-pipeline: Google Cloud refused the request: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"opus-pipeline: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
