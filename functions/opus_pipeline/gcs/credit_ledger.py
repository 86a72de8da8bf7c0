"""The credit book (``domain/credits.py``) kept in ``STATE_BUCKET``, shared by every instance.

One JSON object of its own, beside the slot table and the request budget, advanced by the one
compare-and-swap (``gcs/cas.py``). It is written when a video is admitted, waits, or its project is
created: a few writes per video, not per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.cloud import storage

from opus_pipeline.domain.credits import CreditBook
from opus_pipeline.gcs.cas import CasObject, Edit

BOOK_OBJECT = "credits/book.json"
R = TypeVar("R")


class CreditLedger:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._object = CasObject(client.bucket(bucket), BOOK_OBJECT)

    def read(self) -> CreditBook:
        return CreditBook.from_json(self._object.read().raw)

    def change(self, month: str, edit: Callable[[CreditBook], R]) -> R:
        """Apply ``edit(book)`` in ``month`` (a new month starts the budget's count again) by CAS."""

        def on_bytes(raw: bytes | None) -> Edit[R]:
            book = CreditBook.from_json(raw)
            book.roll(month)
            result = edit(book)
            after = book.to_json()
            return Edit(result, after if after != raw else None)

        return self._object.change(on_bytes)[0]
