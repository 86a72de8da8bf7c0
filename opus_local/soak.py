"""Fault soak: seeded schedules of faults, each sending one video through every function.

A schedule is drawn from ``random.Random(seed)`` alone, so a seed names it for good: the video's
size and bytes, the faults the OpusClip stand-in injects (connection drops at random byte offsets,
bursts of 503 and of 429 with ``Retry-After`` on every endpoint, a session keeping fewer bytes than
sent, an expiring session, lost, duplicated and late webhooks, failing clip copies), the ingest
process killed mid-stream, and how often (and how concurrently) the finalize event and the clip
request are delivered. It runs against one shared local stack (``LocalStack``: the emulators, the
stand-in, every function in its own functions-framework process) and checks, from the outside,
what the pipeline promises:

- exactly one complete upload at the stand-in, byte-exact (its md5 is the file's);
- exactly one clip project, of that upload, whatever OpusClip answered: the stand-in's project list
  shows at most one project per upload (a create call may be acted on and then its answer dropped,
  502ed, garbled or emptied, or stamped with an odd ``X-RateLimit-Reset``; a project may stall and
  move on);
- one manifest ``gs://OUTPUT/<name>/clips.json`` listing every clip, each copied byte-exact
  (md5 of the stand-in's file) and downloaded exactly once;
- bytes re-sent within ``resend_bound``;
- no API key, webhook token or session URL in any log line.

This harness plays Eventarc and Pub/Sub itself where it needs finer control than the relay: it
POSTs the finalize CloudEvent 1–3 times (some at once) and redelivers until acknowledged, as
``RETRY_POLICY_RETRY`` does; it POSTs extra copies of the clip request next to the push
subscription's own delivery, as Pub/Sub's at-least-once delivery may; and it plays Cloud
Scheduler, ticking a sweeper whose clock runs ``SWEEPER_AHEAD_SECONDS`` ahead (see
``serve_sweeper``). Every storage call of the functions goes through the storage proxy
(``gcs_proxy.py``): Cloud Storage's write limit of one write a second per object (bursts of 2),
and ``STORAGE_FAULTS`` of the calls (state records, admission objects, source reads, clip copies,
metadata patches) answered 503 or 429, or cut before or part way through the answer; this harness
checks around it (``LocalStack.direct_storage``). ``python -m opus_local.soak --schedules 200``
prints the table the README shows.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from cloudevents.conversion import to_binary

from opus_pipeline.domain import states
from opus_pipeline.domain.creation import MAX_CREATE_ATTEMPTS
from opus_pipeline.opus.resumable import FIRST_PUT_CHUNKS
from opus_pipeline.usecases.conclude import FAILED_CONCLUSION_SECONDS

from . import emulators
from .relay import finalized_event, push_body
from .stack import FUNCTIONS, OUTPUT_BUCKET, STATE_BUCKET, LocalStack
from .videos import SALT_BYTES, smallest_video, unique_video
from .workdir import fresh_workdir

GRANULARITY = 256 * 1024
CHUNK = 2 * GRANULARITY  # two granules, so that a session keeping fewer bytes can keep some of a chunk
# Up to one and a half first requests (``resumable.FIRST_PUT_CHUNKS`` chunks each): a video longer than
# the first request is sent in two, so a request can end short of the video (and keep fewer bytes).
MAX_CHUNKS = 6
SOURCE_BUCKET = "soak-videos"  # not the stack's "videos": no relay delivers its events, this harness does
# A killed invocation blocks the redelivery this long. Not shorter: a renewal is a write of the
# record, which Cloud Storage's write rate (and the storage faults) can hold back a second or more,
# and issue 17 saw a 3 s lease lapse under a live holder that way.
LEASE_SECONDS = 6
PROJECT_SECONDS = 0.3
RENDER_WAIT_SECONDS = 2  # CLIP_RENDER_WAIT_SECONDS: a clip that never renders (``Plan.stuck_render``) is given up
SCHEDULE_SECONDS = 120.0  # every wait of a schedule ends by then
TICK_SECONDS = 0.1  # ticks overlap the sweeps they start, the webhook's conclusion and each other
# The sweeper looks at a project first 60 s after its creation (``states.next_check_seconds``). Its
# clock runs this far ahead so that a soak does not wait a minute per lost webhook; it stays below
# what every 120 s lease has left after a renewal (renewed each 40 s), so the sweeper never sees a
# live lease as lapsed. It is only ticked once the project has ended: a look at a running project
# would put the next one 60 s away on the real clock.
SWEEPER_AHEAD_SECONDS = 70.0
# OpusClip endpoints that answer the API's and the session's calls, and the clip files.
API_ENDPOINTS = ("upload-links", "start", "clip-projects", "project-get", "exportable-clips", "media")
COPY_ATTEMPTS = 3  # conclusion.COPY_ATTEMPTS: more media failures in a row than this leave a clip uncopied
# What OpusClip (or a proxy before it) may answer a create call it acted on, and odd X-RateLimit-Reset
# values (epoch milliseconds, words, a negative number) stamped on an answer.
AFTER_CREATE = {
    "drop": {"kind": "drop"},
    "502": {"kind": "status", "status": 502, "body": {"message": "Bad Gateway"}},
    "empty 200": {"kind": "status", "status": 200},
    "garbled 200": {"kind": "garble"},
}
ODD_RESETS = ("1796083200000", "soon", "-1")
STORAGE_FAULTS = 0.02  # the share of the functions' storage calls the proxy fails, split evenly among:
STORAGE_FAULT_KINDS = {
    "p_503": "storage 503",
    "p_429": "storage 429",
    "p_drop": "storage drop",
    "p_drop_mid": "storage cut",
}
# the proxy's counter of each (and of its write limit's refusals), for the table
STORAGE_COUNTERS = {
    "injected_503": "storage 503",
    "injected_429": "storage 429",
    "dropped": "storage drop",
    "dropped_mid": "storage cut",
    "write_limited": "storage write limit (429)",
}


# -- the plan ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything a seed decides. ``faults`` are the stand-in's fault specs in queue order: the
    faults of one endpoint apply one after the other, each after skipping ``skip`` calls."""

    seed: int
    size: int
    clips: int
    clip_bytes: int
    faults: list[dict[str, Any]] = field(default_factory=list)
    crash_at_chunk_call: int | None = None  # SIGKILL while the n-th upload request is held by the stand-in
    finalize_copies: int = 1
    finalize_concurrent: bool = False
    request_copies: int = 1  # the push subscription's delivery and this many less one more
    request_concurrent: bool = False
    sweep_after: float = 0.0  # seconds after the project ended before the sweeper ticks
    stuck_render: bool = False  # the best clip never finishes rendering: concluded uncopied after the wait
    stall_resume: float | None = None  # the project stalls, then moves on to COMPLETE this many seconds later
    opaque_sources: bool = False  # projects' sourceId is OpusClip's own id, not the upload's: found by title

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _draw_size(rng: random.Random) -> int:
    """The smallest video, under a chunk, whole chunks, or whole chunks and a ragged tail."""
    shape = rng.choice(("one", "small", "whole", "ragged", "ragged"))
    smallest = smallest_video() + SALT_BYTES
    if shape == "one":
        return smallest
    if shape == "small":
        return rng.randint(smallest + 1, CHUNK - 1)
    if shape == "whole":
        return rng.randint(1, MAX_CHUNKS) * CHUNK
    return rng.randint(1, MAX_CHUNKS - 1) * CHUNK + rng.randint(1, CHUNK - 1)


def _status_fault(rng: random.Random, endpoint: str, status: int, times: int, skip: int = 0) -> dict[str, Any]:
    fault: dict[str, Any] = {"endpoint": endpoint, "kind": "status", "status": status, "times": times, "skip": skip}
    if status == 429:
        fault["headers"] = {"Retry-After": str(rng.choice((1, 1, 2)))}
    return fault


def _burst(rng: random.Random) -> int:
    return rng.choice((1, 1, 2, 3))


def _sure_requests(size: int) -> int:
    """Upload requests a clean upload of ``size`` bytes makes: the first carries at most
    ``FIRST_PUT_CHUNKS`` chunks, and on loopback the measured throughput sends the rest in one."""
    return 1 if size <= FIRST_PUT_CHUNKS * CHUNK else 2


def _session_faults(rng: random.Random, size: int, crash: bool) -> tuple[list[dict], int | None]:
    """Upload-request ("chunk") and status-query faults placed only at calls that are sure to happen.

    ``_sure_requests`` PUTs always happen; each 503/429/drop/expire answer adds at least one more
    (the request is sent again), so a later fault may sit that much further. A kept-fewer or
    crashed request may add none (the last request cannot keep fewer; a killed PUT may still land
    whole). Status queries happen after each failed request or query and after a crash."""
    kinds = [rng.choice(("drop", "503", "429", "keep_fewer", "expire")) for _ in range(rng.choice((0, 1, 1, 2, 3)))]
    if crash:
        kinds.insert(rng.randint(0, len(kinds)), "crash")
    faults: list[dict] = []
    crash_call = None
    reached, position, queries = _sure_requests(size), 0, 0
    for kind in kinds:
        if position + 1 > reached:
            break
        call = rng.randint(position + 1, reached)
        skip = call - position - 1
        times = 1
        if kind == "crash":
            # held long enough to be killed in, short enough to be over before the lease lapses
            faults.append({"endpoint": "chunk", "kind": "slow", "seconds": 0.5, "skip": skip})
            crash_call = call
            queries += 1
        elif kind in ("503", "429"):
            times = _burst(rng)
            faults.append(_status_fault(rng, "chunk", int(kind), times, skip))
            queries += times
        elif kind == "drop":
            cut = rng.randrange(min(size, FIRST_PUT_CHUNKS * CHUNK))  # past a shorter request's end: its answer is lost
            keep = rng.random() < 0.5  # the session keeps what arrived (whole 256 KiB), as Cloud Storage may
            faults.append(
                {"endpoint": "chunk", "kind": "drop", "after_bytes": cut, "keep_received": keep, "skip": skip}
            )
            queries += 1
        elif kind == "keep_fewer":
            faults.append(
                {"endpoint": "chunk", "kind": "keep_fewer", "fewer_bytes": rng.randint(1, CHUNK), "skip": skip}
            )
        else:
            faults.append({"endpoint": "chunk", "kind": "expire", "skip": skip})
        position = call + times - 1
        if kind in ("503", "429", "drop", "expire"):
            reached += times
    if queries and rng.random() < 0.4:
        kind = rng.choice(("503", "429", "drop"))
        skip = rng.randrange(queries)
        if kind == "drop":
            faults.append({"endpoint": "query", "kind": "drop", "skip": skip})
        else:
            faults.append(_status_fault(rng, "query", int(kind), _burst(rng), skip))
    return faults, crash_call


def draw_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    size = _draw_size(rng)
    plan = Plan(seed=seed, size=size, clips=rng.randint(1, 3), clip_bytes=rng.randint(1, 200_000))
    chunk_faults, plan.crash_at_chunk_call = _session_faults(rng, size, rng.random() < 0.3)
    plan.faults.extend(chunk_faults)
    for endpoint in API_ENDPOINTS:
        if rng.random() >= 0.2:
            continue
        kind = rng.choice(("503", "429", "drop"))
        if endpoint == "media":  # fewer failures in a row than copy attempts, or the clip is rightly given up
            times, skip = rng.randint(1, COPY_ATTEMPTS - 1), rng.randrange(plan.clips)
        elif endpoint == "clip-projects":  # as many unanswered create calls rightly fail the video
            times, skip = min(_burst(rng), MAX_CREATE_ATTEMPTS - 1), 0
        else:
            times, skip = _burst(rng), 0
        if kind == "drop":
            fault = {"endpoint": endpoint, "kind": "drop", "times": times, "skip": skip}
            if endpoint == "media":
                fault["after_bytes"] = rng.randrange(plan.clip_bytes)
            plan.faults.append(fault)
        else:
            plan.faults.append(_status_fault(rng, endpoint, int(kind), times, skip))
    webhook = rng.choice((None, None, "drop", "duplicate", "slow"))
    if webhook == "duplicate":
        plan.faults.append({"endpoint": "webhook", "kind": "duplicate", "copies": rng.randint(2, 3)})
    elif webhook == "slow":
        plan.faults.append({"endpoint": "webhook", "kind": "slow", "seconds": round(rng.uniform(0.1, 1.5), 2)})
    elif webhook == "drop":
        plan.faults.append({"endpoint": "webhook", "kind": "drop"})
    if rng.random() < 0.25:  # OpusClip makes the project, then its answer is spoiled
        plan.faults.append({"endpoint": "clip-projects", "after": True, **AFTER_CREATE[rng.choice(list(AFTER_CREATE))]})
    if rng.random() < 0.2:
        reset = rng.choice(ODD_RESETS)
        headers = {"X-RateLimit-Limit": "900", "X-RateLimit-Remaining": "800", "X-RateLimit-Reset": reset}
        endpoint = rng.choice(("upload-links", "clip-projects", "project-get"))
        plan.faults.append({"endpoint": endpoint, "kind": "stamp", "after": True, "headers": headers})
    if rng.random() < 0.1:
        plan.stall_resume = round(rng.uniform(0.5, 2.0), 2)
    plan.finalize_copies = rng.choice((1, 1, 2, 3))
    plan.finalize_concurrent = plan.finalize_copies > 1 and rng.random() < 0.5
    plan.request_copies = rng.choice((1, 1, 2, 3))
    plan.request_concurrent = plan.request_copies > 1 and rng.random() < 0.5
    plan.sweep_after = round(rng.uniform(0.0, 0.3), 2)  # while the webhook's conclusion runs
    plan.stuck_render = rng.random() < 0.1  # drawn late: the draws above stay as they were for every seed
    plan.opaque_sources = rng.random() < 0.3
    return plan


def conclusion_put_offs(faults: list[dict[str, Any]]) -> float:
    """The seconds a schedule's clip-list faults put its conclusion off by design: each drop or 5xx
    there fails a conclusion, and a failed conclusion is tried again ``FAILED_CONCLUSION_SECONDS``
    later, then twice that after each failure in a row (``conclude._put_off_until``). A 429 is the
    key's trouble and waits only its ``Retry-After``. Three such faults are 105 s on top of the
    schedule's own time, which ``SCHEDULE_SECONDS`` alone does not hold."""
    failures = sum(
        f.get("times", 1)
        for f in faults
        if f["endpoint"] == "exportable-clips" and (f["kind"] == "drop" or f.get("status", 0) >= 500)
    )
    return sum(states.next_check_seconds(n, first=FAILED_CONCLUSION_SECONDS) for n in range(1, failures + 1))


def fired_counts(faults: list[dict[str, Any]], calls: dict[str, int]) -> list[int]:
    """How many calls each fault answered, from the calls its endpoint received: the stand-in
    applies one endpoint's faults in order, each after its ``skip``."""
    position: Counter[str] = Counter()
    fired = []
    for fault in faults:
        endpoint = fault["endpoint"]
        position[endpoint] += fault.get("skip", 0)
        times = fault.get("times", 1)
        fired.append(max(0, min(times, calls.get(endpoint, 0) - position[endpoint])))
        position[endpoint] += times
    return fired


def fault_label(fault: dict[str, Any]) -> tuple[str, str]:
    """The row of the soak table a fault counts in, and where it struck."""
    if fault["endpoint"] == "webhook":
        return {"drop": "webhook lost", "duplicate": "webhook duplicated", "slow": "webhook late"}[fault["kind"]], ""
    if fault["kind"] == "stamp":
        return "odd X-RateLimit-Reset", fault["endpoint"]
    if fault.get("after"):
        spoil = next(name for name, spec in AFTER_CREATE.items() if spec.items() <= fault.items())
        return f"project made, then {spoil}", fault["endpoint"]
    if fault["kind"] == "status":
        return ("429 + Retry-After" if fault["status"] == 429 else str(fault["status"])), fault["endpoint"]
    kinds = {"drop": "connection drop", "keep_fewer": "session keeps fewer bytes", "expire": "session expires"}
    return kinds[fault["kind"]], fault["endpoint"]


# -- the stack --------------------------------------------------------------------------------


def serve_sweeper(port: int) -> None:
    """``sweep_projects`` under functions-framework, as the stack runs it, with the one difference
    that its clock (``Services.wall``) runs ``SWEEPER_AHEAD_SECONDS`` ahead."""
    import functions_framework
    from functions_framework._http import create_server

    app = functions_framework.create_app("sweep_projects", str(FUNCTIONS), "cloudevent")
    main = sys.modules["main"]
    build = main.services

    @functools.cache
    def services_ahead() -> Any:
        services = build()
        services.wall = lambda: time.time() + SWEEPER_AHEAD_SECONDS
        return services

    main.services = services_ahead
    create_server(app, False).run("127.0.0.1", port)


class SoakStack(LocalStack):
    """The local stack, plus what the soak drives by hand: the ingest process it kills and
    restarts, a sweeper ticked by the soak with its clock ahead, and a tap on the clip requests."""

    def _start(self) -> None:
        super()._start()
        from google.cloud import pubsub_v1

        self.direct_storage().create_bucket(SOURCE_BUCKET)
        pubsub_v1.SubscriberClient().create_subscription(
            name=self.subscription("clip-requests-tap"), topic=self.topic("clip-requests")
        )
        port = emulators.free_port()
        args = [sys.executable, "-m", "opus_local.soak", "--serve-sweeper", str(port)]
        log = self.root / "logs" / "sweep_projects-ahead.log"
        self._keep(emulators.spawn("sweep_projects-ahead", args, port, log, timeout=30, env={**os.environ, **self.env}))

    def function(self, name: str) -> emulators.Process:
        return next(p for p in self.processes if p.name == name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.function(name).port}/"

    def restart_ingest(self) -> None:
        """SIGKILL the ingest function's process group (mid-stream), then start a new instance."""
        old = self.function("on_video_uploaded")
        os.killpg(old.popen.pid, signal.SIGKILL)
        old.popen.wait(timeout=10)
        log = self.root / "logs" / "on_video_uploaded.log"
        new = emulators.start_function("on_video_uploaded", FUNCTIONS, self.env, log)
        self.processes[self.processes.index(old)] = new  # one step: deliveries never find no instance

    def secrets(self) -> re.Pattern[str]:
        """What no log line may contain: the API key, the webhook token, any session URL (its token;
        a traceback quoting the stand-in's source, ``path[len("/session/") :]``, names none)."""
        return re.compile(
            "|".join((re.escape(self.api_key), re.escape(self.env["OPUS_WEBHOOK_TOKEN"]), r"/session/[\w-]{16}"))
        )


# -- one schedule -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one schedule found: ``problems`` is empty when every promise held."""

    seed: int
    size: int
    ok: bool
    problems: list[str]
    resent: int  # stand-in bytesReceived minus the video's size
    bound: int
    seconds: float
    fired: Counter[tuple[str, str]] = field(default_factory=Counter)

    def line(self) -> str:
        faults = ", ".join(f"{k}{' @ ' + w if w else ''} ×{n}" for (k, w), n in sorted(self.fired.items()))
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return (
            f"seed {self.seed:>5}  {self.size:>8} B  re-sent {self.resent:>8}/{self.bound:<8} "
            f"{self.seconds:5.1f}s  {verdict}  [{faults}]"
        )


def join_by(threads: list[threading.Thread], deadline: float) -> None:
    """Wait for the threads until the deadline, and a second more."""
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1)


class Deliveries:
    """Delivery chains: each POSTs until a 2xx (as Eventarc and Pub/Sub redeliver) or the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.threads: list[threading.Thread] = []
        self.unacked = 0
        self._lock = threading.Lock()

    def start(self, url: Any, make_request: Any, delay: float = 0.0) -> None:
        """``url()`` is asked on every attempt (a restarted function listens elsewhere)."""
        thread = threading.Thread(target=self._chain, args=(url, make_request, delay), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _chain(self, url: Any, make_request: Any, delay: float) -> None:
        time.sleep(delay)
        backoff = 0.25
        while time.monotonic() < self.deadline:
            headers, body = make_request()
            with contextlib.suppress(requests.RequestException):  # a killed function drops the call
                timeout = max(1.0, self.deadline - time.monotonic())
                if requests.post(url(), headers=headers, data=body, timeout=timeout).ok:
                    return
            time.sleep(backoff)
            backoff = min(2.0, backoff * 2)
        with self._lock:
            self.unacked += 1

    def join(self) -> None:
        join_by(self.threads, self.deadline)


class Schedule:
    """One plan run against the stack; ``run`` returns what it found."""

    def __init__(self, soak: Soak, plan: Plan, name: str) -> None:
        self.soak = soak
        self.stack = soak.stack
        self.plan = plan
        self.name = name
        self.deadline = time.monotonic() + SCHEDULE_SECONDS + conclusion_put_offs(plan.faults)
        self.deliveries = Deliveries(self.deadline)
        self.stop_ticks = threading.Event()
        self.crashed = False
        self.problems: list[str] = []

    def _wait(self, condition: Any, what: str, poll: float = 0.05) -> bool:
        while time.monotonic() < self.deadline:
            if condition():
                return True
            time.sleep(poll)
        self.problems.append(f"timed out waiting for {what}")
        return False

    def run(self) -> Outcome:
        """Set the stand-in up, drive the video through the functions, check what must hold, tally the faults."""
        started = time.monotonic()
        data = self._set_up()
        storage_before = self.stack.storage_proxy.stats()
        end_state = self._drive(data)
        stats = self._quiet_stats()
        self._check_invariants(end_state, data, stats)
        fired = self._tally(stats)
        storage_after = self.stack.storage_proxy.stats()
        for counter, label in STORAGE_COUNTERS.items():
            fired[label, ""] += storage_after[counter] - storage_before[counter]
        fired = +fired
        resent, bound = self._check_resent(stats)
        seconds = round(time.monotonic() - started, 1)
        return Outcome(self.plan.seed, self.plan.size, not self.problems, self.problems, resent, bound, seconds, fired)

    def _set_up(self) -> bytes:
        """A fresh stand-in with the plan's clips and faults; the video the plan draws."""
        plan, standin = self.plan, self.stack.standin
        standin.reset()
        standin.configure(
            projectSeconds=PROJECT_SECONDS,
            clipsPerProject=plan.clips,
            clipBytes=plan.clip_bytes,
            sourceIds="opaque" if plan.opaque_sources else "upload",
        )
        if plan.stuck_render:
            standin.configure(renderSeconds=None, renderingClips=1)
        if plan.faults:
            standin.inject(*plan.faults)
        if plan.stall_resume is not None:
            standin.stall_next(resume_after=plan.stall_resume)
        return unique_video(plan.size, salt=random.Random(f"video-{plan.seed}").randbytes(SALT_BYTES))

    def _drive(self, data: bytes) -> str | None:
        """Upload the video and play the platform's part until the video ends; its end state."""
        resource = self.soak.put(self.name, data)
        helpers = [self._deliver_finalize, self._duplicate_clip_request, self._tick_sweeper]
        if self.plan.crash_at_chunk_call is not None:
            helpers.append(self._crash)
        threads = [threading.Thread(target=helper, args=(resource,), daemon=True) for helper in helpers]
        for thread in threads:
            thread.start()
        end_state = self._settle(resource)
        self.stop_ticks.set()
        self.deliveries.join()
        join_by(threads, self.deadline)
        return end_state

    def _check_invariants(self, end_state: str | None, data: bytes, stats: dict[str, Any]) -> None:
        """The video's clips are ready, one project per upload whatever OpusClip answered, every
        delivery was acknowledged, and no log shows a secret."""
        per_upload = self.stack.standin.projects_per_upload(self.stack.api_key)
        if twice := {upload: n for upload, n in per_upload.items() if n > 1}:
            self.problems.append(f"more than one project for an upload (the project list): {twice}")
        if end_state == "clips-ready":
            self._check_delivered(data, stats)
        elif end_state is not None:
            self.problems.append(f"the video ended {end_state}")
        if self.deliveries.unacked:
            self.problems.append(f"{self.deliveries.unacked} deliveries never acknowledged")
        self.problems.extend(self.soak.leaks())

    def _tally(self, stats: dict[str, Any]) -> Counter[tuple[str, str]]:
        """How often each misbehaviour happened: the injected faults that fired, the crash, the redeliveries."""
        plan = self.plan
        fired: Counter[tuple[str, str]] = Counter()
        for fault, count in zip(plan.faults, fired_counts(plan.faults, stats["calls"]), strict=True):
            if fault["endpoint"] != "chunk" or fault["kind"] != "slow":  # that one is the crash's
                fired[fault_label(fault)] += count
        fired["ingest SIGKILLed mid-stream, event redelivered", ""] += self.crashed
        fired["a clip never renders", "media"] += plan.stuck_render
        fired["projects' sourceId not the upload's id", ""] += plan.opaque_sources
        fired["project stalled, then moved on", ""] += plan.stall_resume is not None
        for what, copies, at_once in (
            ("finalize event", plan.finalize_copies, plan.finalize_concurrent),
            ("clip request", plan.request_copies, plan.request_concurrent),
        ):
            fired[f"{what} delivered 2–3 times", "at once" if at_once else "apart"] += copies > 1
        return +fired

    def _check_resent(self, stats: dict[str, Any]) -> tuple[int, int]:
        """The bytes sent again and the most that the faults excuse; a problem when over."""
        resent = stats["bytesReceived"] - self.plan.size
        bound = resend_bound(self.plan.faults, stats, self.crashed, self.plan.size)
        if resent > bound:
            self.problems.append(f"re-sent {resent} bytes, more than the bound of {bound}")
        return resent, bound

    # -- the platform's part ----------------------------------------------------------------

    def _deliver_finalize(self, resource: dict[str, Any]) -> None:
        rng = random.Random(f"finalize-{self.plan.seed}")
        url = functools.partial(self.stack.url, "on_video_uploaded")
        for copy in range(self.plan.finalize_copies):
            delay = 0.0 if copy == 0 or self.plan.finalize_concurrent else rng.uniform(0.0, 1.5)
            self.deliveries.start(url, lambda: to_binary(finalized_event(resource)), delay)

    def _duplicate_clip_request(self, resource: dict[str, Any]) -> None:
        """The push subscription delivers the clip request once; the extra copies go straight to
        the function, at once or a little later, with the message's own id, as a redelivery has."""
        if self.plan.request_copies == 1:
            return
        message = self.soak.tapped(resource["name"], self.deadline, self.stop_ticks)
        if message is None:
            if not self.stop_ticks.is_set():  # else the video ended without one, which is reported
                self.problems.append("the clip request was never published")
            return
        rng = random.Random(f"request-{self.plan.seed}")
        url = functools.partial(self.stack.url, "create_clip_project")
        body = push_body(
            message.data, dict(message.attributes), message.message_id, self.stack.subscription("clip-requests-push")
        )
        headers = {"Content-Type": "application/json"}
        for _ in range(self.plan.request_copies - 1):
            delay = 0.0 if self.plan.request_concurrent else rng.uniform(0.0, 1.5)
            self.deliveries.start(url, lambda: (headers, json.dumps(body).encode()), delay)

    def _tick_sweeper(self, resource: dict[str, Any]) -> None:
        """Cloud Scheduler's part, once the project has ended (see ``SWEEPER_AHEAD_SECONDS``)."""
        standin = self.stack.standin

        def ended() -> bool:
            projects = standin.stats()["projects"].values()
            return self.stop_ticks.is_set() or any(p["stage"] in ("COMPLETE", "STALLED") for p in projects)

        if not self._wait(ended, "the project to end", poll=0.1) or self.stop_ticks.wait(self.plan.sweep_after):
            return
        url = self.stack.url("sweep_projects-ahead")
        subscription = self.stack.subscription("sweep-ticks-push")

        def tick() -> None:
            body = push_body(b"tick", {}, uuid.uuid4().hex, subscription)
            with contextlib.suppress(requests.RequestException):
                requests.post(url, json=body, timeout=max(1.0, self.deadline - time.monotonic()))

        ticks = []
        while not self.stop_ticks.is_set() and time.monotonic() < self.deadline:
            ticks.append(threading.Thread(target=tick, daemon=True))  # not waited for: sweeps overlap
            ticks[-1].start()
            self.stop_ticks.wait(TICK_SECONDS)
        join_by(ticks, self.deadline)

    def _crash(self, resource: dict[str, Any]) -> None:
        """SIGKILL the ingest process while the stand-in holds the planned chunk PUT, then restart it;
        the unanswered deliveries are redelivered to the new instance."""
        call = self.plan.crash_at_chunk_call or 0
        standin = self.stack.standin
        self._wait(lambda: self.stop_ticks.is_set() or standin.calls("chunk") >= call, f"chunk PUT {call}", 0.02)
        if self.stop_ticks.is_set():
            self.problems.append(f"the planned SIGKILL found no chunk PUT {call}")
            return
        self.stack.restart_ingest()
        self.crashed = True

    # -- the end ----------------------------------------------------------------------------

    def _settle(self, resource: dict[str, Any]) -> str | None:
        """The video's end state, after every helper is done with it."""
        from opus_pipeline.domain.events import storage_object

        obj = storage_object(resource)
        final: list[str] = []

        def ended() -> bool:
            stored = self.soak.ledger.read(obj)
            state = stored.record.state if stored else None
            if state in ("clips-ready", "failed", "superseded"):
                final.append(state)
                return True
            return False

        self._wait(ended, "the video to end (clips-ready)", poll=0.1)
        return final[0] if final else None

    def _quiet_stats(self) -> dict[str, Any]:
        """The stand-in's stats once every webhook OpusClip sends for this project has been sent."""
        expected = next((f.get("copies", 2) for f in self.plan.faults if f["kind"] == "duplicate"), 1)
        stats: dict[str, Any] = self.stack.standin.stats()

        def sent() -> bool:
            stats.update(self.stack.standin.stats())
            return not stats["projects"] or len(stats["webhooks"]) >= expected

        if not sent():
            self._wait(sent, "the webhooks to be sent", poll=0.1)
        return stats

    def _check_delivered(self, data: bytes, stats: dict[str, Any]) -> None:
        md5 = hashlib.md5(data).hexdigest()
        complete = [u for u in stats["uploads"].values() if u["complete"]]
        if len(complete) != 1 or complete[0]["md5"] != md5:
            self.problems.append(f"expected one complete upload with md5 {md5}, found {complete}")
        projects = list(stats["projects"].values())
        if len(projects) != 1:
            self.problems.append(f"expected one project, found {len(projects)}")
            return
        project = projects[0]
        if complete and project["request"]["videoUrl"] != complete[0]["uploadId"]:
            self.problems.append("the project is not of the complete upload")
        stuck = 1 if self.plan.stuck_render else 0
        self.problems.extend(self.soak.manifest_problems(self.name, project["id"], stats["clipFiles"], stuck))


def resend_bound(faults: list[dict[str, Any]], stats: dict[str, Any], crashed: bool, size: int) -> int:
    """The most bytes the stand-in may have read beyond the video's size.

    Counted (``bytesReceived``) are the bytes the stand-in reads into a session. Ingest sends one
    request per attempt, of at most ``FIRST_PUT_CHUNKS`` chunks first and then at most
    ``PUT_SECONDS`` at the measured throughput, never past the video's end; on loopback that is
    the rest of the video. A connection cut inside a request loses at most that request (the session
    may keep what arrived, or nothing); a process killed mid-request loses at most the request in
    flight, since its redelivery asks the session where it stands rather than trusting the record.
    A request whose session keeps ``fewer_bytes`` less is re-sent from the kept offset, which the
    session rounds down to 256 KiB: at most ``fewer_bytes`` + 256 KiB. A 503 or 429 is answered
    before the body is read, so it costs nothing here. An expired session is the one case that
    costs more: OpusClip's new session starts at byte 0, so every byte the expired one had kept is
    sent again (the stand-in reports what each abandoned session kept)."""
    fired = fired_counts(faults, stats["calls"])
    chunk_faults = [(f, n) for f, n in zip(faults, fired, strict=True) if f["endpoint"] == "chunk"]
    cuts = sum(n for f, n in chunk_faults if f["kind"] == "drop") + int(crashed)
    kept_short = sum((f["fewer_bytes"] + GRANULARITY) * n for f, n in chunk_faults if f["kind"] == "keep_fewer")
    abandoned = sum(u["committed"] for u in stats["uploads"].values() if not u["complete"])
    return size * cuts + kept_short + abandoned


# -- the soak ---------------------------------------------------------------------------------


class Soak:
    """The shared stack and clients; ``run(seed)`` runs one schedule on a fresh object name."""

    def __init__(self, stack: SoakStack) -> None:
        from google.cloud import pubsub_v1

        from opus_pipeline.gcs.ledger import Ledger

        self.stack = stack
        self.storage = stack.direct_storage()
        self.ledger = Ledger(self.storage, STATE_BUCKET)
        self.subscriber = pubsub_v1.SubscriberClient()
        self.runs = 0
        self._log_offsets: dict[Path, int] = {}

    def run(self, seed: int) -> tuple[Plan, Outcome]:
        self.runs += 1
        plan = draw_plan(seed)
        return plan, Schedule(self, plan, f"soak/{self.runs:04d}-seed{seed}.mp4").run()

    def put(self, name: str, data: bytes) -> dict[str, Any]:
        """Upload the video; the object resource its finalize event carries."""
        blob = self.storage.bucket(SOURCE_BUCKET).blob(name)
        blob.upload_from_string(data, content_type="video/mp4")
        return {
            "bucket": SOURCE_BUCKET,
            "name": name,
            "generation": str(blob.generation),
            "size": str(blob.size),
            "contentType": blob.content_type,
            "md5Hash": blob.md5_hash,
            "crc32c": blob.crc32c,
            "metadata": {},
        }

    def tapped(self, name: str, deadline: float, settled: threading.Event) -> Any:
        """The clip request published for ``name``, from the tap subscription; None once the
        video has ``settled`` without one."""
        subscription = self.stack.subscription("clip-requests-tap")
        while time.monotonic() < deadline and not settled.is_set():
            response = self.subscriber.pull(
                subscription=subscription, max_messages=10, return_immediately=True, timeout=10
            )
            received = list(response.received_messages)
            if received:
                self.subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
            for item in received:
                if item.message.attributes.get("name") == name:
                    return item.message
            time.sleep(0.05)
        return None

    def manifest_problems(self, name: str, project_id: str, clip_files: dict[str, Any], stuck: int = 0) -> list[str]:
        """What is wrong with the manifest and the copies it lists; ``stuck`` clips never rendered
        (the stand-in lists no file for them) and must be listed as not copied, with the reason."""
        bucket = self.storage.bucket(OUTPUT_BUCKET)
        blob = bucket.get_blob(f"{name}/clips.json")
        if blob is None:
            return [f"no manifest gs://{OUTPUT_BUCKET}/{name}/clips.json"]
        manifest = json.loads(blob.download_as_bytes())
        files = {k: v for k, v in clip_files.items() if k.startswith(f"{project_id}.")}
        problems = []
        never = [c for c in manifest["clips"] if c.get("reason") == "still-rendering" and not c.get("copied")]
        if len(never) != stuck:
            problems.append(f"expected {stuck} clip(s) left uncopied as still rendering, found {len(never)}")
        rendered = [c for c in manifest["clips"] if c not in never]
        if manifest["projectId"] != project_id or {c["id"] for c in rendered} != set(files):
            problems.append("the manifest does not list the project's clips")
        for clip in rendered:
            expected = files.get(clip["id"], {}).get("md5")
            copy = bucket.get_blob(clip["gcsUri"].split("/", 3)[3]) if clip.get("copied") else None
            if copy is None or base64.b64decode(copy.md5_hash).hex() != expected:
                problems.append(f"clip {clip['id']} was not copied byte-exact: {clip}")
        downloads = {k: f["downloads"] for k, f in files.items() if f["downloads"] != 1}
        if downloads:
            problems.append(f"clips not downloaded exactly once: {downloads}")
        return problems

    def leaks(self) -> list[str]:
        """Secrets in the log lines written since the last look."""
        problems = []
        for path in sorted((self.stack.root / "logs").glob("*.log")):
            with open(path, "rb") as log:
                log.seek(self._log_offsets.get(path, 0))
                text = log.read().decode(errors="replace")
                self._log_offsets[path] = log.tell()
            if self.stack.secrets().search(text):
                problems.append(f"{path.name} logs a secret")
        return problems


def storage_faults(share: float) -> dict[str, float]:
    """The proxy's fault settings for ``share`` of the calls, split evenly among the kinds."""
    return {kind: share / len(STORAGE_FAULT_KINDS) for kind in STORAGE_FAULT_KINDS} if share else {}


@contextlib.contextmanager
def soak_stack(root: Path, faults: float = STORAGE_FAULTS, seed: int = 0) -> Any:
    """The stack every schedule shares: the sweeper the stack ticks on its own never ticks; ``faults``
    of the functions' storage calls fail, drawn from ``seed``."""
    settings = {
        "LEASE_SECONDS": str(LEASE_SECONDS),
        "SOURCE_BUCKET": SOURCE_BUCKET,
        "CLIP_RENDER_WAIT_SECONDS": str(RENDER_WAIT_SECONDS),
    }
    with SoakStack(
        root,
        chunk_size=CHUNK,
        sweep_seconds=24 * 3600.0,
        settings=settings,
        storage_faults=storage_faults(faults),
        storage_seed=seed,
    ) as stack:
        yield Soak(stack)


def table(outcomes: list[Outcome], seconds: float) -> str:
    """The README's table: schedules, faults injected by kind, bytes re-sent, outcomes."""
    passed = sum(o.ok for o in outcomes)
    times: Counter[str] = Counter()
    schedules: Counter[str] = Counter()
    where: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        for (kind, place), count in outcome.fired.items():
            times[kind] += count
            where.setdefault(kind, Counter())[place] += count
        schedules.update({kind for kind, _ in outcome.fired})
    resent = [o.resent for o in outcomes]
    worst = max(outcomes, key=lambda o: o.resent)
    sizes = [o.size for o in outcomes]
    rows = [
        "| | |",
        "|---|---|",
        f"| schedules | {len(outcomes)} (seeds {outcomes[0].seed} to {outcomes[-1].seed}), {seconds:.0f} s |",
        f"| video sizes | {min(sizes)} B to {max(sizes)} B, chunks of {CHUNK} B |",
        f"| outcomes | {passed} passed, {len(outcomes) - passed} failed |",
        f"| bytes re-sent | {sum(resent)} in all; at most {worst.resent} in one schedule (seed {worst.seed}, "
        f"bound {worst.bound}); {sum(1 for r in resent if r)} schedules re-sent any |",
        "",
        "| fault (fired, not only planned) | schedules | times | where |",
        "|---|---|---|---|",
    ]
    for kind in sorted(times):
        places = ", ".join(f"{p} {n}" for p, n in where[kind].most_common() if p)
        rows.append(f"| {kind} | {schedules[kind]} | {times[kind]} | {places} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workdir", default=".demo/soak")
    parser.add_argument("--storage-faults", type=float, default=STORAGE_FAULTS, help="share of storage calls failed")
    parser.add_argument("--serve-sweeper", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sweeper:
        serve_sweeper(args.serve_sweeper)
        return
    outcomes = []
    started = time.monotonic()
    workdir = Path(args.workdir).resolve()
    fresh_workdir(workdir, "soak")
    with soak_stack(workdir, args.storage_faults, args.first_seed) as soak:
        for seed in range(args.first_seed, args.first_seed + args.schedules):
            plan, outcome = soak.run(seed)
            print(outcome.line(), flush=True)
            if not outcome.ok:
                print(f"  plan of seed {seed}: {plan.describe()}", flush=True)
            outcomes.append(outcome)
    print()
    print(table(outcomes, time.monotonic() - started))
    failed = [o.seed for o in outcomes if not o.ok]
    if failed:
        print(f"\nfailed seeds (add them to REGRESSION_SEEDS in tests/e2e/test_soak.py): {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
