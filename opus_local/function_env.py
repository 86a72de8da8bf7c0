"""The environment the functions read on this machine: the stand-in, a topic, a state bucket, the emulators.

The local stack, the benchmark and the test suite all build it here, so that a new setting is wired once.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

# Where the Google Cloud clients find the emulators; copied from this process's environment.
EMULATOR_VARS = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")


def function_env(
    *,
    api_key: str,
    standin_url: str,
    topic: str,
    source_bucket: str,
    state_bucket: str,
    output_bucket: str,
    results_topic: str,
    ingest_topic: str,
    chunk_size: int,
    **overrides: str,
) -> dict[str, str]:
    """Settings for the functions, pointed at the stand-in (the only upload and clip host allowed)
    and the emulators."""
    return {
        "OPUS_API_KEY": api_key,
        "OPUS_API_BASE_URL": standin_url,
        "OPUS_UPLOAD_URL_HOSTS": urlsplit(standin_url).netloc,
        "OPUS_CLIP_URL_HOSTS": urlsplit(standin_url).netloc,
        "CLIP_REQUESTS_TOPIC": topic,
        "SOURCE_BUCKET": source_bucket,
        "STATE_BUCKET": state_bucket,
        "OUTPUT_BUCKET": output_bucket,
        "CLIP_RESULTS_TOPIC": results_topic,
        "INGEST_REQUESTS_TOPIC": ingest_topic,
        "UPLOAD_CHUNK_SIZE": str(chunk_size),
        # Locally nothing else shares the stand-in's budget, and tests make calls fast: a budget that
        # never throttles unless a test or the stack sets its own.
        "OPUS_RATE_PER_MINUTE": "6000",
        # A project the stand-in made is listed at once: a lost create answer is settled within a second.
        "OPUS_CREATE_GRACE_SECONDS": "1",
        **{name: os.environ[name] for name in EMULATOR_VARS if name in os.environ},
        **overrides,
    }
