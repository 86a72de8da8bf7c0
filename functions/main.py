"""Cloud Functions entry points: decode the event, call the library, map the outcome.

A returned call acknowledges the event; a raised exception makes the platform redeliver it.
Which errors are which is decided in ``opus_pipeline.errors``, not here.
"""

from __future__ import annotations

import functools
import os

import flask
import functions_framework
from cloudevents.http import CloudEvent

from opus_pipeline import logs, runtime
from opus_pipeline.domain.events import pubsub_attributes, pubsub_payload, storage_object
from opus_pipeline.errors import ConfigError, PermanentError, TransientError


@functools.cache
def services() -> runtime.Services:
    """Clients and settings, built once per instance (configuration is validated here)."""
    try:
        return runtime.build()
    except ConfigError as exc:
        logs.error(f"the function is misconfigured: {exc}", event="bad_configuration")
        raise


if os.environ.get("K_SERVICE"):  # on Cloud Run: a bad configuration fails the revision at start-up
    services()


PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@functions_framework.cloud_event
def on_video_uploaded(cloud_event: CloudEvent) -> None:
    """``google.cloud.storage.object.v1.finalized``: stream the new video into OpusClip; or a message
    on ``INGEST_REQUESTS_TOPIC``: the sweeper admitted a video that waited for credits."""
    from opus_pipeline.usecases.ingest import handle_finalized  # here: the other entry points never import it

    svc = services()
    if cloud_event["type"] == PUBSUB_PUBLISHED:
        return _ingest_request(cloud_event, svc)
    try:
        obj = storage_object(cloud_event.get_data())
    except PermanentError as exc:
        logs.error(f"ignored an event that cannot be processed: {exc}", event="bad_event", reason=exc.reason)
        return
    try:
        handle_finalized(obj, svc)
    except TransientError as exc:
        logs.warning(f"will be retried: {exc}", labels=obj.labels(), event="retry", reason=exc.reason)
        raise


def _ingest_request(cloud_event: CloudEvent, svc: runtime.Services) -> None:
    from opus_pipeline.domain.messages import IngestRequest
    from opus_pipeline.usecases.ingest import handle_ingest_request

    try:
        request = IngestRequest.decode(pubsub_payload(cloud_event.get_data()))
    except PermanentError as exc:
        logs.error(f"acknowledged an ingest request that can never be processed: {exc}", event="poison_message")
        return
    try:
        handle_ingest_request(request, svc)
    except TransientError as exc:
        logs.warning(f"will be redelivered: {exc}", labels=request.source.labels(), event="retry", reason=exc.reason)
        raise


@functions_framework.cloud_event
def create_clip_project(cloud_event: CloudEvent) -> None:
    """``google.cloud.pubsub.topic.v1.messagePublished``: create the upload's clip project once."""
    from opus_pipeline.domain.messages import ClipRequest  # here: the other entry points never import them
    from opus_pipeline.usecases.create_project import handle_clip_request

    svc = services()
    try:
        request = ClipRequest.decode(pubsub_payload(cloud_event.get_data()))
    except PermanentError as exc:
        logs.error(
            f"acknowledged a clip request that can never be processed: {exc}. Fix the publisher; "
            "the message is dropped.",
            event="poison_message",
            reason=exc.reason,
        )
        return
    labels = {**request.source.labels(), "uploadId": request.upload_id}
    try:
        handle_clip_request(request, svc)
    except TransientError as exc:
        logs.warning(f"will be redelivered: {exc}", labels=labels, event="retry", reason=exc.reason)
        raise


@functions_framework.http
def on_project_concluded(request: flask.Request) -> tuple[str, int]:
    """OpusClip's webhook (the one public endpoint): a hint to look at one video's project, judged
    and handed on to the sweeper within seconds."""
    from opus_pipeline.domain.webhook import MAX_BODY_BYTES
    from opus_pipeline.usecases.conclude import handle_webhook

    svc = services()

    def read_body() -> bytes | None:
        """Called only once the URL's token is judged good: a stranger's body is never read."""
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return None
        body = request.stream.read(MAX_BODY_BYTES + 1)
        return None if len(body) > MAX_BODY_BYTES else body

    try:
        # werkzeug names every header in its canonical form (X-Opus-Signature), so a plain dict looks up alike.
        status = handle_webhook(request.args, dict(request.headers), read_body, svc)
    except TransientError as exc:
        logs.warning(f"webhook: OpusClip could not be asked, the sweeper will look later: {exc}", reason=exc.reason)
        return "try again later\n", 503
    return ("ok\n" if status == 200 else "refused\n"), status


@functions_framework.cloud_event
def sweep_projects(cloud_event: CloudEvent) -> None:
    """A Cloud Scheduler tick through Pub/Sub: look at running projects whose webhook got lost.

    A failed look is logged and left to the next tick; the tick itself is never redelivered. A
    freed slot's tick (scope ``admit``) only admits the next waiting videos; a webhook's (scope
    ``video``) looks at its one video, and concludes it if it ended; an approval's or a
    cancellation's (scope ``publish``) only carries out the publishing plans marked for it."""
    from opus_pipeline.domain.messages import SWEEP_ADMIT, SWEEP_PUBLISH, SWEEP_VIDEO, SweepTick
    from opus_pipeline.errors import PoisonMessageError
    from opus_pipeline.usecases.admit import admit_next
    from opus_pipeline.usecases.publish import publish_approved
    from opus_pipeline.usecases.sweep import look_at, sweep

    scope = SweepTick.scope_of(pubsub_attributes(cloud_event.data))
    if scope == SWEEP_ADMIT:
        admit_next(services())
    elif scope == SWEEP_PUBLISH:
        publish_approved(services())
    elif scope == SWEEP_VIDEO:
        try:
            key = SweepTick.video_of(pubsub_payload(cloud_event.data))
        except PoisonMessageError as exc:
            logs.error(f"acknowledged a sweep tick that names no video: {exc}", event="poison_message")
            return
        look_at(services(), key)
    else:
        sweep(services())
