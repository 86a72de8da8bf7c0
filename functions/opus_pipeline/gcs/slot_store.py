"""A family of slot objects in ``STATE_BUCKET``: ``PREFIX<i>``, each held by one holder at a time.

Both of the pipeline's shared limits are kept this way, not as one object every instance writes
(Cloud Storage allows about one write per second to one object name): the project slots
(``gcs/admission.py``, a held slot is an object that exists) and the request budget's grant slots
(``gcs/rate_budget.py``, a slot is taken again once its last grant has left the window). A slot
carries its holder's entry in its metadata, so the whole family is read in one listing; taking
one is the one compare-and-swap (``gcs/cas.py``) on the generation listed, so of two instances
racing for a slot exactly one wins and the other gets ``ConflictError``.
"""

from __future__ import annotations

from google.cloud import storage

from opus_pipeline.gcs.cas import CasObject, Listed, listing


class SlotStore:
    """The slots ``prefix<i>`` of ``bucket``; ``field`` is the metadata key holding a slot's entry."""

    def __init__(self, bucket: storage.Bucket, prefix: str, field: str) -> None:
        self._bucket = bucket
        self.prefix = prefix
        self.field = field

    def held(self) -> dict[int, Listed]:
        """Every slot object that carries an entry, by index (one listing)."""
        slots = {}
        for item in listing(self._bucket, self.prefix):
            index = item.name[len(self.prefix) :]
            if index.isdigit() and self.field in item.metadata:
                slots[int(index)] = item
        return slots

    def take(
        self, index: int, previous: Listed | None, entry: str, body: bytes, more: dict[str, str] | None = None
    ) -> Listed:
        """Make slot ``index`` ours with ``entry`` (and ``more`` metadata), if it is still as ``previous``
        was listed (``None``: absent); the slot as a listing would now show it. ``body`` must be unique to
        this taker, so that a retry of its own landed write is recognised. ``ConflictError`` when another
        instance took it first."""
        slot = CasObject(self._bucket, f"{self.prefix}{index}")
        metadata = {self.field: entry, **(more or {})}
        return Listed(slot.name, slot.write(body, previous.generation if previous else 0, metadata), metadata)

    def give_back(self, item: Listed) -> None:
        """Free the slot ``item`` was listed as (already gone is fine). ``ConflictError`` when it
        changed hands since."""
        CasObject(self._bucket, item.name).delete(item.generation)
