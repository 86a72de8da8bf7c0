"""The soak gives a schedule the time the pipeline's own backoff takes: pure arithmetic on its plan."""

from __future__ import annotations

from opus_local.soak import conclusion_put_offs
from opus_pipeline.usecases.conclude import FAILED_CONCLUSION_SECONDS


def test_each_failed_conclusion_adds_its_doubling_put_off() -> None:
    faults = [{"endpoint": "exportable-clips", "kind": "drop", "times": 3}]
    assert conclusion_put_offs(faults) == FAILED_CONCLUSION_SECONDS * (1 + 2 + 4)


def test_a_5xx_on_the_clip_list_fails_a_conclusion_as_a_drop_does() -> None:
    drop = [{"endpoint": "exportable-clips", "kind": "drop", "times": 2}]
    status = [{"endpoint": "exportable-clips", "kind": "status", "status": 503, "times": 2}]
    assert conclusion_put_offs(status) == conclusion_put_offs(drop) > 0


def test_a_rate_limited_clip_list_or_another_endpoint_adds_no_put_off() -> None:
    faults = [
        {"endpoint": "exportable-clips", "kind": "status", "status": 429, "times": 3},
        {"endpoint": "project-get", "kind": "drop", "times": 3},
    ]
    assert conclusion_put_offs(faults) == 0
