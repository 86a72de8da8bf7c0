"""Use case: a project slot freed → admit the videos waiting for one, oldest first.

Admitting a video is publishing its clip request again: project creation, which claims the
record first, takes it from there, so two instances admitting the same video create one project.
Conclusions run in the sweeper (the public webhook receiver, which may not publish clip requests,
hands its look on), so the slot a conclusion frees is admitted into at once.
"""

from __future__ import annotations

from functools import partial

from opus_pipeline import logs
from opus_pipeline.domain import states
from opus_pipeline.domain.credits import WAITING_FOR_SLOT
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.slots import SlotTable
from opus_pipeline.runtime import Services


def free_slot(services: Services, key: str) -> None:
    """Give ``key``'s project slot up and admit whoever may go now."""
    admit(services, services.admission.release(key, services.wall()))


def admit_next(services: Services) -> list[str]:
    """Admit the waiting videos the free slots can take now (a freed slot's tick); the keys admitted."""
    keys = services.admission.admit_due(services.wall())
    admit(services, keys)
    return keys


def admit(services: Services, keys: list[str]) -> None:
    for key in keys:
        stored = services.ledger.read_key(key)
        if stored is None or stored.record.state in states.END_STATES:
            services.admission.change(partial(_forget_waiting, key=key))
            continue
        if stored.record.state not in (states.WAITING, states.QUEUED, states.CREATING):
            continue  # asking again by itself (a redelivery): its own request decides
        # ``queued`` or ``creating``: a create call just asked for a slot, was queued, and has not
        # written ``waiting`` yet (a first call asks before it claims the record; a write Cloud
        # Storage may throttle). Skipping it would leave its admission unused, and counted as a slot
        # taken, for ADMIT_GRACE_SECONDS. The admitted request then meets the lease (redelivered),
        # ``waiting`` or a project already made, and goes on or does nothing.
        request = stored.record.clip_request()
        services.publisher.publish(services.settings.clip_requests_topic, request, "the admitted clip request")
        logs.info(
            f"admitted {stored.record.source.uri}: a project slot is free",
            labels={**stored.record.source.labels(), "uploadId": stored.record.upload_id},
            event="video_admitted",
        )


def _forget_waiting(table: SlotTable, key: str) -> None:
    since = _since(table, key)
    if since is not None:  # already gone from the queue
        table.forget({}, {key: since})


def _since(table: SlotTable, key: str) -> float | None:
    return next((w["since"] for w in table.waiting if w["key"] == key), None)


def show_waiting(services: Services, obj: StorageObject, upload_id: str | None, position: int, log: logs.Logger) -> str:
    """Say that ``obj`` waits for a project slot, and where it stands (object metadata and a log line)."""
    extra = {"opus-queue-position": str(position), "opus-waiting-for": WAITING_FOR_SLOT}
    services.status.show(obj, states.WAITING, upload_id=upload_id, extra=extra)
    log.info(
        f"waiting for a free project slot (place {position} in the queue; at most "
        f"{services.settings.max_parallel_projects} projects run at once)",
        event="video_waiting",
        position=position,
    )
    return states.WAITING
