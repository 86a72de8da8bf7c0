"""A folder that costs twice the month's credits, through the local stack: the first half comes back,
the rest waits for credits (nothing failed, nothing dead-lettered, nothing uploaded), and once the
stand-in resets the month the sweeper admits the rest and every video comes back, each uploaded once.

The stand-in bills each project by the duration of its upload (every video here is 2 seconds: the
10-credit minimum) and refuses a project over its monthly limit with OpusClip's 403; the pipeline
never lets it come to that, because it estimates each video before the upload.

``python -m opus_local.credit_month`` prints the report; the test suite runs it at 30 videos.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from google.cloud import pubsub_v1, storage

from opus_pipeline.domain import states
from opus_pipeline.domain.credits import WAITING_FOR_CREDITS
from opus_pipeline.gcs.ledger import Ledger

from .stack import SOURCE_BUCKET, STATE_BUCKET, LocalStack
from .videos import unique_video

WAITING_CREDITS = f"{states.WAITING}/{WAITING_FOR_CREDITS}"


@dataclass
class CreditMonthReport:
    videos: int
    monthly_limit: int
    before_reset: dict[str, int]  # outcomes once the month's credits are spent
    after_reset: dict[str, int]
    uploads_before_reset: int  # upload sessions the stand-in saw while the rest waited
    uploads: int  # upload sessions the stand-in saw in all
    bytes_sent: int  # bytes it received, against the folder's
    folder_bytes: int
    credits_used: int
    dead_letters: int
    seconds: float


def _outcomes(ledger: Ledger) -> Counter[str]:
    found: Counter[str] = Counter()
    for stored in ledger.records(SOURCE_BUCKET, "month/"):
        rec = stored.record
        found[
            WAITING_CREDITS if rec.state == states.WAITING and rec.waiting_for == WAITING_FOR_CREDITS else rec.state
        ] += 1
    return found


def _until(ledger: Ledger, videos: int, settled: frozenset[str], deadline: float) -> Counter[str]:
    """Outcomes once every video is in a ``settled`` state (or at the deadline)."""
    while True:
        found = _outcomes(ledger)
        if sum(found[s] for s in settled) == videos or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _dead_letters(stack: LocalStack) -> int:
    response = pubsub_v1.SubscriberClient().pull(
        subscription=stack.subscription("clip-requests-dead"), max_messages=100, return_immediately=True, timeout=10
    )
    return len(response.received_messages)


def run_credit_month(
    root: Path, videos: int = 30, monthly_limit: int = 150, project_seconds: float = 1.0, timeout: float = 300.0
) -> CreditMonthReport:
    settings = {"OPUS_MAX_PARALLEL_PROJECTS": "10"}
    with LocalStack(root, settings=settings, sweep_seconds=2.0) as stack:
        standin = stack.standin
        standin.configure(
            monthlyCreditLimit=monthly_limit, projectSeconds=project_seconds, clipsPerProject=1, clipBytes=1024
        )
        client = storage.Client()
        bucket, ledger = client.bucket(SOURCE_BUCKET), Ledger(client, STATE_BUCKET)
        start = time.monotonic()
        folder = 0
        for n in range(videos):
            data = unique_video()
            folder += len(data)
            bucket.blob(f"month/talk{n:03d}.mp4").upload_from_string(data, content_type="video/mp4")
        spent = frozenset({states.CLIPS_READY, states.FAILED, WAITING_CREDITS})
        before = _until(ledger, videos, spent, start + timeout)
        uploads_before = len(standin.stats()["uploads"])
        standin.new_month()
        after = _until(ledger, videos, frozenset({states.CLIPS_READY, states.FAILED}), time.monotonic() + timeout)
        stats = standin.stats()
        return CreditMonthReport(
            videos=videos,
            monthly_limit=monthly_limit,
            before_reset=dict(before),
            after_reset=dict(after),
            uploads_before_reset=uploads_before,
            uploads=len(stats["uploads"]),
            bytes_sent=stats["bytesReceived"],
            folder_bytes=folder,
            credits_used=stats["creditsUsed"],
            dead_letters=_dead_letters(stack),
            seconds=round(time.monotonic() - start, 2),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--limit", type=int, default=150, help="the stand-in's monthly credits")
    parser.add_argument("--workdir", default=".demo/credit-month")
    args = parser.parse_args()
    report = run_credit_month(Path(args.workdir).resolve(), args.videos, args.limit)
    print(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    main()
