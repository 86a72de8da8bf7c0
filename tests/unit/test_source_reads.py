"""The session source ranges are read through: built from public google.auth, as the storage client
builds its own (Application Default Credentials, or none under the emulator)."""

from __future__ import annotations

import json
from pathlib import Path

import google.oauth2.credentials
import pytest
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession

from opus_pipeline.gcs.source import read_session


def test_under_the_emulator_reads_send_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9023")
    session = read_session()
    assert isinstance(session, AuthorizedSession)
    assert isinstance(session.credentials, AnonymousCredentials)


def test_in_the_cloud_reads_use_application_default_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps({"type": "authorized_user", "client_id": "id", "client_secret": "s", "refresh_token": "r"})
    )
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    session = read_session()
    assert isinstance(session.credentials, google.oauth2.credentials.Credentials)
    assert session.credentials.refresh_token == "r"
