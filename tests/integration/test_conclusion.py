"""Following a project to its end: the sweeper, the conclusion, the clips in the output bucket."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import time

import pytest
import requests

from opus_local.gcs_proxy import GcsProxy
from opus_pipeline import runtime
from opus_pipeline.domain import states
from opus_pipeline.domain.events import storage_object
from opus_pipeline.domain.messages import ClipRequest
from opus_pipeline.errors import TransientError
from opus_pipeline.gcs import claims
from opus_pipeline.gcs.admission import Admission
from opus_pipeline.gcs.ledger import Ledger
from opus_pipeline.gcs.open_index import OpenProjects
from opus_pipeline.usecases import conclude
from opus_pipeline.usecases.conclude import check_project
from opus_pipeline.usecases.redrive import retry_video
from opus_pipeline.usecases.sweep import SweepReport, sweep

from conftest import API_KEY, Stack, deliver_concurrently
from support import create, ingest, live_metadata, record, services, uploaded, video, wait_for

LATER = 24 * 3600.0  # a sweep "a day later": every backoff is over


def running_project(stack: Stack, standin, **overrides: str) -> tuple[dict, str]:
    """A video uploaded and its project created; the project's id."""
    resource, request = uploaded(stack)
    assert create(stack, request, **overrides) == states.PROJECT_CREATED
    return resource, record(stack, resource).project_id


def concluded_project(stack: Stack, standin, **overrides: str) -> tuple[dict, str]:
    resource, project_id = running_project(stack, standin, **overrides)
    wait_for(lambda: standin.project(project_id)["stage"] in ("COMPLETE", "STALLED"), timeout=30)
    return resource, project_id


def sweep_later(stack: Stack, **overrides: str):
    svc = services(stack, **overrides)
    svc.wall = lambda: time.time() + LATER
    return sweep(svc)


def output_json(stack: Stack, name: str) -> dict:
    return json.loads(stack.storage.bucket(stack.output_bucket).blob(name).download_as_bytes())


def results(stack: Stack) -> list[dict]:
    return [json.loads(m.message.data) for m in stack.pull(subscription=stack.results_subscription)]


@pytest.fixture(autouse=True)
def quick_projects(standin) -> None:
    standin.configure(projectSeconds=0.5, clipsPerProject=3, clipBytes=300_000)


# -- a lost webhook: the sweeper concludes ---------------------------------------------------


def test_the_sweeper_brings_the_clips_of_a_completed_project_back(stack: Stack, standin) -> None:
    resource, project_id = concluded_project(stack, standin)

    assert sweep_later(stack).concluded == 1

    rec = record(stack, resource)
    manifest_uri = f"gs://{stack.output_bucket}/talk.mp4/clips.json"
    assert rec.state == states.CLIPS_READY and rec.clip_count == 3 and rec.manifest_uri == manifest_uri
    manifest = output_json(stack, "talk.mp4/clips.json")
    assert manifest["schemaVersion"] == 1 and manifest["projectId"] == project_id
    assert manifest["source"] == {
        "bucket": stack.source_bucket,
        "name": "talk.mp4",
        "generation": resource["generation"],
    }
    assert manifest["uploadId"] == rec.upload_id and manifest["stage"] == "COMPLETE" and manifest["concludedAt"]
    md5s = standin.clip_md5s(project_id)
    assert {clip["id"] for clip in manifest["clips"]} == set(md5s)
    for clip in manifest["clips"]:
        blob = stack.storage.bucket(stack.output_bucket).get_blob(clip["gcsUri"].split("/", 3)[3])
        assert clip["copied"] and base64.b64decode(blob.md5_hash).hex() == md5s[clip["id"]]
        assert clip["size"] == blob.size == 300_000 and clip["md5Hash"] == blob.md5_hash
        assert clip["title"] and clip["uriForExport"] and "durationMs" in clip


def test_the_object_shows_clips_ready_with_the_count_and_the_manifest(stack: Stack, standin) -> None:
    concluded_project(stack, standin)
    sweep_later(stack)
    metadata = live_metadata(stack, "talk.mp4")
    assert metadata["opus-status"] == "clips-ready" and metadata["opus-clip-count"] == "3"
    assert metadata["opus-clips"] == f"gs://{stack.output_bucket}/talk.mp4/clips.json"
    assert metadata["opus-stage"] == "COMPLETE"


def test_one_result_message_tells_other_systems(stack: Stack, standin) -> None:
    resource, project_id = concluded_project(stack, standin)
    sweep_later(stack)
    [result] = results(stack)
    assert result == {
        "schemaVersion": 1,
        "source": {"bucket": stack.source_bucket, "name": "talk.mp4", "generation": resource["generation"]},
        "uploadId": record(stack, resource).upload_id,
        "projectId": project_id,
        "status": "clips-ready",
        "clipCount": 3,
        "manifest": f"gs://{stack.output_bucket}/talk.mp4/clips.json",
        "durationSeconds": 2.0,
        "credits": 10,
    }


def test_clips_are_ordered_best_first_by_rank(stack: Stack, standin) -> None:
    standin.configure(scoredClips="all", clipsPerProject=4)
    concluded_project(stack, standin)
    sweep_later(stack)
    ranks = [clip["rank"] for clip in output_json(stack, "talk.mp4/clips.json")["clips"]]
    assert ranks == sorted(ranks)


def test_a_running_project_only_has_its_stage_noted_and_is_looked_at_again_later(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    resource, _ = running_project(stack, standin)

    report = sweep_later(stack)

    rec = record(stack, resource)
    assert report.checked == 1 and report.concluded == 0
    assert rec.state == states.PROJECT_CREATED and rec.checks == 1 and rec.next_check > time.time()
    assert live_metadata(stack, "talk.mp4")["opus-stage"] == rec.stage
    before = standin.calls("project-get")
    assert sweep(services(stack)).checked == 0  # not due yet: no call
    assert standin.calls("project-get") == before


def test_a_sweep_looks_at_no_more_projects_than_its_budget_oldest_first(stack: Stack, standin) -> None:
    standin.configure(projectSeconds=600)
    names = [f"ep{n:02d}.mp4" for n in range(7)]
    for name in names:
        resource = stack.put(name, video())
        ingest(stack, resource, OPUS_MAX_PARALLEL_PROJECTS="10")
    for message in stack.pull():
        create(stack, ClipRequest.decode(message.message.data), OPUS_MAX_PARALLEL_PROJECTS="10")
    before = standin.calls("project-get")

    report = sweep_later(stack, SWEEP_MAX_CALLS="3")

    assert report.open == 7 and report.checked == 3
    assert standin.calls("project-get") - before == 3
    ledger = Ledger(stack.storage, stack.state_bucket)
    looked_at = [s.record.source.name for s in ledger.records(stack.source_bucket) if s.record.checks]
    oldest = [obj.name for obj in OpenProjects(stack.storage, stack.state_bucket).running()][:3]
    assert sorted(looked_at) == sorted(oldest)


# -- a stalled project ------------------------------------------------------------------------


def test_a_project_stalled_past_its_grace_fails_the_video_and_retry_new_project_creates_another(
    stack: Stack, standin
) -> None:
    standin.stall_next()
    resource, first_project = concluded_project(stack, standin)

    sweep_later(stack)  # the stall is seen: watched, not failed
    assert record(stack, resource).state == states.PROJECT_CREATED and record(stack, resource).stage == "STALLED"
    svc = services(stack)
    svc.wall = lambda: time.time() + LATER + 6 * 3600  # STALLED_GRACE_SECONDS' default is over
    sweep(svc)

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == "project-stalled" and "--new-project" in rec.error
    assert live_metadata(stack, "talk.mp4")["opus-status"] == "failed"
    assert [r["status"] for r in results(stack)] == ["failed"]

    ledger = Ledger(stack.storage, stack.state_bucket)
    published = []
    retry_video(stack.storage, ledger, stack.source_bucket, "talk.mp4", published.append, new_project=True)
    assert create(stack, published[0]) == states.PROJECT_CREATED
    assert record(stack, resource).project_id != first_project


# -- idempotence ------------------------------------------------------------------------------


def test_a_webhook_racing_the_sweeper_concludes_once(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    ledger = Ledger(stack.storage, stack.state_bucket)

    def look() -> str:
        return check_project(ledger.read(storage_object(resource)), services(stack), "race")

    outcomes = deliver_concurrently(look, times=3)

    assert states.CLIPS_READY in outcomes
    assert all(o in (states.CLIPS_READY, states.PROJECT_CREATED, states.CONCLUDING) for o in outcomes)
    assert all(f["downloads"] == 1 for f in standin.stats()["clipFiles"].values())
    assert len(results(stack)) == 1


def test_looking_at_a_concluded_video_again_writes_nothing_and_asks_nothing(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    sweep_later(stack)
    ledger = Ledger(stack.storage, stack.state_bucket)
    stored = ledger.read(storage_object(resource))
    calls = standin.calls("project-get")
    assert check_project(stored, services(stack), "again") == states.CLIPS_READY
    assert standin.calls("project-get") == calls
    assert ledger.read(storage_object(resource)).generation == stored.generation
    assert sweep_later(stack).open == 0


# -- copying clips ---------------------------------------------------------------------------


def test_a_clip_that_fails_once_is_copied_on_the_second_attempt(stack: Stack, standin) -> None:
    concluded_project(stack, standin)
    standin.inject({"endpoint": "media", "kind": "status", "status": 503})
    sweep_later(stack)
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    assert all(clip["copied"] for clip in clips)


def test_a_clip_that_never_copies_is_noted_and_does_not_block_the_others(stack: Stack, standin) -> None:
    concluded_project(stack, standin)
    standin.inject({"endpoint": "media", "kind": "status", "status": 500, "times": 3})
    sweep_later(stack)
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    assert [clip["copied"] for clip in clips].count(False) == 1
    assert [clip["copied"] for clip in clips].count(True) == 2
    [failed] = [clip for clip in clips if not clip["copied"]]
    assert "500" in failed["error"] and failed["uriForExport"] and "gcsUri" not in failed


def test_a_clip_host_outside_the_allow_list_is_refused(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    sweep_later(stack, OPUS_CLIP_URL_HOSTS="cdn.opus.pro")
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    assert not any(clip["copied"] for clip in clips)
    assert all("OPUS_CLIP_URL_HOSTS" in clip["error"] for clip in clips)
    assert all(f["downloads"] == 0 for f in standin.stats()["clipFiles"].values())
    assert record(stack, resource).state == states.CLIPS_READY


def test_copying_can_be_turned_off(stack: Stack, standin) -> None:
    concluded_project(stack, standin)
    sweep_later(stack, COPY_CLIPS="false")
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    assert len(clips) == 3 and not any("gcsUri" in clip for clip in clips)
    assert list(stack.storage.list_blobs(stack.output_bucket, prefix="talk.mp4/clips/")) == []


def test_a_failing_clip_list_puts_the_conclusion_off_to_a_later_look(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    standin.inject({"endpoint": "exportable-clips", "kind": "status", "status": 503})
    report = sweep_later(stack)
    rec = record(stack, resource)
    assert report.errors == 1 and rec.state == states.PROJECT_CREATED and rec.conclude_failures == 1
    assert sweep_later(stack).checked == 0  # put off to the next tick: this sweep looks at the others

    later = services(stack)
    later.wall = lambda: time.time() + LATER + 61
    assert sweep(later).concluded == 1


def test_the_copy_is_byte_exact_for_a_clip_of_several_chunks(stack: Stack, standin) -> None:
    standin.configure(clipsPerProject=1, clipBytes=20 * 1024 * 1024 + 17)
    _, project_id = concluded_project(stack, standin)
    sweep_later(stack)
    [clip] = output_json(stack, "talk.mp4/clips.json")["clips"]
    data = stack.storage.bucket(stack.output_bucket).blob(clip["gcsUri"].split("/", 3)[3]).download_as_bytes()
    assert hashlib.md5(data).hexdigest() == standin.clip_md5s(project_id)[clip["id"]]


def test_transient_errors_of_the_project_lookup_are_raised_for_the_webhook(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 503})
    ledger = Ledger(stack.storage, stack.state_bucket)
    with pytest.raises(TransientError):
        check_project(ledger.read(storage_object(resource)), services(stack), "webhook")


# -- reading every page of clips -------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["array", "data"])
@pytest.mark.parametrize(("clips", "pages"), [(5, 3), (4, 3), (1, 1)], ids=["short-last", "exactly-full-last", "one"])
def test_every_page_of_clips_is_read_until_a_short_one(
    stack: Stack, standin, envelope: str, clips: int, pages: int
) -> None:
    standin.configure(clipsPerProject=clips, clipsEnvelope=envelope)
    _, project_id = concluded_project(stack, standin)
    before = standin.calls("exportable-clips")

    found = services(stack).opus.all_clips(project_id, page_size=2)

    assert sorted(clip["id"] for clip in found) == sorted(standin.clip_md5s(project_id))
    assert standin.calls("exportable-clips") - before == pages


# -- trouble with one project ----------------------------------------------------------------


def test_a_project_opusclip_no_longer_has_fails_the_video_and_frees_its_slot(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 404, "body": {"message": "not found"}})

    sweep_later(stack)

    rec = record(stack, resource)
    assert rec.state == states.FAILED and rec.reason == "project-gone" and "opus-pipeline retry" in rec.error
    assert OpenProjects(stack.storage, stack.state_bucket).running() == []
    assert Admission(stack.storage, stack.state_bucket, cap=4).read().in_flight == {}


def test_one_projects_permanent_error_does_not_stop_the_sweep(stack: Stack, standin) -> None:
    first, _ = concluded_project(stack, standin)
    second_resource = stack.put("second.mp4", video())
    ingest(stack, second_resource)
    [message] = stack.pull()
    create(stack, ClipRequest.decode(message.message.data))
    second_project = record(stack, second_resource).project_id
    wait_for(lambda: standin.project(second_project)["stage"] == "COMPLETE", timeout=30)
    standin.inject({"endpoint": "project-get", "kind": "status", "status": 501})

    report = sweep_later(stack)

    assert report.errors == 1 and report.concluded == 1
    states_now = {record(stack, first).state, record(stack, second_resource).state}
    assert states_now == {states.PROJECT_CREATED, states.CLIPS_READY}
    assert sweep_later(stack).open == 1  # the troubled one is looked at again, later


# -- clip files and the record the copies are kept in ---------------------------------------


def clips_with_curation_ids(stack: Stack, project_id: str, curation_ids: list[str]) -> list[dict]:
    """OpusClip's clip list of ``project_id`` (real, copyable files) with other curation ids."""
    clips = requests.get(
        f"{stack.standin_url}/api/exportable-clips",
        params={"q": "findByProjectId", "projectId": project_id, "pageNum": 1, "pageSize": 50},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ).json()
    clips = clips.get("data", clips) if isinstance(clips, dict) else clips
    return [
        {**clip, "curationId": ident, "id": f"{project_id}.{ident}"}
        for clip, ident in zip(clips, curation_ids, strict=True)
    ]


def test_clips_whose_ids_slug_alike_are_copied_to_different_files(stack: Stack, standin) -> None:
    _, project_id = concluded_project(stack, standin)
    clips = clips_with_curation_ids(stack, project_id, ["CU/1", "CU_1", "CU?1"])
    standin.inject({"endpoint": "exportable-clips", "kind": "status", "status": 200, "body": clips})

    sweep_later(stack)

    manifest = output_json(stack, "talk.mp4/clips.json")
    assert all(clip["copied"] for clip in manifest["clips"])
    assert len({clip["gcsUri"] for clip in manifest["clips"]}) == 3
    videos = [
        b for b in stack.storage.list_blobs(stack.output_bucket, prefix="talk.mp4/clips/") if b.name.endswith(".mp4")
    ]
    assert len(videos) == 3


class _RememberingLedger(Ledger):
    """The real ledger; it also keeps each record it wrote next to a copy of its ``copied``."""

    def __init__(self, client, bucket: str, written: list) -> None:
        super().__init__(client, bucket)
        self._written = written

    def write(self, stored, record):
        result = super().write(stored, record)
        self._written.append((result.record.copied, copy.deepcopy(result.record.copied)))
        return result


def test_a_saved_record_never_sees_its_copies_change_afterwards(
    stack: Stack, standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease renewer serialises the held record from its own thread: a record once written
    must not have its ``copied`` grow under it ("dictionary changed size during iteration")."""
    monkeypatch.setattr(claims, "CHECKPOINT_SECONDS", 0.0)  # every copy noted by a write of its own
    resource, _ = concluded_project(stack, standin)
    svc = services(stack)
    written: list = []
    watched = _WatchingServices(**{f.name: getattr(svc, f.name) for f in dataclasses.fields(svc)})
    watched.written = written

    stored = Ledger(stack.storage, stack.state_bucket).read(storage_object(resource))
    assert check_project(stored, watched, "webhook") == states.CLIPS_READY

    copies = [(kept, snapshot) for kept, snapshot in written if snapshot]
    assert len(copies) >= 3
    assert all(kept == snapshot for kept, snapshot in copies)


class _WatchingServices(runtime.Services):
    written: list

    @property
    def ledger(self) -> Ledger:
        return _RememberingLedger(self.storage, self.settings.state_bucket, self.written)


@pytest.mark.parametrize("name", ["talk.mp4/clips.json", "talk.mp4/index.html"])
def test_a_manifest_or_page_write_meeting_a_storage_fault_is_retried_without_fetching_a_clip_twice(
    stack: Stack, standin, gcs: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    resource, _ = concluded_project(stack, standin)
    with GcsProxy(gcs) as proxy:
        proxy.configure(faults={"p_503": 1.0, "max_faults": 1, "kinds": ["write"], "prefix": name})
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # the functions' client, built next
        assert sweep_later(stack).concluded == 1
        assert proxy.stats()["injected_503"] == 1

    assert record(stack, resource).state == states.CLIPS_READY
    assert {clip["downloads"] for clip in standin.stats()["clipFiles"].values()} == {1}


# -- a takeover and the copies its record had no time to note ------------------------------


class _Crashed(BaseException):
    """The conclusion's process dying: nothing after it runs, not even the put-off."""


def crashed_after_the_copies(stack: Stack, standin, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str]:
    """A completed project whose conclusion died once its clips were copied, before its record
    noted any of them; the video's resource and project id."""

    def died(self, doc):
        raise _Crashed

    resource, project_id = concluded_project(stack, standin)
    with monkeypatch.context() as crash:
        crash.setattr(claims, "CHECKPOINT_SECONDS", LATER)  # the copies ride on a write never made
        crash.setattr(conclude._Conclusion, "_write_manifest", died)
        crash.setattr(conclude._Conclusion, "_put_off", lambda self: None)
        with pytest.raises(_Crashed):
            sweep_later(stack)
    return resource, project_id


def take_over(stack: Stack) -> SweepReport:
    """A sweep once the dead conclusion's lease has lapsed."""
    svc = services(stack)
    svc.wall = lambda: time.time() + 2 * LATER
    return sweep(svc)


def test_a_takeover_keeps_the_copies_its_record_had_no_time_to_note(
    stack: Stack, standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource, project_id = crashed_after_the_copies(stack, standin, monkeypatch)
    assert record(stack, resource).copied == {}

    assert take_over(stack).concluded == 1

    assert {clip["downloads"] for clip in standin.stats()["clipFiles"].values()} == {1}
    manifest = output_json(stack, "talk.mp4/clips.json")
    assert all(clip["copied"] for clip in manifest["clips"]) and len(manifest["clips"]) == 3
    for clip in manifest["clips"]:
        blob = stack.storage.bucket(stack.output_bucket).get_blob(clip["gcsUri"].split("/", 3)[3])
        assert (blob.md5_hash, blob.size) == (clip["md5Hash"], clip["size"])
        assert blob.metadata["opus-project-id"] == project_id and blob.metadata["opus-clip-id"] == clip["id"]


@pytest.mark.parametrize("marks", [None, {"opus-project-id": "P-another", "opus-clip-id": "CU-another"}])
def test_a_takeover_fetches_again_a_clip_whose_object_lacks_its_marks(
    stack: Stack, standin, monkeypatch: pytest.MonkeyPatch, marks: dict | None
) -> None:
    _, project_id = crashed_after_the_copies(stack, standin, monkeypatch)
    bucket = stack.storage.bucket(stack.output_bucket)
    copies = [b for b in bucket.list_blobs(prefix="talk.mp4/clips/") if b.name.endswith(".mp4")]
    assert len(copies) == 3
    for copy_ in copies:  # replaced meanwhile by something else: other bytes, other marks or none
        replaced = bucket.blob(copy_.name)
        replaced.metadata = marks
        replaced.upload_from_string(b"not this clip")

    assert take_over(stack).concluded == 1

    assert {clip["downloads"] for clip in standin.stats()["clipFiles"].values()} == {2}
    for clip in output_json(stack, "talk.mp4/clips.json")["clips"]:
        blob = bucket.get_blob(clip["gcsUri"].split("/", 3)[3])
        assert blob.size == clip["size"] == 300_000 and blob.metadata["opus-project-id"] == project_id


def test_a_conclusion_notes_every_copy_in_the_record_it_ends_with(stack: Stack, standin) -> None:
    resource, _ = concluded_project(stack, standin)

    assert sweep_later(stack).concluded == 1

    assert {clip["downloads"] for clip in standin.stats()["clipFiles"].values()} == {1}
    rec = record(stack, resource)
    clips = output_json(stack, "talk.mp4/clips.json")["clips"]
    assert set(rec.copied) == {clip["id"] for clip in clips} and all(c["copied"] for c in rec.copied.values())
