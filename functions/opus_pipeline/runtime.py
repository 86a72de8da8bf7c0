"""The clients one function instance builds once and reuses across invocations."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google.cloud import pubsub_v1, storage

from . import config, logs
from .ledger import Ledger
from .opus_api import OpusClient
from .status import StatusMirror


@dataclass
class Services:
    settings: config.Settings
    storage: storage.Client
    opus: OpusClient
    publisher: pubsub_v1.PublisherClient
    clock: Callable[[], float] = field(default=time.monotonic)
    wall: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.storage, self.settings.state_bucket)

    @property
    def status(self) -> StatusMirror:
        return StatusMirror(self.storage, enabled=self.settings.status_metadata)


def build(env: Mapping[str, str] | None = None) -> Services:
    """Validate the configuration and create the clients (ADC, or the emulators' variables)."""
    settings = config.load(env)
    logs.register_secret(settings.opus_api_key)
    logs.register_secret(settings.webhook_token or "")
    return Services(
        settings=settings,
        storage=storage.Client(),
        opus=OpusClient(settings.opus_api_base_url, settings.opus_api_key),
        publisher=pubsub_v1.PublisherClient(),
    )
