"""The whole pipeline on one machine: emulators, the OpusClip stand-in, every function, the relays.

    fake-gcs-server ──OBJECT_FINALIZE──► Pub/Sub emulator (gcs-events) ──► relay ──CloudEvent──►
    on_video_uploaded ──► stand-in (upload) ──► clip-requests ──push (dead-letter: clip-requests-dead)──►
    create_clip_project ──► stand-in (project, webhook at its end) ──► on_project_concluded ──►
    clips in gs://clips, a message on clip-results;  a ticker (Cloud Scheduler's part) ──► sweep-ticks
    ──push──► sweep_projects (for lost webhooks, and videos admitted against this month's credits:
    ingest-requests ──push──► on_video_uploaded)

Eventarc's trigger and every ``push`` above are played by a ``relay.Relay`` pulling the emulator's
subscription (the emulator's own push polls, and delivers two messages at a time).

Every storage call of the functions (and of this process's clients, as the CLI's) goes through
the fault-injecting proxy (``gcs_proxy.py``) in front of fake-gcs-server, with Cloud Storage's write
limit of about one write per second per object (bursts of 2) and, when ``storage_faults`` says
so, a share of 503s, 429s and dropped connections. A harness that checks from the outside uses
``direct_storage()``, which bypasses it.

Everything is started as a child process in its own process group and stopped by PID on exit,
also on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import emulators, gcs_proxy
from .function_env import function_env
from .relay import Relay
from .standin_control import StandInControl

PROJECT = "local-project"
SOURCE_BUCKET = "videos"
STATE_BUCKET = "pipeline-state"
OUTPUT_BUCKET = "clips"
CLIENT_VARS = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions" / "main.py"


@dataclass
class LocalStack:
    root: Path
    chunk_size: int = 8 * 1024 * 1024
    api_key: str = field(default_factory=lambda: "sk-local-" + secrets.token_hex(8))
    processes: list[emulators.Process] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)  # Eventarc's trigger and the push subscriptions
    env: dict[str, str] = field(default_factory=dict)
    standin: StandInControl | None = None
    sweep_seconds: float = 5.0
    settings: dict[str, str] = field(default_factory=dict)  # more environment for the functions
    ticker: Ticker | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)
    # The storage proxy: Cloud Storage's per-object write limit (None: off), and the faults it
    # injects on the functions' calls (``gcs_proxy.Faults`` settings by wire name), from ``storage_seed``.
    write_rate: float | None = 1.0
    write_burst: float = 2
    storage_faults: dict[str, Any] = field(default_factory=dict)
    storage_seed: int = 0
    gcs_url: str = ""  # fake-gcs-server itself
    storage_proxy: gcs_proxy.GcsProxyControl | None = None

    def topic(self, name: str) -> str:
        return f"projects/{PROJECT}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{PROJECT}/subscriptions/{name}"

    def __enter__(self) -> LocalStack:
        # The clients of this process talk to the stack's emulators while it runs, as the CLI's do.
        self.saved_env = {name: os.environ.get(name) for name in CLIENT_VARS}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        pubsub = self._keep(emulators.start_pubsub(self.root, log=logs / "pubsub-emulator.log"))
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{pubsub.port}"
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        self._create_topics()
        gcs = self._keep(
            emulators.start_fake_gcs(
                self.root / "gcs", pubsub=(PROJECT, "gcs-events", SOURCE_BUCKET), log=logs / "fake-gcs.log"
            )
        )
        self.gcs_url = f"http://127.0.0.1:{gcs.port}"  # fake-gcs-server itself: path-style object URLs
        limit = ("--no-write-limit",) if self.write_rate is None else ("--write-rate", str(self.write_rate))
        args = (*limit, "--write-burst", str(self.write_burst), "--seed", str(self.storage_seed))
        proxy = self._keep(gcs_proxy.start_process(self.gcs_url, logs / "gcs-proxy.log", args=args))
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{proxy.port}"
        self.storage_proxy = gcs_proxy.GcsProxyControl(os.environ["STORAGE_EMULATOR_HOST"])
        client = self.direct_storage()
        for bucket in (SOURCE_BUCKET, STATE_BUCKET, OUTPUT_BUCKET):
            client.create_bucket(bucket)
        standin = self._keep(self._start_standin(logs))
        base_url = f"http://127.0.0.1:{standin.port}"
        self.standin = StandInControl(base_url)
        receiver_port = emulators.free_port()
        self.env = function_env(
            api_key=self.api_key,
            standin_url=base_url,
            topic=self.topic("clip-requests"),
            source_bucket=SOURCE_BUCKET,
            state_bucket=STATE_BUCKET,
            output_bucket=OUTPUT_BUCKET,
            results_topic=self.topic("clip-results"),
            ingest_topic=self.topic("ingest-requests"),
            chunk_size=self.chunk_size,
            SWEEP_TICKS_TOPIC=self.topic("sweep-ticks"),
            OPUS_WEBHOOK_URL=f"http://127.0.0.1:{receiver_port}/",
            OPUS_WEBHOOK_TOKEN=secrets.token_hex(16),
            **self.settings,
        )
        self._keep(
            emulators.start_function(
                "on_project_concluded",
                FUNCTIONS,
                self.env,
                logs / "on_project_concluded.log",
                port=receiver_port,
                signature="http",
            )
        )
        sweeper = self._keep(
            emulators.start_function("sweep_projects", FUNCTIONS, self.env, logs / "sweep_projects.log")
        )
        self._push("sweep-ticks-push", "sweep-ticks", f"http://127.0.0.1:{sweeper.port}/")
        self.ticker = Ticker(self.topic("sweep-ticks"), self.sweep_seconds)
        self.ticker.start()
        ingest = self._keep(
            emulators.start_function("on_video_uploaded", FUNCTIONS, self.env, logs / "on_video_uploaded.log")
        )
        create = self._keep(
            emulators.start_function("create_clip_project", FUNCTIONS, self.env, logs / "create_clip_project.log")
        )
        self._push(
            "clip-requests-push", "clip-requests", f"http://127.0.0.1:{create.port}/", dead_letter="clip-requests-dead"
        )
        self._push("ingest-requests-push", "ingest-requests", f"http://127.0.0.1:{ingest.port}/")
        self._start_relay(Relay.eventarc(self.subscription("gcs-events-relay"), f"http://127.0.0.1:{ingest.port}/"))
        if self.storage_faults:
            self.storage_proxy.configure(faults=self.storage_faults)

    def direct_storage(self) -> Any:
        """A storage client straight to fake-gcs-server, around the proxy's limit and faults: what
        a harness checks with (the functions' faults are not its own)."""
        from google.cloud import storage

        return storage.Client(client_options={"api_endpoint": self.gcs_url})

    def _keep(self, process: emulators.Process) -> emulators.Process:
        self.processes.append(process)
        return process

    def _start_standin(self, logs: Path) -> emulators.Process:
        return emulators.start_standin(self.root / "standin", self.api_key, logs / "opus-standin.log")

    def _create_topics(self) -> None:
        from google.cloud import pubsub_v1

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for name in (
            "gcs-events",
            "clip-requests",
            "clip-requests-dead",
            "clip-results",
            "sweep-ticks",
            "ingest-requests",
        ):
            publisher.create_topic(name=self.topic(name))
        subscriber.create_subscription(name=self.subscription("gcs-events-relay"), topic=self.topic("gcs-events"))
        for name in ("clip-requests-dead", "clip-results"):  # what a user of the local stack pulls from
            subscriber.create_subscription(name=self.subscription(name), topic=self.topic(name))

    def _push(self, name: str, topic: str, endpoint: str, dead_letter: str | None = None) -> None:
        """A push subscription to ``endpoint`` (retried 1–30 s; dead-lettered after 5 attempts when
        ``dead_letter`` names a topic), delivered by a ``Relay.push`` (why not the emulator's: relay.py)."""
        from google.cloud import pubsub_v1

        request = {
            "name": self.subscription(name),
            "topic": self.topic(topic),
            "ack_deadline_seconds": 60,
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 30}},
        }
        if dead_letter:
            request["dead_letter_policy"] = {"dead_letter_topic": self.topic(dead_letter), "max_delivery_attempts": 5}
        pubsub_v1.SubscriberClient().create_subscription(request=request)
        self._start_relay(Relay.push(self.subscription(name), endpoint))

    def _start_relay(self, relay: Relay) -> None:
        self.relays.append(relay)
        relay.start()

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
            self.ticker = None
        while self.relays:
            self.relays.pop().stop()
        while self.processes:
            self.processes.pop().stop()
        for name, value in self.saved_env.items():  # the process's clients point where they did before
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved_env = {}


class Ticker:
    """Cloud Scheduler's part: publish a tick to the sweeper's topic every ``seconds``."""

    def __init__(self, topic: str, seconds: float) -> None:
        self._topic = topic
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-ticker", daemon=True)

    def _run(self) -> None:
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        while not self._stop.wait(self._seconds):
            publisher.publish(self._topic, b"tick").result(timeout=30)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=40)
