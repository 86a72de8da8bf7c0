"""``make demo``: one video through the whole pipeline on this machine, until its clips are back.

Starts the local stack (see ``stack.py``), uploads a video (yours, or a generated sample) with
per-video preferences, shows the upload and then the pipeline's progress, checks that the bytes
OpusClip received equal the file's, and prints the final status, the project id and the clips
now in the output bucket. Exit 0 on success; 1 with the reason otherwise. Every process it
started is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote

from google.cloud import storage

from opus_pipeline import cli
from opus_pipeline.domain import states
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.manifest import manifest_name
from opus_pipeline.gcs.ledger import Ledger

from .stack import OUTPUT_BUCKET, SOURCE_BUCKET, STATE_BUCKET, LocalStack
from .videos import unique_video


def sample_video(path: Path, size: int) -> Path:
    """A real MP4 of ``size`` bytes (ffmpeg's, padded): ingest reads its duration before uploading it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(unique_video(size))
    return path


def md5_hex(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as source:
        while piece := source.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def watch(stack: LocalStack, name: str, size: int, timeout: float) -> dict:
    """Print each status change and the bytes streamed until the video reaches a final state."""
    from tqdm import tqdm

    ledger = Ledger(storage.Client(), STATE_BUCKET)
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc="streamed to OpusClip", file=sys.stderr)
    seen, deadline = None, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            records = [s.record for s in ledger.records(SOURCE_BUCKET, name) if s.record.source.name == name]
            rec = records[-1] if records else None
            uploads = stack.standin.stats()["uploads"] if stack.standin else {}
            if rec and rec.upload_id in uploads:
                bar.n = uploads[rec.upload_id]["committed"]
                bar.refresh()
            if rec and rec.state != seen:
                seen = rec.state
                tqdm.write(f"status: {rec.state}" + (f" ({rec.error})" if rec.error else ""), file=sys.stderr)
            if rec and rec.state in states.END_STATES:
                return {
                    "status": rec.state,
                    "projectId": rec.project_id,
                    "uploadId": rec.upload_id,
                    "error": rec.error,
                    "manifest": rec.manifest_uri,
                    "uploads": uploads,
                }
            time.sleep(0.2)
    finally:
        bar.close()
    raise TimeoutError(f"the video did not reach a final status within {timeout:.0f}s (last: {seen})")


def clips_in_output(name: str) -> list[dict]:
    """The clips the manifest in the output bucket lists, best first (none if there is none)."""
    obj = StorageObject(bucket=SOURCE_BUCKET, name=name, generation=0, size=0)
    blob = storage.Client().bucket(OUTPUT_BUCKET).get_blob(manifest_name(obj))
    return json.loads(blob.download_as_bytes())["clips"] if blob else []


def write_summary(path: str | None, summary: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(summary, indent=2))


def run(args: argparse.Namespace) -> int:
    root = Path(args.workdir).resolve()
    video = Path(args.video) if args.video else sample_video(root / "sample.mp4", args.sample_bytes)
    print(f"starting the local stack (logs in {root / 'stack' / 'logs'})", file=sys.stderr)
    summary: dict = {"video": str(video), "md5": md5_hex(video), "status": "starting"}
    with LocalStack(root / "stack") as stack:
        summary["pids"] = stack.pids()
        write_summary(args.summary, summary)  # early, so that an interrupted run can be checked too
        preferences = ["--genre", "Podcast", "--keywords", "demo,pipeline", "--clip-durations", "0-30,30-60"]
        upload = ["upload", str(video), f"gs://{SOURCE_BUCKET}/{video.name}", *preferences]
        cli.upload(cli.parser().parse_args(upload), storage.Client())
        result = watch(stack, video.name, video.stat().st_size, args.timeout)
        received = result.pop("uploads").get(result["uploadId"] or "", {})
        summary.update(result, receivedMd5=received.get("md5"), projects=len(stack.standin.stats()["projects"]))
        summary["clips"] = clips_in_output(video.name)
        summary["page"] = f"{stack.gcs_url}/{OUTPUT_BUCKET}/{quote(video.name)}/index.html"
        write_summary(args.summary, summary)
        report(summary)
        if args.keep and summary["status"] == states.CLIPS_READY:
            print(f"\nopen {summary['page']} to look at the clips; press Enter to stop the stack", file=sys.stderr)
            with contextlib.suppress(EOFError):
                input()
    return 0 if succeeded(summary) else failed(summary, root)


def report(summary: dict) -> None:
    print(f"\nfinal status: {summary['status']}")
    print(f"project id:   {summary.get('projectId') or '-'}")
    print(f"upload id:    {summary.get('uploadId') or '-'}")
    print(f"bytes match:  {'yes' if summary['receivedMd5'] == summary['md5'] else 'NO'} (md5 {summary['md5']})")
    print(f"manifest:     {summary.get('manifest') or '-'}")
    for clip in summary["clips"]:
        score = clip.get("score", "-")
        seconds = clip.get("durationMs", 0) / 1000
        print(f"  {seconds:6.1f}s  score {score!s:>5}  {clip.get('gcsUri', 'not copied')}  {clip.get('title', '')}")
    if summary["status"] == states.CLIPS_READY:
        print(f"clips page:   {summary['page']}")


def succeeded(summary: dict) -> bool:
    return (
        summary["status"] == states.CLIPS_READY
        and summary["receivedMd5"] == summary["md5"]
        and summary["projects"] == 1
    )


def failed(summary: dict, root: Path) -> int:
    print(f"demo failed: {summary.get('error') or 'see the logs in ' + str(root / 'stack' / 'logs')}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opus-pipeline-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="a video file to send (default: a generated sample)")
    parser.add_argument("--sample-bytes", type=int, default=40 * 1024 * 1024)
    parser.add_argument("--workdir", default=".demo")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--summary", help="also write the result as JSON to this file")
    parser.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep the stack up after the demo, until Enter, so the clips page can be opened "
        "(default: when run from a terminal)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # stop the stack on TERM as on Ctrl-C
    # Ctrl-C stops the stack also when the demo was started from a script's background job, which
    # starts with SIGINT ignored (Python then installs no KeyboardInterrupt of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; every process the demo started has been stopped", file=sys.stderr)
        return 130
    except (TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
