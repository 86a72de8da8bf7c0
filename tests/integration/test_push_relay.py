"""The local stack's Pub/Sub push (``opus_local/relay.py``): what a push subscription delivers, from
the real Pub/Sub emulator to a real HTTP endpoint, as Pub/Sub's push does."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.cloud import pubsub_v1

from opus_local.relay import Relay

from support import wait_for

PROJECT = "test-project"


@dataclass
class Endpoint:
    """A push endpoint on loopback: what it was sent, and what it answers (``answer(n)`` for the
    n-th delivery, from 1)."""

    answer: Callable[[int], int] = lambda n: 204
    bodies: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def deliveries(self) -> int:
        with self.lock:
            return len(self.bodies)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    target = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with target.lock:
                target.bodies.append(body)
                n = len(target.bodies)
            self.send_response(target.answer(n))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target.url = f"http://127.0.0.1:{server.server_port}/"
    yield target
    server.shutdown()


@dataclass
class Subscription:
    topic: str
    name: str
    dead_letters: str


@pytest.fixture
def subscription(pubsub: str) -> Subscription:
    """A topic and an ordinary subscription with a push subscription's policies (retry 1–30 s,
    dead-lettered after 5 attempts), and a subscription on the dead-letter topic."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    tag = uuid.uuid4().hex[:8]
    topic, dead = f"projects/{PROJECT}/topics/push-{tag}", f"projects/{PROJECT}/topics/dead-{tag}"
    for name in (topic, dead):
        publisher.create_topic(name=name)
    dead_letters = f"projects/{PROJECT}/subscriptions/dead-{tag}"
    subscriber.create_subscription(name=dead_letters, topic=dead)
    name = f"projects/{PROJECT}/subscriptions/push-{tag}"
    subscriber.create_subscription(
        request={
            "name": name,
            "topic": topic,
            "ack_deadline_seconds": 60,
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 30}},
            "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": 5},
        }
    )
    return Subscription(topic, name, dead_letters)


@pytest.fixture
def relay(subscription: Subscription, endpoint: Endpoint) -> Iterator[Relay]:
    running = Relay.push(subscription.name, endpoint.url)
    running.start()
    yield running
    running.stop()


def publish(subscription: Subscription, data: bytes, **attributes: str) -> str:
    return pubsub_v1.PublisherClient().publish(subscription.topic, data, **attributes).result(timeout=30)


def test_a_message_is_posted_as_pub_sub_pushes_it(subscription: Subscription, endpoint: Endpoint, relay) -> None:
    message_id = publish(subscription, b'{"key": "videos/a.mp4"}', kind="clip-request")
    wait_for(lambda: endpoint.deliveries() == 1)
    [body] = endpoint.bodies
    assert body["subscription"] == subscription.name
    message = body["message"]
    assert base64.b64decode(message["data"]) == b'{"key": "videos/a.mp4"}'
    assert message["attributes"] == {"kind": "clip-request"}
    assert message["messageId"] == message_id
    assert message["publishTime"].endswith("Z")
    assert body["deliveryAttempt"] == 1  # the subscription dead-letters: push then says which attempt


def test_an_accepted_push_is_acknowledged_and_not_delivered_again(
    subscription: Subscription, endpoint: Endpoint, relay
) -> None:
    publish(subscription, b"once")
    wait_for(lambda: endpoint.deliveries() == 1)
    time.sleep(3)  # a nack would be redelivered within this (the retry policy's first backoffs)
    assert endpoint.deliveries() == 1


def test_a_refused_push_is_delivered_again_until_accepted(
    subscription: Subscription, endpoint: Endpoint, relay
) -> None:
    endpoint.answer = lambda n: 503 if n <= 2 else 200
    publish(subscription, b"again")
    wait_for(lambda: endpoint.deliveries() == 3, timeout=30)
    time.sleep(3)
    assert [body["deliveryAttempt"] for body in endpoint.bodies] == [1, 2, 3]


def test_a_push_refused_past_the_attempts_is_dead_lettered(
    subscription: Subscription, endpoint: Endpoint, relay
) -> None:
    endpoint.answer = lambda n: 500
    publish(subscription, b"poison")
    subscriber = pubsub_v1.SubscriberClient()

    def dead_lettered() -> list:
        answer = subscriber.pull(
            subscription=subscription.dead_letters, max_messages=10, return_immediately=True, timeout=10
        )
        return [m.message.data for m in answer.received_messages]

    wait_for(lambda: dead_lettered() == [b"poison"], timeout=60)
    assert endpoint.deliveries() == 5


def test_pushes_are_delivered_many_at_once(subscription: Subscription, endpoint: Endpoint) -> None:
    """Pub/Sub pushes each message as it comes, not one after another: four deliveries that each
    wait for the other three all get through."""
    meeting = threading.Barrier(4, timeout=20)

    def answer(n: int) -> int:
        meeting.wait()
        return 204

    endpoint.answer = answer
    running = Relay.push(subscription.name, endpoint.url)
    running.start()
    try:
        for n in range(4):
            publish(subscription, f"m{n}".encode())
        wait_for(lambda: endpoint.deliveries() == 4, timeout=30)
        assert not meeting.broken
    finally:
        running.stop()
