"""The one compare-and-swap (``gcs/cas.py``) against fake-gcs-server's generation preconditions."""

from __future__ import annotations

import uuid

import pytest
from google.cloud import storage

from opus_pipeline.errors import ContendedError, InProgressError, TransientError
from opus_pipeline.gcs.cas import CAS_ATTEMPTS, CasObject, Edit


@pytest.fixture
def bucket(gcs: str) -> storage.Bucket:
    return storage.Client().create_bucket(f"cas-{uuid.uuid4().hex[:8]}")


def test_an_edit_that_changes_nothing_writes_nothing(bucket: storage.Bucket) -> None:
    shared = CasObject(bucket, "shared.json")
    generation = shared.write(b"[1]", 0)

    result, after = shared.change(lambda raw: Edit(len(raw or b"")))

    assert (result, after) == (3, generation)
    assert bucket.get_blob("shared.json").generation == generation


def test_an_edit_is_written_with_the_generation_it_read(bucket: storage.Bucket) -> None:
    shared = CasObject(bucket, "shared.json")
    shared.write(b"[1]", 0)

    result, after = shared.change(lambda raw: Edit("grown", raw[:-1] + b",2]"))

    assert result == "grown" and shared.read().raw == b"[1,2]" and shared.read().generation == after


def test_a_lost_race_is_decided_again_on_what_won(bucket: storage.Bucket) -> None:
    shared, rival = CasObject(bucket, "shared.json"), CasObject(bucket, "shared.json")
    shared.write(b"0", 0)
    seen: list[bytes] = []

    def edit(raw: bytes | None) -> Edit[None]:
        seen.append(raw or b"")
        if len(seen) == 1:  # another instance writes between this read and this write
            rival.write(b"5", rival.read().generation)
        return Edit(None, str(int(raw or b"0") + 1).encode())

    shared.change(edit)

    assert seen == [b"0", b"5"] and shared.read().raw == b"6"


def test_a_change_that_loses_every_race_is_contended_not_a_lost_lease(bucket: storage.Bucket) -> None:
    shared, rival = CasObject(bucket, "shared.json"), CasObject(bucket, "shared.json")
    shared.write(b"0", 0)

    tries = []

    def always_overtaken(raw: bytes | None) -> Edit[None]:
        tries.append(raw)
        rival.write(str(int(raw or b"0") + 1).encode(), rival.read().generation)
        return Edit(None, b"mine")

    with pytest.raises(ContendedError) as raised:
        shared.change(always_overtaken)

    assert len(tries) == CAS_ATTEMPTS
    assert isinstance(raised.value, TransientError) and not isinstance(raised.value, InProgressError)


def test_creating_an_object_that_exists_is_a_conflict(bucket: storage.Bucket) -> None:
    from opus_pipeline.errors import ConflictError

    shared = CasObject(bucket, "shared.json")
    shared.write(b"first", 0)

    with pytest.raises(ConflictError):
        shared.write(b"second", 0)


@pytest.mark.parametrize("fault", ["p_drop_mid", "p_drop", "p_503", "p_429"])
def test_a_write_whose_answer_is_lost_or_refused_once_ends_as_ours(
    gcs: str, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Cut after it landed (the library's checksum of the answer fails), dropped, or refused: the
    write is known to be ours and its generation returned, never an unexpected error."""
    from opus_local.gcs_proxy import GcsProxy

    with GcsProxy(gcs, write_rate=None) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        client = storage.Client(project="test")
        bucket = client.create_bucket(f"cas-{uuid.uuid4().hex[:8]}")
        proxy.configure(faults={fault: 1.0, "max_faults": 1, "kinds": ["write"]})
        obj = CasObject(bucket, "record.json")

        generation = obj.write(b'{"state": "queued"}', 0)

        assert obj.read().raw == b'{"state": "queued"}' and obj.read().generation == generation
        assert sum(proxy.stats()[k] for k in ("dropped", "dropped_mid", "injected_503", "injected_429")) == 1
