"""What a protocol handler reads (``Request``) and what it answers (``Reply``, ``Stream``, ``HANG_UP``);
``server.Handler`` turns the one into the other on the wire."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any, BinaryIO

from .state import PIECE

if TYPE_CHECKING:
    from .state import Fault


class Request:
    """The request's headers, query string and body, read as the handler needs it."""

    def __init__(self, headers: Message, body: BinaryIO, query: str) -> None:
        self.headers = headers
        self.query = query
        self._body = body
        self.after: Fault | None = None  # a fault that spoils the answer once the call was acted on

    def length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def drain(self, count: int) -> int:
        """Read and forget ``count`` bytes of the body; how many there were."""
        left = count
        while left:
            piece = self._body.read(min(PIECE, left))
            if not piece:
                break
            left -= len(piece)
        return count - left

    def json_body(self) -> Any:
        """The body as JSON; None when empty or not JSON."""
        raw = self._body.read(self.length()) if self.length() else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def readinto(self, buffer: memoryview) -> int:
        return self._body.readinto(buffer)


@dataclass
class Reply:
    """A JSON answer; with no body, an empty one without a Content-Type."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as it is instead of ``body`` (a garbled answer)


@dataclass
class Stream:
    """A 200 with a file's ``size`` bytes, made piece by piece; cut after ``limit`` bytes (then the
    connection hangs up), else ``whole`` is called once they are all sent."""

    content_type: str
    size: int
    pieces: Iterable[bytes]
    limit: int
    whole: Callable[[], None] | None = None


class HangUp:
    """No answer: the connection is closed."""


HANG_UP = HangUp()
Answer = Reply | Stream | HangUp


def fault_answer(fault: Fault | None, request: Request, body_length: int = 0) -> Answer | None:
    """The answer ``fault`` gives instead of the call's own, after draining ``body_length`` bytes of
    the body; None when the call goes on (a slow fault only delays it). A chunk or media drop happens
    part-way through the bytes, so those two handle it themselves."""
    if fault is None:
        return None
    if fault.after:
        request.after = fault
        return None
    if fault.kind == "slow":
        time.sleep(fault.seconds)
        return None
    if fault.kind == "status":
        request.drain(body_length)
        return Reply(fault.status, fault.body, fault.headers)
    if fault.kind == "drop" and fault.endpoint not in ("chunk", "media"):
        request.drain(body_length)
        return HANG_UP
    return None


GARBLED = b'{"id": "P'  # a JSON answer cut short


def spoiled(fault: Fault, answer: Answer) -> Answer:
    """The answer an ``after`` fault gives once the call was acted on: dropped, a status of its own,
    its body garbled, or stamped with the fault's headers."""
    if fault.kind == "drop":
        return HANG_UP
    if fault.kind == "status":
        return Reply(fault.status, fault.body, dict(fault.headers))
    if not isinstance(answer, Reply):
        return answer
    if fault.kind == "garble":
        return Reply(answer.status, None, {**answer.headers, "Content-Type": "application/json"}, raw=GARBLED)
    if fault.kind == "stamp":
        return Reply(answer.status, answer.body, {**answer.headers, **fault.headers}, answer.raw)
    return answer
