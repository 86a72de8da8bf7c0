"""What the pipeline accepts from outside: names, generations, clip-request fields (pure logic)."""

from __future__ import annotations

import json

import pytest

from opus_pipeline.domain.events import name_problem, parse_generation, pubsub_attributes, storage_object
from opus_pipeline.domain.messages import SWEEP_ADMIT, SWEEP_ALL, ClipRequest, SweepTick
from opus_pipeline.domain.record import object_from_key
from opus_pipeline.domain.webhook import LOOK_INTERVAL_SECONDS, look_due, video_token
from opus_pipeline.errors import PermanentError, PoisonMessageError

SOURCE = {"bucket": "b", "name": "talk.mp4", "generation": "5", "size": 1}


def message(**changes: object) -> bytes:
    body = {"schemaVersion": 1, "uploadId": "up_1", "source": SOURCE, "preferences": {}, "uploadedAt": "t"}
    return json.dumps({**body, **changes}).encode()


def test_a_well_formed_request_decodes() -> None:
    assert ClipRequest.decode(message()).source.key == "b/talk.mp4#5"


@pytest.mark.parametrize("version", [1.0, True, "1"], ids=["float", "bool", "string"])
def test_schema_version_must_be_the_integer_1(version: object) -> None:
    with pytest.raises(PoisonMessageError, match="schemaVersion"):
        ClipRequest.decode(message(schemaVersion=version))


@pytest.mark.parametrize("upload_id", ["up\r\n1", "up\x001", "up\u20281", "u" * 257], ids=["crlf", "nul", "ls", "long"])
def test_an_upload_id_with_control_characters_is_poison(upload_id: str) -> None:
    with pytest.raises(PoisonMessageError, match="uploadId"):
        ClipRequest.decode(message(uploadId=upload_id))


@pytest.mark.parametrize("name", ["", "a\nb.mp4", "a\rb.mp4", "x" * 1025], ids=["empty", "lf", "cr", "long"])
def test_a_request_naming_an_impossible_object_is_poison(name: str) -> None:
    with pytest.raises(PoisonMessageError, match=r"source\.name"):
        ClipRequest.decode(message(source={**SOURCE, "name": name}))


@pytest.mark.parametrize("generation", ["+5", " 5", "5_0", "٥", "-1", "0x5"])
def test_generations_are_digits_only(generation: str) -> None:
    with pytest.raises(ValueError):
        parse_generation(generation)
    with pytest.raises(ValueError):
        object_from_key(f"b/talk.mp4#{generation}")
    with pytest.raises(PoisonMessageError, match="generation"):
        ClipRequest.decode(message(source={**SOURCE, "generation": generation}))
    with pytest.raises(PermanentError):
        storage_object({"bucket": "b", "name": "talk.mp4", "generation": generation})


def test_names_are_1_to_1024_bytes_of_utf8_and_their_record_must_fit_too() -> None:
    assert name_problem("é" * 512) is None  # 1024 bytes
    assert "1026 bytes" in (name_problem("é" * 513) or "")
    assert name_problem("\udc80.mp4") == "the object name is not valid UTF-8"
    assert "state record" in (name_problem("v.mp4", ["videos/" + "x" * 1020]) or "")


def test_a_video_token_is_per_video_and_per_secret() -> None:
    token = video_token("secret-one-0123456789", "b/a.mp4#1")
    assert token != video_token("secret-one-0123456789", "b/b.mp4#1")
    assert token != video_token("secret-two-0123456789", "b/a.mp4#1")
    assert len(token) == 64 and "secret" not in token


def test_a_webhook_look_is_due_once_a_minute() -> None:
    assert look_due(0.0, 1000.0)
    assert not look_due(1000.0, 1000.0 + LOOK_INTERVAL_SECONDS - 1)
    assert look_due(1000.0, 1000.0 + LOOK_INTERVAL_SECONDS)
    assert look_due(2000.0, 1000.0)  # a look "in the future" (another clock): not trusted to hold calls off


def test_a_tick_asks_only_to_admit_when_its_attribute_says_so() -> None:
    tick = SweepTick("a project slot was freed", scope=SWEEP_ADMIT)
    event_data = {"message": {"data": "", "attributes": tick.attributes()}}
    assert SweepTick.scope_of(pubsub_attributes(event_data)) == SWEEP_ADMIT


@pytest.mark.parametrize(
    "data",
    [None, {}, {"message": {"data": ""}}, {"message": {"attributes": {"scope": "ADMIT"}}}, {"message": "x"}],
    ids=["none", "empty", "no-attributes", "other-scope", "not-a-message"],
)
def test_any_other_tick_sweeps_all(data: object) -> None:
    assert SweepTick.scope_of(pubsub_attributes(data)) == SWEEP_ALL
