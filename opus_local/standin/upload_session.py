"""The resumable upload session, strictly as documented: start (201 + Location), chunk PUTs with
Content-Range (308 + Range, the final one 200) and status queries (``bytes */TOTAL``)."""

from __future__ import annotations

import re
import time

from .exchange import HANG_UP, Answer, Reply, Request, fault_answer
from .state import GRANULARITY, PIECE, Fault, StandIn, Upload

_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def start(state: StandIn, request: Request, link: str) -> Answer:
    """``POST /upload/{uploadId}/google-upload`` with ``x-goog-resumable: start`` and no body."""
    length = request.length()
    if refused := fault_answer(state.take_fault("start"), request, length):
        return refused
    parts = link.split("/")
    upload = state.upload(parts[0]) if len(parts) == 2 else None
    if upload is None:
        return Reply(404, {"message": "unknown upload url"})
    if request.headers.get("x-goog-resumable") != "start" or length != 0:
        request.drain(length)
        return Reply(400, {"message": "expected x-goog-resumable: start and an empty body"})
    token = state.start_session(upload)
    return Reply(201, None, {"Location": f"{state.base_url}/session/{token}", "x-goog-resumable-upload-id": token})


def put(state: StandIn, request: Request, token: str) -> Answer:
    """``PUT /session/{token}``: a chunk (``bytes A-B/TOTAL``) or a status query (``bytes */TOTAL``),
    answered the link model's turnaround after its body arrived (a cut request is not answered)."""
    answer = _put(state, request, token)
    turnaround, _ = state.link()
    if turnaround and answer is not HANG_UP:
        time.sleep(turnaround)
    return answer


def _put(state: StandIn, request: Request, token: str) -> Answer:
    length = request.length()
    match = _CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
    endpoint = "query" if match and match.group(1) is None else "chunk"
    fault = state.take_fault(endpoint)
    if refused := fault_answer(fault, request, length):
        return refused
    upload = state.session_upload(token)
    if fault is not None and fault.kind == "expire" and upload is not None:
        state.expire_session(token)
        upload = None
    if upload is None:
        request.drain(length)
        return Reply(404, {"message": "no such upload session"})
    if not match:
        request.drain(length)
        return Reply(400, {"message": "Content-Range must be 'bytes A-B/TOTAL' or 'bytes */TOTAL'"})
    total = None if match.group(3) == "*" else int(match.group(3))
    if total is not None and upload.total is not None and total != upload.total:
        request.drain(length)
        return Reply(400, {"message": "the total size changed"})
    if endpoint == "query":
        request.drain(length)
        return _progress(upload)
    return _chunk(state, request, upload, int(match.group(1)), int(match.group(2)), total, length, fault)


def _progress(upload: Upload) -> Reply:
    if upload.complete:
        return Reply(200, {"name": upload.upload_id, "size": str(upload.total)})
    headers = {"Range": f"bytes=0-{upload.committed - 1}"} if upload.committed else {}
    return Reply(308, None, headers)


def _chunk(
    state: StandIn,
    request: Request,
    upload: Upload,
    first: int,
    last: int,
    total: int | None,
    length: int,
    fault: Fault | None,
) -> Answer:
    size = last - first + 1
    final = total is not None and last + 1 == total
    problem = _chunk_problem(upload, first, last, total, length, final)
    if problem:
        request.drain(length)
        return Reply(400, {"message": problem})
    drop_at = fault.after_bytes if fault and fault.kind == "drop" else None
    state.count_put(upload, first, last)
    received = _receive(request, upload, first, size, drop_at, state.link()[1])
    state.count_received(received)
    if drop_at is not None or received != size:  # cut short: nothing of it is kept, unless told to
        if fault is not None and fault.keep_received:
            state.commit(upload, first + min(received, size - 1) // GRANULARITY * GRANULARITY, total, False)
        return HANG_UP
    keep = size
    if fault and fault.kind == "keep_fewer" and not final:
        keep = max(0, (size - fault.fewer_bytes) // GRANULARITY * GRANULARITY)
    state.commit(upload, first + keep, total, final and keep == size)
    return _progress(upload)


def _chunk_problem(upload: Upload, first: int, last: int, total: int | None, length: int, final: bool) -> str | None:
    """What makes the chunk ``first``-``last`` of a ``length``-byte body one the session refuses."""
    size = last - first + 1
    if upload.complete:
        return "the upload is already complete"
    if size != length or size <= 0:
        return f"Content-Range names {size} bytes, the body has {length}"
    if first != upload.committed:
        return f"the chunk starts at {first}, the session has committed {upload.committed}"
    if not final and size % GRANULARITY:
        return "a non-final chunk must be a multiple of 256 KiB"
    if total is not None and last >= total:
        return "the chunk ends beyond the total"
    return None


def _receive(request: Request, upload: Upload, offset: int, size: int, drop_at: int | None, rate: int | None) -> int:
    """Write the body at ``offset`` piece by piece, no faster than ``rate`` bytes/s when set; stop
    early for a drop fault (whose bytes are written only when they are to be kept)."""
    limit = size if drop_at is None else min(size, drop_at)
    done, began = 0, time.monotonic()
    buffer = memoryview(bytearray(PIECE))  # reused: the stand-in must not be what a benchmark measures
    with open(upload.path, "r+b", buffering=0) as out:
        out.seek(offset)
        while done < limit:
            count = request.readinto(buffer[: min(PIECE, limit - done)])
            if not count:
                break
            out.write(buffer[:count])
            done += count
            if rate and (ahead := began + done / rate - time.monotonic()) > 0:
                time.sleep(ahead)
        out.truncate(offset + done)
    return done
