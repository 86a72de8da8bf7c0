"""``python -m opus_local.standin --port N``: the stand-in alone, until interrupted."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from .server import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="OpusClip stand-in (dev only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    # The key comes from the environment, not argv: a process list shows arguments to everyone.
    parser.add_argument("--api-key-env", default="OPUS_STANDIN_API_KEY", help="variable holding the Bearer key")
    parser.add_argument("--storage-dir", type=Path, default=None)
    args = parser.parse_args()
    storage = args.storage_dir or Path(tempfile.mkdtemp(prefix="opus-standin-"))
    storage.mkdir(parents=True, exist_ok=True)
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        parser.error(f"set {args.api_key_env} to the API key the stand-in accepts")
    server = serve(args.host, args.port, api_key, storage)
    print(f"OpusClip stand-in on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
