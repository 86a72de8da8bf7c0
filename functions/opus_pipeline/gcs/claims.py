"""The one claim protocol of every use case, and the record an invocation then holds.

``claim`` reads (or starts) a video's record, lets the use case decide, and takes the lease in
the same compare-and-swap when the decision says so; a lost race decides again on what won.
``HeldRecord`` is what the winner writes through until it lets the lease go.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from opus_pipeline.domain.events import StorageObject
from opus_pipeline.domain.record import Stored, VideoRecord
from opus_pipeline.errors import ConflictError, InProgressError, PipelineError, UnknownVideoError
from opus_pipeline.gcs.cas import Edit
from opus_pipeline.gcs.ledger import Ledger


class Step(Protocol):
    """A use case's decision about a record; ``claims`` says whether it takes the lease."""

    @property
    def claims(self) -> bool: ...


StepT = TypeVar("StepT", bound=Step)
RENEW_LOOKS = 30  # how often per lease length ``keep_alive`` looks whether a renewal is due (no I/O)
# Cloud Storage allows about one write per second to one object: progress noted by ``checkpoint``
# is written at most this often, the rest rides on the holder's next write.
CHECKPOINT_SECONDS = 1.0


@dataclass(frozen=True)
class Lease:
    """Who claims, for how long, on which clock (``wall``: lease expiries are compared across
    instances, so they are wall-clock seconds)."""

    owner: str
    seconds: float
    wall: Callable[[], float] = time.time

    def until(self) -> float:
        return self.wall() + self.seconds


def claim(
    ledger: Ledger,
    obj: StorageObject,
    decide: Callable[[VideoRecord], StepT],
    lease: Lease,
    new_record: Callable[[], VideoRecord] | None,
    **changes: Any,
) -> tuple[HeldRecord, StepT]:
    """Read (or start with ``new_record``) the record of ``obj`` and ``decide`` on it; when the
    step ``claims``, take the lease (and apply ``changes``) in the same CAS. A lost race decides
    again. Without ``new_record``, a missing record is ``UnknownVideoError``."""

    def edit(raw: bytes | None) -> Edit[tuple[VideoRecord, StepT]]:
        if raw is not None:
            current = VideoRecord.from_json(raw)
        elif new_record is not None:
            current = new_record()
        else:
            raise UnknownVideoError(f"the pipeline has no record of {obj.uri}")
        step = decide(current)
        if not step.claims and raw is not None:
            return Edit((current, step))
        record = current
        if step.claims:
            record = record.replace(lease_owner=lease.owner, lease_expires=lease.until(), **changes)
        if raw is None:
            record = ledger.checked_new(record, initial=current.state)
        else:
            record = ledger.checked_next(current, record)
        return Edit((record, step), record.to_json())

    (record, step), generation = ledger.cas(obj).change(edit)
    return HeldRecord(ledger, Stored(record, generation), lease), step


class HeldRecord:
    """The record an invocation holds the lease of; each write is a CAS on the one it last wrote.

    Losing a CAS means another invocation took the lease over: ``InProgressError`` stops this one.
    Writes are serialized by a lock, so ``keep_alive``'s renewals and the holder's own writes
    never race each other.
    """

    def __init__(self, ledger: Ledger, stored: Stored, lease: Lease) -> None:
        self._ledger = ledger
        self._stored = stored
        self._lease = lease
        self._lock = threading.RLock()
        self._pending: dict[str, Any] = {}  # noted by ``checkpoint``, not written yet
        self._written_at = time.monotonic()  # the claim has just written the record (or read it)

    @property
    def record(self) -> VideoRecord:
        """The record as this holder has it: as last written, with the progress noted since."""
        with self._lock:
            return self._stored.record.replace(**self._pending) if self._pending else self._stored.record

    def save(self, **changes: Any) -> None:
        """Write ``changes``; while the lease is ours each write extends it too, so that the
        renewals need not add writes of their own (Cloud Storage allows about one write per second
        to one object, and a renewal throttled past the lease's end lets another delivery in)."""
        with self._lock:
            changes = {**self._pending, **changes}
            if self.leased():
                changes = {"lease_expires": self._lease.until(), **changes}
            try:
                self._stored = self._ledger.write(self._stored, self.record.replace(**changes))
            except ConflictError:
                raise InProgressError("another invocation took over this video's record") from None
            self._pending = {}
            self._written_at = time.monotonic()

    def leased(self) -> bool:
        """Whether the record names this holder's lease (False: read, not claimed yet)."""
        return self.record.lease_owner == self._lease.owner

    def checkpoint(self, **changes: Any) -> None:
        """Note progress a takeover would use (the clips copied so far): written now if the record
        was last written ``CHECKPOINT_SECONDS`` ago or more, else with the next write, or by
        ``keep_alive`` once that second has passed. A burst of progress then costs no write Cloud
        Storage would throttle, and a crash loses at most the progress of the last second or so (the
        takeover redoes it: each step must be safe to redo)."""
        with self._lock:
            self._pending.update(changes)
            if self._pending and time.monotonic() - self._written_at >= CHECKPOINT_SECONDS:
                self.save()

    def renew(self, **changes: Any) -> None:
        """Extend the lease (with ``changes``, e.g. the committed offset) while it is ours."""
        with self._lock:
            if self.leased():
                self.save(**changes)

    def renewed_lately(self) -> bool:
        """Whether a write extended the lease within the last third of its length."""
        return self.record.lease_expires - self._lease.wall() > self._lease.seconds * 2 / 3

    def release(self, **changes: Any) -> None:
        """Write ``changes`` and give the lease up, so a retry can go on at once."""
        self.save(lease_owner=None, lease_expires=0.0, **changes)

    def settle(self, state: str, exc: PipelineError, **changes: Any) -> None:
        """End in ``state`` for the reason ``exc`` gives; an open session is forgotten."""
        self.release(state=state, reason=exc.reason, error=str(exc), **changes)

    @contextlib.contextmanager
    def keep_alive(self, on_lost: Callable[[Exception], None] | None = None) -> Iterator[None]:
        """Renew the lease while the body runs, once a third of its length has passed since it was
        last extended (the holder's own writes extend it too: no renewal is written then), from a
        thread of its own: a blocking call (a slow PUT, a long ``Retry-After``) cannot outlive the
        lease while this process lives, and a crashed process stops renewing, so its lease lapses.
        Looked at every ``RENEW_LOOKS``-th of the lease, so about two thirds of it are left when
        a renewal starts, time enough for a write Cloud Storage throttles, and at least every
        ``CHECKPOINT_SECONDS``: progress noted (``checkpoint``) and not carried by a write of the holder
        meanwhile is written then."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(min(self._lease.seconds / RENEW_LOOKS, CHECKPOINT_SECONDS)):
                try:
                    if not self.renewed_lately():
                        self.renew()
                    else:
                        self.checkpoint()
                except Exception as exc:  # lost to another invocation, or storage trouble
                    if on_lost is not None:
                        on_lost(exc)
                    if isinstance(exc, InProgressError):
                        return

        renewer = threading.Thread(target=renew_until_stopped, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
