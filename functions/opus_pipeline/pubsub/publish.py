"""The one publish: a message onto a topic, confirmed, and every failure the same transient error.

Used by ingest (clip requests), ``usecases/admit`` (clip requests again), the conclusion (clip results)
and ``opus-pipeline retry``. The Pub/Sub client is about as slow to import as everything else
together, so it is imported and built on the first publish, never at cold start.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from opus_pipeline.errors import TransientError

if TYPE_CHECKING:
    from google.cloud import pubsub_v1

PUBLISH_TIMEOUT_SECONDS = 60.0


class Message(Protocol):
    """What can be published: its JSON body and its attributes (for subscription filters)."""

    def encode(self) -> bytes: ...

    def attributes(self) -> dict[str, str]: ...


class Publisher:
    @cached_property
    def client(self) -> pubsub_v1.PublisherClient:
        """Sends each message at once: every publish here waits for its confirmation, so the client's
        batching (its default holds a message up to 10 ms for more) would only add latency."""
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(max_messages=1))

    def publish(self, topic: str, message: Message, what: str) -> str:
        """Publish ``message`` and wait for Pub/Sub to confirm it; its message id.
        ``TransientError`` (naming ``what``, never a library's text) whatever went wrong."""
        data, attributes = message.encode(), message.attributes()  # a bug here is not Pub/Sub's trouble
        try:
            future = self.client.publish(topic, data, **attributes)
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
        except Exception as exc:
            raise TransientError(f"publishing {what} failed ({type(exc).__name__})") from None
