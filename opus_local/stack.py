"""The whole pipeline on one machine: emulators, the OpusClip stand-in, both functions, the relay.

    fake-gcs-server ──OBJECT_FINALIZE──► Pub/Sub emulator (gcs-events) ──► relay ──CloudEvent──►
    on_video_uploaded ──► stand-in (upload) ──► clip-requests ──push (dead-letter: clip-requests-dead)──►
    create_clip_project ──► stand-in (project)

Everything is started as a child process in its own process group and stopped by PID on exit,
also on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from . import emulators
from .function_env import function_env
from .relay import Relay
from .standin_control import StandInControl

PROJECT = "local-project"
SOURCE_BUCKET = "videos"
STATE_BUCKET = "pipeline-state"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions" / "main.py"


@dataclass
class LocalStack:
    root: Path
    chunk_size: int = 8 * 1024 * 1024
    api_key: str = field(default_factory=lambda: "sk-local-" + secrets.token_hex(8))
    processes: list[emulators.Process] = field(default_factory=list)
    relay: Relay | None = None
    env: dict[str, str] = field(default_factory=dict)
    standin: StandInControl | None = None

    def topic(self, name: str) -> str:
        return f"projects/{PROJECT}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{PROJECT}/subscriptions/{name}"

    def __enter__(self) -> LocalStack:
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
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{gcs.port}"
        from google.cloud import storage

        client = storage.Client()
        for bucket in (SOURCE_BUCKET, STATE_BUCKET):
            client.create_bucket(bucket)
        standin = self._keep(self._start_standin(logs))
        base_url = f"http://127.0.0.1:{standin.port}"
        self.standin = StandInControl(base_url)
        self.env = function_env(
            api_key=self.api_key,
            standin_url=base_url,
            topic=self.topic("clip-requests"),
            state_bucket=STATE_BUCKET,
            chunk_size=self.chunk_size,
        )
        ingest = self._keep(
            emulators.start_function("on_video_uploaded", FUNCTIONS, self.env, logs / "on_video_uploaded.log")
        )
        create = self._keep(
            emulators.start_function("create_clip_project", FUNCTIONS, self.env, logs / "create_clip_project.log")
        )
        self._create_push_subscription(f"http://127.0.0.1:{create.port}/")
        self.relay = Relay(self.subscription("gcs-events-relay"), f"http://127.0.0.1:{ingest.port}/")
        self.relay.start()

    def _keep(self, process: emulators.Process) -> emulators.Process:
        self.processes.append(process)
        return process

    def _start_standin(self, logs: Path) -> emulators.Process:
        return emulators.start_standin(self.root / "standin", self.api_key, logs / "opus-standin.log")

    def _create_topics(self) -> None:
        from google.cloud import pubsub_v1

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for name in ("gcs-events", "clip-requests", "clip-requests-dead"):
            publisher.create_topic(name=self.topic(name))
        subscriber.create_subscription(name=self.subscription("gcs-events-relay"), topic=self.topic("gcs-events"))
        subscriber.create_subscription(
            name=self.subscription("clip-requests-dead"), topic=self.topic("clip-requests-dead")
        )

    def _create_push_subscription(self, endpoint: str) -> None:
        from google.cloud import pubsub_v1

        pubsub_v1.SubscriberClient().create_subscription(
            request={
                "name": self.subscription("clip-requests-push"),
                "topic": self.topic("clip-requests"),
                "push_config": {"push_endpoint": endpoint},
                "ack_deadline_seconds": 60,
                "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 30}},
                "dead_letter_policy": {
                    "dead_letter_topic": self.topic("clip-requests-dead"),
                    "max_delivery_attempts": 5,
                },
            }
        )

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        while self.processes:
            self.processes.pop().stop()
