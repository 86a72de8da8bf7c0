"""``opus-pipeline``: upload a video with its preferences, see statuses and this month's credits,
retry a failed video.

Works against real GCS (Application Default Credentials) and against the emulators (their
``STORAGE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST`` variables). Errors are one line, exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import mimetypes
import os
import socket
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud import storage

from opus_pipeline.config import Settings
from opus_pipeline.domain import publishing, states
from opus_pipeline.domain.credits import Usage
from opus_pipeline.domain.messages import ClipRequest, SweepTick
from opus_pipeline.domain.preferences import PREFERENCES, Preferences, parse_texts, to_metadata
from opus_pipeline.domain.record import Stored, object_from_key
from opus_pipeline.errors import CliError, PermanentError, TransientError
from opus_pipeline.gcs.credit_ledger import CreditLedger
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.open_index import OpenProjects
from opus_pipeline.gcs.publish_plans import PublishPlans
from opus_pipeline.opus.client import OpusClient
from opus_pipeline.pubsub.publish import Publisher
from opus_pipeline.usecases import publish as publish_plan
from opus_pipeline.usecases.redrive import retry_video

UPLOAD_CHUNK = 8 * 1024 * 1024
STORAGE_EMULATOR = "STORAGE_EMULATOR_HOST"
PUBSUB_EMULATOR = "PUBSUB_EMULATOR_HOST"
LOGIN = "run `gcloud auth application-default login`"


def shown(text: object) -> str:
    """``text`` safe to write to a terminal: object names, errors and ids come from outside, and a
    control or format character in one (ESC, CSI, a bidi override) would be a terminal escape or
    hide what follows, so each is written as its ``\\x..``/``\\u....`` escape instead (and a
    backslash as ``\\x5c``, so that an escape always means the character)."""
    return "".join(_escaped(c) if c == "\\" or unicodedata.category(c) in _UNSHOWN else c for c in str(text))


_UNSHOWN = ("Cc", "Cf", "Zl", "Zp")


def _escaped(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


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
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=shown(label), file=sys.stderr)

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
    """The upload's preferences; a bad value is refused naming its flag, before a byte is sent."""
    return parse_texts((pref, pref.flag, raw) for pref in PREFERENCES if (raw := getattr(args, pref.field)) is not None)


PUBLISH_FLAGS = {key: "--" + key.removeprefix("opus-") for key in publishing.PUBLISH_KEYS}


def publishing_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The upload's ``opus-publish*`` metadata (each flag sets its key), its syntax checked before a
    byte is sent; the accounts are checked against OpusClip's list by ingest, which holds the API key."""
    given = {key: raw for key, flag in PUBLISH_FLAGS.items() if (raw := getattr(args, _dest(flag))) is not None}
    publishing.choice(given)
    return given


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def upload(args: argparse.Namespace, client: storage.Client) -> int:
    """Validate preferences locally, then upload with them as custom metadata."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    target = GcsPath.parse(args.destination)
    name = target.name if target.name and not target.name.endswith("/") else target.name + path.name
    metadata = to_metadata(preferences_from_args(args))
    metadata.update(publishing_from_args(args))
    blob = client.bucket(target.bucket).blob(name, chunk_size=UPLOAD_CHUNK)
    blob.metadata = metadata or None
    size = path.stat().st_size
    with open(path, "rb") as source:
        progress = _Progress(source, size, name)
        try:
            blob.upload_from_file(progress, size=size, content_type=_content_type(path), checksum="md5")
        finally:
            progress.close()
    print(shown(f"uploaded gs://{target.bucket}/{name} ({size} bytes, generation {blob.generation})"))
    return 0


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _row(stored: Stored) -> dict[str, Any]:
    rec = stored.record
    return {
        "object": rec.source.uri,
        "generation": str(rec.source.generation),
        "status": rec.state,
        "waitingFor": rec.waiting_for if rec.state == states.WAITING else None,
        "size": rec.source.size,
        "durationSeconds": rec.duration_seconds,
        "credits": rec.credits,
        "uploaded": rec.committed,
        "uploadId": rec.upload_id,
        "projectId": rec.project_id,
        "stage": rec.stage,
        "clips": rec.clip_count,
        "manifest": rec.manifest_uri,
        "error": rec.error,
        "updated": rec.updated_at,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    columns = (
        "object",
        "status",
        "size",
        "uploaded",
        "credits",
        "stage",
        "clips",
        "projectId",
        "manifest",
        "updated",
        "error",
    )
    # A waiting video says what for: a project slot, or this month's credits.
    labelled = [{**row, "status": "/".join(filter(None, (row["status"], row.get("waitingFor"))))} for row in rows]
    table = [[shown(row[c] if row[c] is not None else "-") for c in columns] for row in labelled]
    widths = [min(60, max(len(c), *(len(r[i]) for r in table))) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in table]
    return "\n".join(lines)


def status(args: argparse.Namespace, client: storage.Client) -> int:
    """Print the videos under a path as a table (or JSON); with ``--watch``, until each has ended."""
    target = GcsPath.parse(args.path)
    ledger = Ledger(client, _state_bucket(args))

    def rows() -> list[dict[str, Any]]:
        found = [_row(s) for s in ledger.records(target.bucket, target.name)]
        return sorted(found, key=lambda r: r["updated"] or "", reverse=True)

    if args.json:
        print(json.dumps(rows(), indent=2))
        return 0
    empty = shown(f"no videos under gs://{target.bucket}/{target.name}")
    if not args.watch:
        listed = rows()
        print(_table(listed) if listed else empty)
        return 0
    return _watch(rows, empty, args.interval)


def _watch(rows: Callable[[], list[dict[str, Any]]], empty: str, interval: float) -> int:
    """Redraw the table when it changes until every listed video is in an end state (or Ctrl-C)."""
    shown = None
    while True:
        listed = rows()
        text = _table(listed) if listed else empty
        if text != shown:
            # On a terminal the table is redrawn in place; piped, each change is printed below the last.
            print(("\x1b[H\x1b[2J" if sys.stdout.isatty() else "\n" if shown else "") + text, flush=True)
            shown = text
        if listed and all(row["status"] in states.END_STATES for row in listed):
            return 0
        time.sleep(interval)


def usage(args: argparse.Namespace, client: storage.Client) -> int:
    """This month's credits: OpusClip's numbers (with ``OPUS_API_KEY``), what admitted videos have
    reserved, what this pipeline created, and one line per video waiting for credits."""
    target = GcsPath.parse(args.path) if args.path else None
    book = CreditLedger(client, _state_bucket(args)).read()
    waiting = [w for w in book.waiting if target is None or w["key"].startswith(f"{target.bucket}/{target.name}")]
    opus = _opus_usage()
    if args.json:
        numbers = None if opus is None else {k: v for k, v in dataclasses.asdict(opus).items() if k != "seen_at"}
        doc = {"month": book.month, "opus": numbers, "reserved": book.reserved, "created": book.created}
        print(json.dumps({**doc, "waiting": waiting}, indent=2))
        return 0
    if opus is None:
        print("OpusClip's numbers: set OPUS_API_KEY (and OPUS_API_BASE_URL) to see them")
    elif opus.uncapped:
        print("OpusClip: this workspace is uncapped")
    else:
        print(
            f"OpusClip this month: {opus.used} of {opus.limit} credits used, {opus.remaining} remaining, "
            f"resets {opus.reset_at or 'on the 1st (UTC)'}"
        )
    reserved = sum(book.reserved.values())
    print(f"reserved by {len(book.reserved)} admitted videos not yet created: {reserved} credits")
    print(f"created by this pipeline in {book.month or 'this month'}: {book.created} credits")
    print(f"waiting for credits: {len(waiting)} videos, {sum(w['credits'] for w in waiting)} credits")
    for entry in waiting:
        source = object_from_key(entry["key"])
        since = datetime.fromtimestamp(entry["since"], UTC).isoformat(timespec="seconds")
        print(shown(f"  {source.uri}#{source.generation}  {entry['credits']} credits  waiting since {since}"))
    return 0


def _opus_usage() -> Usage | None:
    client = _opus_client()
    return None if client is None else client.usage()


def _opus_client() -> OpusClient | None:
    """OpusClip's API with ``OPUS_API_KEY`` (and ``OPUS_API_BASE_URL``); None without a key."""
    key = os.environ.get("OPUS_API_KEY", "").strip()
    if not key:
        return None
    base_url = os.environ.get("OPUS_API_BASE_URL", "").strip() or Settings.opus_api_base_url
    return OpusClient(base_url, key, org_id=os.environ.get("OPUS_ORG_ID", "").strip() or None)


def _state_bucket(args: argparse.Namespace) -> str:
    bucket = args.state_bucket or os.environ.get("STATE_BUCKET")
    if not bucket:
        raise CliError("name the state bucket with --state-bucket or STATE_BUCKET")
    return bucket


def retry(args: argparse.Namespace, client: storage.Client) -> int:
    """Re-drive a failed video: ask for the project again, or deliver the object again."""
    target = GcsPath.parse(args.path, need_name=True)
    state_bucket = _state_bucket(args)
    ledger = Ledger(client, state_bucket)

    def publish(request: ClipRequest) -> None:
        topic = args.topic or os.environ.get("CLIP_REQUESTS_TOPIC")
        if not topic:
            raise CliError("name the clip-requests topic with --topic or CLIP_REQUESTS_TOPIC")
        Publisher().publish(topic, request, "the clip request")

    retried = retry_video(
        client,
        ledger,
        target.bucket,
        target.name,
        publish,
        new_project=args.new_project,
        opus=_opus_client(),
        open_projects=OpenProjects(client, state_bucket),
    )
    print(shown(retried.detail))
    return 0


def publish(args: argparse.Namespace, client: storage.Client) -> int:
    """Approve or cancel a publishing plan: the plan changes here, by compare-and-swap, and the
    sweeper (which holds the API key) carries it out, ticked now on ``SWEEP_TICKS_TOPIC``."""
    target = GcsPath.parse(args.path, need_name=True)
    output = args.output_bucket or os.environ.get("OUTPUT_BUCKET")
    if not output:
        raise CliError("name the output bucket with --output-bucket or OUTPUT_BUCKET")
    topic = args.topic or os.environ.get("SWEEP_TICKS_TOPIC")

    def tick(message: SweepTick) -> bool:
        if not topic:
            return False
        Publisher().publish(topic, message, "the sweep tick")
        return True

    plans = PublishPlans(client, output, _state_bucket(args))
    when = datetime.now(UTC).isoformat(timespec="seconds")
    decide = publish_plan.approve if args.approve else publish_plan.cancel
    print(shown(decide(plans, target.bucket, target.name, tick, when).detail))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line like every other error."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="opus-pipeline", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="upload a video with its OpusClip preferences")
    up.add_argument("file")
    up.add_argument("destination", help="gs://BUCKET[/NAME]")
    for pref in PREFERENCES:
        up.add_argument(pref.flag, dest=pref.field, metavar=pref.suffix.upper(), help=f"{pref.help} (sets {pref.key})")
    for key, flag in PUBLISH_FLAGS.items():
        up.add_argument(
            flag, dest=_dest(flag), metavar=key.removeprefix("opus-").upper(), help=f"sets {key} (docs/publishing.md)"
        )
    up.set_defaults(run=upload, emulators=(STORAGE_EMULATOR,))
    st = sub.add_parser("status", help="list videos and their statuses")
    st.add_argument("path", help="gs://BUCKET[/PREFIX]")
    output = st.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--watch", action="store_true", help="refresh until every video has ended (or Ctrl-C)")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    st.add_argument("--state-bucket")
    st.set_defaults(run=status, emulators=(STORAGE_EMULATOR,))
    us = sub.add_parser("usage", help="this month's credits and the videos waiting for them")
    us.add_argument("path", nargs="?", help="gs://BUCKET[/PREFIX]: only the videos waiting there")
    us.add_argument("--json", action="store_true")
    us.add_argument("--state-bucket")
    us.set_defaults(run=usage, emulators=(STORAGE_EMULATOR,))
    rt = sub.add_parser("retry", help="re-drive a failed video without creating duplicates")
    rt.add_argument("path", help="gs://BUCKET/NAME")
    rt.add_argument("--state-bucket")
    rt.add_argument("--topic", help="projects/P/topics/T (default: CLIP_REQUESTS_TOPIC)")
    rt.add_argument(
        "--new-project",
        action="store_true",
        help="ask OpusClip for a new project even though one may exist (stalled, or a create call unanswered): "
        "spends its credits again. Without it, the existing project is looked at first (needs OPUS_API_KEY)",
    )
    rt.set_defaults(run=retry, emulators=(STORAGE_EMULATOR, PUBSUB_EMULATOR))
    pb = sub.add_parser("publish", help="approve or cancel a video's publishing plan (docs/publishing.md)")
    decision = pb.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true", help="carry the plan out (again: changes nothing)")
    decision.add_argument("--cancel", action="store_true", help="send nothing more, delete the schedules not yet due")
    pb.add_argument("path", help="gs://SOURCE/NAME")
    pb.add_argument("--output-bucket", help="default: OUTPUT_BUCKET")
    pb.add_argument("--state-bucket")
    pb.add_argument("--topic", help="projects/P/topics/T (default: SWEEP_TICKS_TOPIC)")
    pb.set_defaults(run=publish, emulators=(STORAGE_EMULATOR, PUBSUB_EMULATOR))
    return root


def _check_emulators(names: Sequence[str]) -> None:
    """Fail at once when an emulator variable names a port nobody listens on (the clients would retry for minutes)."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        url = urlsplit(value if "://" in value else "//" + value)
        try:
            socket.create_connection((url.hostname or "localhost", url.port or 80), timeout=3).close()
        except OSError:
            raise CliError(
                f"nothing answers at {name}={value}: start the local stack (`make up`, then its `export` lines), "
                f"or unset {name} to use Google Cloud"
            ) from None


def _unreachable() -> str:
    emulator = os.environ.get(STORAGE_EMULATOR)
    if emulator:
        return f"cannot reach the storage emulator at {emulator}: is the local stack running (`make up`)?"
    return "cannot reach Google Cloud: check the network connection"


def _explain(exc: Exception) -> str:
    """What went wrong and what to do, for the errors a user can meet."""
    detail = exc.args[0] if exc.args else exc  # google.auth puts the words first, then the response
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return (
            f"no usable Google Cloud credentials ({detail}): {LOGIN}, "
            f"or set {STORAGE_EMULATOR} (and {PUBSUB_EMULATOR}) to use the emulators"
        )
    if isinstance(exc, auth_exceptions.RefreshError):
        return f"Google Cloud refused your credentials ({detail}): {LOGIN} again"
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return f"could not authenticate with Google Cloud ({detail}): check the network, then {LOGIN}"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return _unreachable()
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"Google Cloud refused the request: {exc.message}"
    if isinstance(exc, gexc.RetryError):
        return f"{_unreachable()} (gave up retrying: {exc.cause or exc})"
    if isinstance(exc, TimeoutError):
        return f"no answer in time ({exc or 'timed out'}): check the network, or that the local stack is running"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        _check_emulators(args.emulators)
        return args.run(args, storage.Client())
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except (
        CliError,
        PermanentError,
        TransientError,
        auth_exceptions.GoogleAuthError,
        requests.RequestException,
        gexc.GoogleAPIError,
        OSError,
    ) as exc:
        _fail(_explain(exc))
    return 1


def _fail(message: str) -> None:
    print("opus-pipeline: " + shown(" ".join(message.split())), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
