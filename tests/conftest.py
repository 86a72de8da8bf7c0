"""Fixtures: real fake-gcs-server, the real Pub/Sub emulator, the OpusClip stand-in over HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import pubsub_v1, storage

from opus_local import emulators
from opus_local.function_env import function_env
from opus_local.standin_control import RunningStandIn, StandInControl
from opus_pipeline.domain.media_probe import RangedReader
from opus_pipeline.errors import TransientError

API_KEY = "sk-test-" + "7f3a9c1e5b2d4f60"  # a realistic-looking secret the log scans look for
PROJECT = "test-project"
CHUNK = 256 * 1024
UNIT_TIER = Path(__file__).resolve().parent / "unit"
# The environment every function needs at the least, with harmless values: what config tests start from.
REQUIRED_ENV = {
    "OPUS_API_KEY": "sk-abcdef",
    "STATE_BUCKET": "state",
    "SOURCE_BUCKET": "videos",
    "OUTPUT_BUCKET": "clips",
    "CLIP_RESULTS_TOPIC": "projects/p/topics/clip-results",
    "INGEST_REQUESTS_TOPIC": "projects/p/topics/ingest-requests",
    "CLIP_REQUESTS_TOPIC": "projects/p/topics/clip-requests",
}


class NotAUnitTestError(RuntimeError):
    """Raised when a test of the unit tier reaches for the network or a process."""


@pytest.fixture(autouse=True)
def _unit_tier_rule(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier's rule, enforced: a test under tests/unit opens no socket and starts no
    process (no emulator, no stand-in, no network), so the whole tier runs in seconds; a test that
    needs a server belongs in tests/integration or tests/e2e."""
    if UNIT_TIER not in Path(request.node.path).parents:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise NotAUnitTestError("a unit test opens no socket and starts no process: move it to tests/integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = emulators.start_fake_gcs(tmp_path_factory.mktemp("gcs"))
    host = f"http://127.0.0.1:{process.port}"
    os.environ["STORAGE_EMULATOR_HOST"] = host
    os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
    yield host
    process.stop()


@pytest.fixture(scope="session")
def pubsub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = emulators.start_pubsub(tmp_path_factory.mktemp("pubsub"))
    host = f"127.0.0.1:{process.port}"
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    yield host
    process.stop()


@pytest.fixture(scope="session")
def standin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStandIn]:
    server = RunningStandIn(API_KEY, tmp_path_factory.mktemp("standin"))
    yield server
    server.stop()


@pytest.fixture
def standin(standin_server: RunningStandIn) -> StandInControl:
    standin_server.control.reset()
    standin_server.control.set_quota(100 * 1024**3, 0)
    return standin_server.control


@dataclass
class Stack:
    """One test's buckets, topic and subscription, and the environment the functions read."""

    env: dict[str, str]
    storage: storage.Client
    source_bucket: str
    state_bucket: str
    topic: str
    subscription: str
    standin_url: str
    output_bucket: str
    results_subscription: str
    ingest_subscription: str

    def put(self, name: str, data: bytes, content_type: str = "video/mp4", metadata: dict | None = None) -> dict:
        """Upload an object and return the object resource its finalize event carries."""
        blob = self.storage.bucket(self.source_bucket).blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data, content_type=content_type)
        return object_resource(blob)

    def pull(self, max_messages: int = 10, subscription: str | None = None) -> list[pubsub_v1.types.ReceivedMessage]:
        subscriber = pubsub_v1.SubscriberClient()
        subscription = subscription or self.subscription
        # return_immediately is deprecated for production pulls, but it is what makes "no message"
        # answer at once instead of after a timeout; the emulator honours it.
        response = subscriber.pull(
            subscription=subscription, max_messages=max_messages, return_immediately=True, timeout=10
        )
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
        return list(response.received_messages)


def deliver_concurrently(handler: Callable[[], object], times: int = 3) -> list[object]:
    """Call ``handler`` from ``times`` threads at once; each result, or the TransientError raised."""
    outcomes: list[object] = []

    def deliver() -> None:
        try:
            outcomes.append(handler())
        except TransientError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def object_resource(blob: storage.Blob) -> dict:
    return {
        "bucket": blob.bucket.name,
        "name": blob.name,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": blob.content_type,
        "contentEncoding": blob.content_encoding,
        "md5Hash": blob.md5_hash,
        "crc32c": blob.crc32c,
        "metadata": blob.metadata or {},
    }


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def stack(gcs: str, pubsub: str, standin: StandInControl) -> Stack:
    client = storage.Client()
    suffix = uuid.uuid4().hex[:8]
    source, state, output = f"source-{suffix}", f"state-{suffix}", f"output-{suffix}"
    for bucket in (source, state, output):
        client.create_bucket(bucket)
    topic = f"projects/{PROJECT}/topics/clip-requests-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/clip-requests-{suffix}"
    results_topic = f"projects/{PROJECT}/topics/clip-results-{suffix}"
    results_subscription = f"projects/{PROJECT}/subscriptions/clip-results-{suffix}"
    ingest_topic = f"projects/{PROJECT}/topics/ingest-requests-{suffix}"
    ingest_subscription = f"projects/{PROJECT}/subscriptions/ingest-requests-{suffix}"
    for name, sub in (
        (topic, subscription),
        (results_topic, results_subscription),
        (ingest_topic, ingest_subscription),
    ):
        pubsub_v1.PublisherClient().create_topic(name=name)
        pubsub_v1.SubscriberClient().create_subscription(name=sub, topic=name)
    env = function_env(
        api_key=API_KEY,
        standin_url=standin.base_url,
        topic=topic,
        source_bucket=source,
        state_bucket=state,
        output_bucket=output,
        results_topic=results_topic,
        ingest_topic=ingest_topic,
        chunk_size=CHUNK,
        LEASE_SECONDS="60",
    )
    return Stack(
        env,
        client,
        source,
        state,
        topic,
        subscription,
        standin.base_url,
        output,
        results_subscription,
        ingest_subscription,
    )


@pytest.fixture
def reader() -> Iterator[Callable[..., RangedReader]]:
    """``RangedReader`` over a local file through ``os.pread``: the same calls a range request makes."""
    descriptors: list[int] = []

    def open_reader(path: Path, **options) -> RangedReader:
        descriptor = os.open(path, os.O_RDONLY)
        descriptors.append(descriptor)
        return RangedReader(
            lambda start, end: os.pread(descriptor, end - start + 1, start), os.path.getsize(path), **options
        )

    yield open_reader
    for descriptor in descriptors:
        os.close(descriptor)


@pytest.fixture
def ticks(stack: Stack) -> tuple[str, str]:
    """A sweep-ticks topic and a subscription that sees what is published on it."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/sweep-ticks-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/sweep-ticks-{suffix}"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)
    return topic, subscription
