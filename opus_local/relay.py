"""The local stand-ins for Eventarc and for Pub/Sub push: messages pulled from a subscription of the
Pub/Sub emulator by a streaming pull, each POSTed to a function as the platform would deliver it.

- ``Relay.eventarc``: fake-gcs-server publishes OBJECT_FINALIZE notifications (payload: the object
  resource) to a topic; each becomes the ``google.cloud.storage.object.v1.finalized`` CloudEvent
  that Eventarc would deliver, POSTed in binary content mode, and, as Eventarc does with
  RETRY_POLICY_RETRY, is redelivered with backoff while the function answers an error.
- ``Relay.push``: a push subscription's deliveries, the JSON envelope Pub/Sub POSTs (``push_body``),
  acknowledged by one of the statuses push takes as success and otherwise nacked. The subscription is
  an ordinary one with the push subscription's retry and dead-letter policies, which the emulator
  applies to a nack as Pub/Sub does to a refused push: the redelivery waits the retry policy's
  backoff (the emulator redelivers a first nack at once, later ones after about 2–3 s), the attempts
  are counted (``deliveryAttempt``) and a message past ``max_delivery_attempts`` is dead-lettered.

Why not the emulator's own push: it polls its push subscriptions, delivering a message about 0.1 s
after its publish (21–122 ms measured) and at most two at a time, where Pub/Sub pushes as a message
comes and many at once. Every hop of the pipeline (a webhook's tick to the sweeper, an admitted clip
request to project creation) paid that on the local stack only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

FINALIZED = "google.cloud.storage.object.v1.finalized"
EVENTARC_MAX_BACKOFF_SECONDS = 10.0
# Eventarc and Pub/Sub push an event as it comes, every one to an instance of its own; here as many
# at once as the function's server has threads (functions-framework: 4 per core).
CONCURRENT_DELIVERIES = 4 * (os.cpu_count() or 1)
PUSH_ACK_STATUSES = frozenset({102, 200, 201, 202, 204})  # the answers Pub/Sub push takes as an ack

Message = pubsub_v1.subscriber.message.Message
Delivery = tuple[dict[str, str], bytes]  # the headers and body POSTed for one message


def finalized_event(resource: dict) -> CloudEvent:
    return CloudEvent(
        {
            "type": FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
            "subject": f"objects/{resource['name']}",
        },
        resource,
    )


def push_body(data: bytes, attributes: dict[str, str], message_id: str, subscription: str) -> dict[str, Any]:
    """A Pub/Sub push request's JSON (the fields functions-framework turns into a CloudEvent)."""
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": message_id}
    return {"message": message, "subscription": subscription}


def _pushed(message: Message, subscription: str) -> Delivery:
    body = push_body(message.data, dict(message.attributes), message.message_id, subscription)
    body["message"]["publishTime"] = message.publish_time.isoformat().replace("+00:00", "Z")
    if message.delivery_attempt is not None:  # set when the subscription dead-letters, as in a push
        body["deliveryAttempt"] = message.delivery_attempt
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def _finalized(message: Message) -> Delivery | None:
    if message.attributes.get("eventType") != "OBJECT_FINALIZE":
        return None  # not an event Eventarc's trigger delivers: acknowledged
    headers, body = to_binary(finalized_event(json.loads(message.data)))
    return dict(headers), body


class Relay:
    """Pull ``subscription`` and POST each message, as ``render`` makes it, to ``target_url``; an answer
    ``accepted`` acknowledges it, any other waits ``backoff(attempt)`` and nacks it (redelivered)."""

    def __init__(
        self,
        subscription: str,
        target_url: str,
        render: Callable[[Message], Delivery | None],
        backoff: Callable[[int], float],
        accepted: Callable[[int], bool],
    ) -> None:
        self._subscription = subscription
        self._target = target_url
        self._render = render
        self._backoff = backoff
        self._accepted = accepted
        self._subscriber = pubsub_v1.SubscriberClient()
        self._future: pubsub_v1.subscriber.futures.StreamingPullFuture | None = None
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.delivered = 0

    @classmethod
    def eventarc(cls, subscription: str, target_url: str) -> Relay:
        """Eventarc's trigger on OBJECT_FINALIZE: CloudEvents, redelivered with backoff while refused."""
        return cls(
            subscription,
            target_url,
            _finalized,
            backoff=lambda attempt: min(EVENTARC_MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)),
            accepted=lambda status: 200 <= status < 300,
        )

    @classmethod
    def push(cls, subscription: str, target_url: str) -> Relay:
        """A push subscription's deliveries; its own retry policy spaces the redeliveries of a nack."""
        return cls(
            subscription,
            target_url,
            lambda message: _pushed(message, subscription),
            backoff=lambda attempt: 0.0,
            accepted=lambda status: status in PUSH_ACK_STATUSES,
        )

    def _deliver(self, message: Message) -> None:
        delivery = self._render(message)
        if delivery is None:
            message.ack()
            return
        headers, body = delivery
        try:
            ok = self._accepted(requests.post(self._target, headers=headers, data=body, timeout=600).status_code)
        except requests.RequestException:
            ok = False
        if ok:
            with self._lock:
                self.delivered += 1
                self._attempts.pop(message.message_id, None)
            message.ack()
            return
        with self._lock:
            attempt = self._attempts[message.message_id] = self._attempts.get(message.message_id, 0) + 1
        wait = self._backoff(attempt)
        if wait:
            time.sleep(wait)
        message.nack()

    def start(self) -> None:
        flow = pubsub_v1.types.FlowControl(max_messages=CONCURRENT_DELIVERIES)
        self._future = self._subscriber.subscribe(self._subscription, self._deliver, flow_control=flow)

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):  # a cancelled stream ends with an error by design
                self._future.result(timeout=10)
        self._subscriber.close()
