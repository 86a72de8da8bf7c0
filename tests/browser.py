"""A real browser for tests of what a person sees: Debian's chromium, headless, driven by playwright.

Only the ``playwright`` Python package is used, whose wheel carries its own driver; its browser
downloads (``playwright install``) are never run, because this machine and CI reach no download
host. It launches the system's ``/usr/bin/chromium`` instead, with no sandbox (tests run as root)
and with every background service that would phone out switched off, so the only traffic is the
page's own. Beside it: a static HTTP server on 127.0.0.1 that serves a folder laid out like the
output bucket and keeps a log of every path asked, and ffmpeg to make small real clips and posters.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",  # we run as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
FFMPEG = "ffmpeg"


def missing_tools() -> list[str]:
    """What this harness needs from Debian (``apt-get install chromium ffmpeg``) and is not here."""
    missing = [] if CHROMIUM.is_file() else [str(CHROMIUM)]
    return missing + ([] if shutil.which(FFMPEG) else [FFMPEG])


@contextmanager
def chromium() -> Iterator[Browser]:
    """One headless chromium (and playwright's driver process), both ended on the way out."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """One page in its own browser context, with everything it asked for and complained about."""

    page: Page
    requests: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)


@contextmanager
def visit(browser: Browser, url: str, viewport: tuple[int, int] = (1280, 900)) -> Iterator[Visit]:
    """Open ``url`` in a fresh context (no cache or cookies shared between tests) and record
    every request the page makes, from the document itself to each media range."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    try:
        page = context.new_page()
        seen = Visit(page)

        def on_response(response: Response) -> None:
            if response.status >= 400:
                seen.failed_responses.append(f"{response.status} {response.url}")

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                seen.console_errors.append(message.text)

        def on_request(request: Request) -> None:
            seen.requests.append(request.url)

        context.on("request", on_request)
        page.on("response", on_response)
        page.on("console", on_console)
        page.goto(url, wait_until="load")
        yield seen
    finally:
        context.close()


class _Handler(SimpleHTTPRequestHandler):
    """Serves the folder; notes each request instead of printing it."""

    log: list[tuple[str, int]]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticSite:
    """``root`` over HTTP on 127.0.0.1, as a browser would see the output bucket's objects."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log: list[tuple[str, int]] = []
        handler = type("Handler", (_Handler,), {"log": self.log})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="static-site", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def make_clip(path: Path, seconds: float = 2) -> Path:
    """A small real H.264/AAC MP4 (moov first, as OpusClip's exports are), playable by chromium."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=320x240:rate=25"],
        ["-f", "lavfi", "-i", f"sine=duration={seconds}"],
        ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(path)],
    )
    return path


def make_poster(video: Path, path: Path, at_seconds: float = 0) -> Path:
    """One frame of ``video`` as a JPEG, the way OpusClip's thumbnails are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg(["-ss", str(at_seconds), "-i", str(video)], ["-frames:v", "1", "-q:v", "4", str(path)])
    return path


def _ffmpeg(*parts: list[str]) -> None:
    command = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for part in parts:
        command += part
    subprocess.run(command, check=True, timeout=60, stdin=subprocess.DEVNULL)
