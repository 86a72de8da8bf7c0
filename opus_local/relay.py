"""The local stand-in for Eventarc: GCS notifications in Pub/Sub → CloudEvents POSTed to a function.

fake-gcs-server publishes OBJECT_FINALIZE notifications (payload: the object resource) to a
topic; this relay turns each into the ``google.cloud.storage.object.v1.finalized`` CloudEvent
that Eventarc would deliver, POSTs it in binary content mode, and, as Eventarc does with
RETRY_POLICY_RETRY, redelivers with backoff while the function answers an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

FINALIZED = "google.cloud.storage.object.v1.finalized"
MAX_BACKOFF_SECONDS = 10.0
CONCURRENT_DELIVERIES = 4 * (os.cpu_count() or 1)


def finalized_event(resource: dict) -> CloudEvent:
    return CloudEvent(
        {
            "type": FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
            "subject": f"objects/{resource['name']}",
        },
        resource,
    )


class Relay:
    def __init__(self, subscription: str, target_url: str) -> None:
        self._subscription = subscription
        self._target = target_url
        self._subscriber = pubsub_v1.SubscriberClient()
        self._future: pubsub_v1.subscriber.futures.StreamingPullFuture | None = None
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.delivered = 0

    def _deliver(self, message: pubsub_v1.subscriber.message.Message) -> None:
        if message.attributes.get("eventType") != "OBJECT_FINALIZE":
            message.ack()
            return
        headers, body = to_binary(finalized_event(json.loads(message.data)))
        try:
            ok = requests.post(self._target, headers=headers, data=body, timeout=600).ok
        except requests.RequestException:
            ok = False
        if ok:
            self.delivered += 1
            message.ack()
            return
        with self._lock:
            attempt = self._attempts[message.message_id] = self._attempts.get(message.message_id, 0) + 1
        time.sleep(min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)))
        message.nack()

    def start(self) -> None:
        """Eventarc pushes each event as it comes, every one to an instance of its own; here as many
        at once as the function's server has threads (functions-framework: 4 per core)."""
        flow = pubsub_v1.types.FlowControl(max_messages=CONCURRENT_DELIVERIES)
        self._future = self._subscriber.subscribe(self._subscription, self._deliver, flow_control=flow)

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):  # a cancelled stream ends with an error by design
                self._future.result(timeout=10)
        self._subscriber.close()
