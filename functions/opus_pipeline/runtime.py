"""The clients one function instance builds once and reuses across invocations.

Every function gets the same ``Services``; what a function never uses costs nothing, since the
Pub/Sub client is imported and built on the first publish (``pubsub/publish.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import requests
from google.cloud import storage

from opus_pipeline import config, logs
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.credit_ledger import CreditLedger
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.open_index import OpenProjects
from opus_pipeline.gcs.rate_budget import RateLimiter
from opus_pipeline.gcs.source import read_session
from opus_pipeline.gcs.status_mirror import StatusMirror
from opus_pipeline.opus.client import OpusClient
from opus_pipeline.pubsub.publish import Publisher


@dataclass
class Services:
    settings: config.Settings
    storage: storage.Client
    opus: OpusClient
    clock: Callable[[], float] = field(default=time.monotonic)
    wall: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)

    publisher: Publisher = field(default_factory=Publisher)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.storage, self.settings.state_bucket)

    @property
    def open_projects(self) -> OpenProjects:
        return OpenProjects(self.storage, self.settings.state_bucket)

    @cached_property
    def admission(self) -> Admission:
        return Admission(self.storage, self.settings.state_bucket, self.settings.max_parallel_projects)

    @property
    def credit_ledger(self) -> CreditLedger:
        return CreditLedger(self.storage, self.settings.state_bucket, self.wall)

    @cached_property
    def source_reads(self) -> requests.Session:
        """The session every source range is read through, one per instance (its pooled connections
        serve the next video)."""
        return read_session()

    @cached_property
    def status(self) -> StatusMirror:
        """One mirror per instance, so that a background status write is waited for by the next one."""
        return StatusMirror(self.storage, enabled=self.settings.status_metadata)


def build(env: Mapping[str, str] | None = None) -> Services:
    """Validate the configuration and create the clients (ADC, or the emulators' variables)."""
    settings = config.load(env)
    logs.register_secret(settings.opus_api_key)
    logs.register_secret(settings.webhook_token or "")
    client = storage.Client()
    limiter = RateLimiter(client, settings.state_bucket, settings.rate_per_minute)
    return Services(
        settings=settings,
        storage=client,
        opus=OpusClient(
            settings.opus_api_base_url, settings.opus_api_key, limiter=limiter, org_id=settings.opus_org_id
        ),
    )
