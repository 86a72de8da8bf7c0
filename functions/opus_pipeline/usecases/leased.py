"""The one scaffold of a leased use case: a lease of its own, a decision, the record it holds.

Ingest, project creation and the conclusion each work on one video under a lease: they claim its
record (``gcs/claims.py``) with a decision rule from ``domain/states.py`` and then write only
through the ``HeldRecord``. What differs is the rule, the lease's length and what happens next.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Generic

from opus_pipeline import logs
from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import VideoRecord
from opus_pipeline.gcs.claims import HeldRecord, Lease, StepT, claim
from opus_pipeline.runtime import Services

# (state, lease owner, lease expiry, me, now, …) → the step; the rules live in ``domain/states.py``
# (ingest's takes one more argument, with a default).
StepRule = Callable[..., Any]


class LeasedUseCase(Generic[StepT]):
    rule: ClassVar[StepRule]

    def __init__(self, obj: StorageObject, services: Services, log: logs.Logger, lease_seconds: float) -> None:
        self.obj = obj
        self.svc = services
        self.settings = services.settings
        self.log = log
        self.lease = Lease(uuid.uuid4().hex, lease_seconds, services.wall)
        self.held: HeldRecord

    @property
    def record(self) -> VideoRecord:
        return self.held.record

    def decide(self, record: VideoRecord) -> StepT:
        """What to do with ``record`` as it is now (called again after a lost race)."""
        return type(self).rule(
            record.state, record.lease_owner, record.lease_expires, self.lease.owner, self.svc.wall()
        )

    def claim(self, new_record: Callable[[], VideoRecord] | None, **changes: Any) -> StepT:
        """Claim the video's record by this use case's rule; ``self.held`` is the record after."""
        self.held, step = claim(self.svc.ledger, self.obj, self.decide, self.lease, new_record, **changes)
        return step
