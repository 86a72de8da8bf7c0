"""The HTTP server: ``Handler`` parses a request, finds its route, and writes the answer."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import routes
from .exchange import Answer, Reply, Request, Stream, spoiled
from .state import StandIn


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StandIn


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own logs
        return

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        found = routes.find(method, path)
        if found is None:
            return self._write(Reply(404, {"message": "not found"}))
        respond, params = found
        request = Request(self.headers, self.rfile, query)
        answer = respond(self.server.state, request, **params)
        if path.startswith("/api/") and isinstance(answer, Reply):  # OpusClip stamps every API answer
            answer.headers = {**self.server.state.usage_headers(), **answer.headers}
        if request.after is not None:  # acted on, then its answer spoiled
            answer = spoiled(request.after, answer)
        return self._write(answer)

    def _write(self, answer: Answer) -> None:
        if isinstance(answer, Reply):
            self._reply(answer)
        elif isinstance(answer, Stream):
            self._stream(answer)
        else:
            self._hang_up()

    def _reply(self, reply: Reply) -> None:
        payload = reply.raw if reply.raw is not None else b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.body is not None and "Content-Type" not in reply.headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, stream: Stream) -> None:
        self.send_response(200)
        self.send_header("Content-Type", stream.content_type)
        self.send_header("Content-Length", str(stream.size))
        self.end_headers()
        sent = 0
        for piece in stream.pieces:
            part = piece[: stream.limit - sent]
            self.wfile.write(part)
            sent += len(part)
            if sent >= stream.limit:
                break
        if sent < stream.size:
            return self._hang_up()
        if stream.whole is not None:
            stream.whole()
        return None

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def serve(host: str, port: int, api_key: str, storage_dir: Path) -> _Server:
    """Create the server (bound, not yet serving); ``serve_forever`` it on a thread or here."""
    server = _Server((host, port), Handler)
    server.state = StandIn(api_key, storage_dir)
    server.state.base_url = f"http://{host}:{server.server_address[1]}"
    return server
