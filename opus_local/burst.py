"""A folder of videos at once through the local stack, under OpusClip's limits scaled down.

The stand-in enforces a requests-per-minute limit and an in-flight-project cap exactly as
OpusClip does (429, ``X-Cap-Reason: concurrent``); the pipeline is told the same limits. The run
drops ``videos`` small videos into the source bucket at once and waits until every one has its
clips back, then reports what a user and OpusClip saw: outcomes, calls refused, the most
projects ever in flight, dead letters, and the wall time against the floor the limits impose:
``max(ceil(videos / cap) × project_seconds, videos × CALLS_PER_VIDEO / rate)``. Every storage
call of the functions goes through the storage proxy with Cloud Storage's write limit (one write
a second per object, bursts of 2); ``storage`` reports what it admitted and refused.

``make bench`` runs it at 100 videos; the test suite at 30.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage
from google.cloud.storage.exceptions import DataCorruption

from opus_pipeline.domain import states
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.gcs.ledger import RECORDS_PREFIX

from .gcs_proxy import GcsProxyControl
from .stack import SOURCE_BUCKET, STATE_BUCKET, LocalStack
from .videos import unique_video
from .workdir import fresh_workdir

# upload link, project creation, one project lookup (the webhook's), one page of clips, the transcript
CALLS_PER_VIDEO = 5


@dataclass
class BurstReport:
    videos: int
    cap: int
    rate_per_minute: int
    project_seconds: float
    outcomes: dict[str, int]
    projects: int
    refused: dict[str, int]
    max_in_flight: int
    dead_letters: int
    seconds: float
    floor_seconds: float
    storage: dict[str, int]  # the storage proxy's counters: writes admitted, write_limited (429s), …
    limited_by_kind: dict[str, int]  # the write-limited 429s by kind of object (``object_kind``)
    # Where the time above the floor went: the first project's creation after the first upload, each
    # slot's turnover (a project's creation after the end of the one whose slot it took: median and
    # sum over the slots), and the last clips-ready after the last project ended.
    first_project_seconds: float = 0.0
    turnover_median_seconds: float = 0.0
    turnover_total_seconds: float = 0.0
    tail_seconds: float = 0.0

    @property
    def floor_ratio(self) -> float:
        return self.seconds / self.floor_seconds


def floor_seconds(videos: int, cap: int, rate_per_minute: int, project_seconds: float) -> float:
    return max(math.ceil(videos / cap) * project_seconds, videos * CALLS_PER_VIDEO * 60.0 / rate_per_minute)


def object_kind(name: str) -> str:
    """Which of the pipeline's objects ``bucket/name`` is: a video's record, its source object (status
    metadata), a family of shared objects (``admission/slots``, ``admission/rate``…), an output."""
    bucket, _, path = name.partition("/")
    if bucket == SOURCE_BUCKET:
        return "source object"
    if bucket != STATE_BUCKET:
        return "output"
    head = path.split("/")
    return "video record" if head[0] == "videos" else "/".join(head[:2] if head[0] == "admission" else head[:1])


def turnovers(created: list[float], cap: int, project_seconds: float) -> list[float]:
    """How long each slot stood empty: a project's creation after the end of the one ``cap`` before it
    (the one whose slot it took, when projects take ``project_seconds`` each and start in order)."""
    ordered = sorted(created)
    return [ordered[i] - (ordered[i - cap] + project_seconds) for i in range(cap, len(ordered))]


def limited_by_kind(limited: dict[str, int]) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for name, count in limited.items():
        kinds[object_kind(name)] += count
    return dict(kinds.most_common())


def _dead_letters(stack: LocalStack) -> int:
    subscriber = pubsub_v1.SubscriberClient()
    response = subscriber.pull(
        subscription=stack.subscription("clip-requests-dead"), max_messages=100, return_immediately=True, timeout=10
    )
    return len(response.received_messages)


def run_burst(
    root: Path,
    videos: int = 30,
    cap: int = 3,
    rate_per_minute: int = 300,
    project_seconds: float = 3.0,
    timeout: float = 600.0,
) -> BurstReport:
    settings = {"OPUS_MAX_PARALLEL_PROJECTS": str(cap), "OPUS_RATE_PER_MINUTE": str(rate_per_minute)}
    with LocalStack(root, settings=settings, sweep_seconds=30.0) as stack:
        stack.standin.configure(
            rateLimitPerMinute=rate_per_minute,
            concurrentProjects=cap,
            projectSeconds=project_seconds,
            clipsPerProject=1,
            clipBytes=1024,
            monthlyCreditLimit=None,  # the month's credits are credit_month.py's story
        )
        client = stack.direct_storage()  # the harness's own calls are not the functions'
        bucket = client.bucket(SOURCE_BUCKET)
        data = [unique_video() for _ in range(videos)]  # each its own bytes, made before the clock starts
        stack.storage_proxy.reset()
        start, started_at = time.monotonic(), time.time()
        for n in range(videos):
            bucket.blob(f"season/ep{n:03d}.mp4").upload_from_string(data[n], content_type="video/mp4")
        watch = _RecordWatch(client.bucket(STATE_BUCKET), f"{RECORDS_PREFIX}{SOURCE_BUCKET}/season/")
        deadline = start + timeout
        while True:
            found = watch.states()
            if sum(found[s] for s in (states.CLIPS_READY, states.FAILED)) == videos or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        seconds = time.monotonic() - start
        stats = stack.standin.stats()
        created = sorted(_created_at(p["createdAt"]) for p in stats["projects"].values())
        gaps = turnovers(created, cap, project_seconds)
        return BurstReport(
            videos=videos,
            cap=cap,
            rate_per_minute=rate_per_minute,
            project_seconds=project_seconds,
            outcomes=dict(found),
            projects=len(stats["projects"]),
            refused=stats["refused"],
            max_in_flight=stats["maxInFlight"],
            dead_letters=_dead_letters(stack),
            seconds=round(seconds, 2),
            floor_seconds=floor_seconds(videos, cap, rate_per_minute, project_seconds),
            storage=stack.storage_proxy.stats(),
            limited_by_kind=limited_by_kind(stack.storage_proxy.limited()),
            first_project_seconds=round(created[0] - started_at, 2) if created else 0.0,
            turnover_median_seconds=round(statistics.median(gaps), 3) if gaps else 0.0,
            turnover_total_seconds=round(sum(gaps), 2),
            tail_seconds=round(started_at + seconds - (created[-1] + project_seconds), 2) if created else 0.0,
        )


class _RecordWatch:
    """The videos' states, read without loading the stack it measures: each poll is one listing, and
    only a record whose generation moved since the last poll, and that had not ended, is read again
    (not every record ten times a second, a load on the emulator the functions share)."""

    def __init__(self, bucket: storage.Bucket, prefix: str) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._seen: dict[str, tuple[int, str]] = {}  # record name → (generation, state)

    def states(self) -> Counter[str]:
        for blob in self._bucket.list_blobs(prefix=self._prefix):
            generation, state = self._seen.get(blob.name, (0, ""))
            if generation == blob.generation or state in states.END_STATES:
                continue
            try:  # the generation listed: one written over since is read on the next poll
                raw = blob.download_as_bytes(if_generation_match=blob.generation)
            except (gexc.NotFound, gexc.PreconditionFailed, DataCorruption):
                continue
            self._seen[blob.name] = (blob.generation, VideoRecord.from_json(raw).state)
        return Counter(state for _, state in self._seen.values())


def _created_at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def contention(proxy: GcsProxyControl, instances: int = 8, seconds: float = 5.0) -> dict[str, float]:
    """How the shared objects behave when every instance races for them at once: ``instances``
    threads take request grants (a budget that never throttles) for ``seconds``; grants per second
    and compare-and-swap conflicts per grant, through the storage proxy's write limit (Cloud Storage
    allows about one write per second to one object; the budget's grant slots spread the writes)."""
    from opus_pipeline.gcs.rate_budget import RateLimiter

    limiters = [RateLimiter(storage.Client(), STATE_BUCKET, per_minute=10**9) for _ in range(instances)]
    lost_before = proxy.stats()["precondition_failed"]
    stop = time.monotonic() + seconds
    grants = [0] * instances

    def take(index: int) -> None:
        while time.monotonic() < stop:
            limiters[index].acquire(max_wait=0.0)
            grants[index] += 1

    threads = [threading.Thread(target=take, args=(i,)) for i in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(grants)
    conflicts = proxy.stats()["precondition_failed"] - lost_before  # each a grant slot lost to a rival
    return {
        "instances": instances,
        "grantsPerSecond": round(total / seconds, 1),
        "conflictsPerGrant": round(conflicts / max(total, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--cap", type=int, default=3)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--project-seconds", type=float, default=3.0)
    parser.add_argument("--workdir", default=".demo/burst")
    parser.add_argument("--contention", action="store_true", help="also measure racing for the shared objects")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    fresh_workdir(workdir, "burst")
    report = run_burst(workdir, args.videos, args.cap, args.rate, args.project_seconds)
    print(json.dumps({**asdict(report), "floorRatio": round(report.floor_ratio, 3)}, indent=2))
    if args.contention:
        with LocalStack(workdir / "contention") as stack:
            for instances in (1, 4, 8):
                print(json.dumps(contention(stack.storage_proxy, instances)))


if __name__ == "__main__":
    main()
