"""A WEBHOOK conclusion action is POSTed when the project ends, signed as OpusClip documents:
hex HMAC-SHA256 under the API key over the raw body followed by X-Opus-Salt; and it misbehaves on command."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import API_KEY

QUIET = 0.5  # how long "nothing more arrives" is watched for


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def signed_with(self, key: str) -> bool:
        expected = hmac.new(key.encode(), self.body + self.headers["X-Opus-Salt"].encode(), hashlib.sha256)
        return hmac.compare_digest(expected.hexdigest(), self.headers["X-Opus-Signature"])


class Receiver:
    """A webhook endpoint on loopback that keeps what it is sent and answers ``status``."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[Delivery] = queue.Queue()
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.put(Delivery(self.path, dict(self.headers), body, time.time()))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/opus-hook?token=s3cret-correlation"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self, timeout: float = 5) -> Delivery:
        return self.deliveries.get(timeout=timeout)

    def nothing_more(self) -> bool:
        try:
            self.deliveries.get(timeout=QUIET)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def create(standin, receiver: Receiver, seconds: float = 0.2, notify_failure: bool = False) -> dict:
    standin.configure(projectSeconds=seconds)
    action = {"type": "WEBHOOK", "url": receiver.url, "notifyFailure": notify_failure}
    response = standin.create_project(API_KEY, conclusionActions=[action])
    assert response.status_code == 201, response.text
    return response.json()


def recorded(standin) -> list[dict]:
    """The stand-in's delivery records, once it has recorded the first (it does so after the answer)."""
    deadline = time.monotonic() + 5
    while not (records := standin.webhooks()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return records


def test_the_webhook_is_sent_once_when_the_project_completes(standin, receiver: Receiver) -> None:
    project = create(standin, receiver)
    delivery = receiver.next()
    assert json.loads(delivery.body) == {"projectId": project["id"], "stage": "COMPLETE"}
    assert delivery.path == "/opus-hook?token=s3cret-correlation" and receiver.nothing_more()


def test_the_webhook_signature_verifies_with_the_api_key(standin, receiver: Receiver) -> None:
    create(standin, receiver)
    delivery = receiver.next()
    assert delivery.signed_with(API_KEY) and len(bytes.fromhex(delivery.headers["X-Opus-Salt"])) == 8


def test_the_webhook_timestamp_is_unix_seconds_of_sending(standin, receiver: Receiver) -> None:
    create(standin, receiver)
    delivery = receiver.next()
    assert abs(int(delivery.headers["X-Opus-Timestamp"]) - delivery.at) < 2


def test_the_delivery_is_recorded_with_the_receivers_status(standin, receiver: Receiver) -> None:
    receiver.status = 500
    project = create(standin, receiver)
    [record] = recorded(standin)
    assert record["projectId"] == project["id"] and record["url"] == receiver.url and record["status"] == 500


def test_a_dropped_webhook_is_not_sent_but_recorded(standin, receiver: Receiver) -> None:
    standin.webhook_fault("drop")
    create(standin, receiver)
    assert receiver.nothing_more()
    [record] = recorded(standin)
    assert record["fault"] == "drop" and record["status"] is None


def test_a_duplicated_webhook_arrives_copies_times_each_with_its_own_salt(standin, receiver: Receiver) -> None:
    standin.webhook_fault("duplicate", copies=3)
    create(standin, receiver)
    deliveries = [receiver.next() for _ in range(3)]
    assert all(d.signed_with(API_KEY) for d in deliveries)
    assert len({d.headers["X-Opus-Salt"] for d in deliveries}) == 3 and receiver.nothing_more()


def test_a_mis_signed_webhook_fails_verification(standin, receiver: Receiver) -> None:
    standin.webhook_fault("bad_signature")
    create(standin, receiver)
    assert not receiver.next().signed_with(API_KEY)


def test_a_delayed_webhook_arrives_that_much_later(standin, receiver: Receiver) -> None:
    standin.webhook_fault("slow", seconds=0.6)
    began = time.time()
    create(standin, receiver, seconds=0.2)
    assert receiver.next().at - began >= 0.8


def test_a_stalled_project_notifies_when_asked_to_notify_failure(standin, receiver: Receiver) -> None:
    standin.stall_next(1)
    project = create(standin, receiver, notify_failure=True)
    assert json.loads(receiver.next().body) == {"projectId": project["id"], "stage": "STALLED"}


def test_a_stalled_project_is_silent_without_notify_failure(standin, receiver: Receiver) -> None:
    standin.stall_next(1)
    create(standin, receiver)
    assert receiver.nothing_more() and standin.webhooks() == []


def test_reset_cancels_webhooks_not_yet_sent(standin, receiver: Receiver) -> None:
    create(standin, receiver, seconds=0.3)
    standin.reset()
    assert receiver.nothing_more()
