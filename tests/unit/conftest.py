"""The unit tier's rule, enforced: a test here opens no socket and starts no process.

Pure logic only (no emulator, no stand-in, no network), so the whole tier runs in seconds on a laptop;
a test that needs a server belongs in tests/integration or tests/e2e.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest


class NotAUnitTestError(RuntimeError):
    """Raised when a unit test reaches for the network or a process."""


@pytest.fixture(autouse=True)
def _no_network_no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise NotAUnitTestError("a unit test opens no socket and starts no process: move it to tests/integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
