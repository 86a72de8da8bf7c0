"""Benchmarks: entry-point cold imports and ingest streaming, as ratios against baselines of the same run.

Prints, for each entry point, the cold import time (a fresh process importing ``main`` and what the
entry point imports before it can handle its first event) next to a fresh process importing only
the client libraries that entry point uses (goal ≤ 1.1×); ``--imports-only`` stops there.
Then, for one object of ``--size`` MiB on loopback:
- ingest throughput ÷ one ``curl --upload-file`` PUT of the same bytes into the stand-in (goal ≥ 0.9);
- ingest wall time ÷ the slower of "read the object" and "send the bytes" (goal ≤ 1.15);
- the peak RSS of an ingest process above its RSS before the video (goal: about two chunks, the
  same for every size).
Timings are not asserted anywhere: machines are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from . import emulators
from .function_env import function_env
from .standin_control import StandInControl

MIB = 1024 * 1024
API_KEY = "sk-bench-0123456789"
PROJECT = "bench-project"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"

# entry point → (what it imports before handling its first event, the client libraries it uses).
# Project creation checks its body with jsonschema on the first event; ingest imports Pub/Sub only
# when it publishes, after the whole upload, so neither pays for the other's libraries.
ENTRY_POINT_IMPORTS = {
    "on_video_uploaded": (
        "import main, opus_pipeline.ingest",
        "import functions_framework, google.cloud.storage, requests",
    ),
    "create_clip_project": (
        "import main, opus_pipeline.messages, opus_pipeline.projects, opus_pipeline.clip_command as c; "
        "c.check_command({'videoUrl': 'u'})",
        "import functions_framework, google.cloud.storage, requests, jsonschema",
    ),
}
LATER_IMPORT = "from google.cloud import pubsub_v1"  # ingest's, at its first publish


def import_seconds(statement: str) -> float:
    """Seconds a fresh interpreter spends running ``statement`` (imports, mostly), measured inside it."""
    code = f"import time\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)"
    # Bytecode caches on, for our modules as for the installed libraries (a deployed instance has them).
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPATH"] = str(FUNCTIONS)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=FUNCTIONS, check=True, capture_output=True)
    return float(out.stdout.split()[-1])


def measure_imports(repeat: int) -> None:
    """Print each entry point's cold import beside the bare import of its libraries, medians of alternating runs."""
    print(f"cold imports, fresh interpreter each, medians of {repeat} runs", flush=True)
    statements = [s for pair in ENTRY_POINT_IMPORTS.values() for s in pair] + [LATER_IMPORT]
    for statement in statements:  # once, unmeasured: bytecode caches and the page cache are warm for all
        import_seconds(statement)
    runs: dict[str, list[float]] = {statement: [] for statement in statements}
    for _ in range(repeat):
        for statement in statements:
            runs[statement].append(import_seconds(statement))
    ms = {statement: statistics.median(times) * 1000 for statement, times in runs.items()}
    least = {statement: min(times) * 1000 for statement, times in runs.items()}  # the least disturbed run
    for name, (entry, bare) in ENTRY_POINT_IMPORTS.items():
        libraries = bare.removeprefix("import ")
        print(
            f"  {name:20} {ms[entry]:5.0f} ms   bare {libraries} {ms[bare]:5.0f} ms   "
            f"ratio {ms[entry] / ms[bare]:4.2f} (goal ≤ 1.10; fastest runs {least[entry] / least[bare]:4.2f})",
            flush=True,
        )
    print(f"  (on_video_uploaded imports google.cloud.pubsub_v1 at its first publish: {ms[LATER_IMPORT]:.0f} ms alone)")


def _new_session(base_url: str) -> str:
    return StandInControl(base_url).open_session(API_KEY)


def curl_put(base_url: str, path: Path, size: int) -> float:
    session = _new_session(base_url)
    start = time.perf_counter()
    subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "-H",
            f"Content-Range: bytes 0-{size - 1}/{size}",
            "-H",
            "Content-Type: application/octet-stream",
            "--upload-file",
            str(path),
            session,
        ],
        check=True,
    )
    return time.perf_counter() - start


def read_object(bucket: str, name: str, size: int, chunk: int) -> float:
    from google.cloud import storage

    from opus_pipeline.source import SourceObject

    client = storage.Client()
    blob = client.bucket(bucket).get_blob(name)
    source = SourceObject(
        client, {"bucket": bucket, "name": name, "size": size, "md5Hash": blob.md5_hash}, int(blob.generation)
    )
    view = memoryview(bytearray(chunk))
    start = time.perf_counter()
    for offset in range(0, size, chunk):
        source.read_into(offset, view[: min(chunk, size - offset)])
    return time.perf_counter() - start


def send_bytes(base_url: str, size: int, chunk: int) -> float:
    from opus_pipeline import resumable

    session_url = _new_session(base_url)
    http = requests.Session()
    view = memoryview(bytearray(os.urandom(chunk)))
    start = time.perf_counter()
    for offset in range(0, size, chunk):
        resumable.put_chunk(http, session_url, view[: min(chunk, size - offset)], offset, size)
    return time.perf_counter() - start


# The child measures its peak RSS over its RSS before the video; the streaming time is what its
# ``video_uploaded`` log says. STATUS_METADATA=false: on fake-gcs-server a metadata patch copies
# the whole object into a new generation (real GCS only bumps the metageneration), which would
# make the emulator, not the pipeline, the subject of the measurement.
INGEST_CHILD = """
import json, sys
from opus_pipeline import runtime
from opus_pipeline.events import storage_object
from opus_pipeline.ingest import handle_finalized
from pathlib import Path
def kib(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])
svc = runtime.build()
obj = storage_object(json.loads(sys.argv[1]))
before = kib("VmRSS:")
state = handle_finalized(obj, svc)
print(json.dumps({"state": state, "rss_before_kib": before, "rss_peak_kib": kib("VmHWM:")}))
"""


def ingest(env: dict[str, str], resource: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD, json.dumps(resource)],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    streamed = next(line for line in lines if line.get("event") == "video_uploaded")
    return {**lines[-1], "seconds": streamed["seconds"]}


def write_video(client, path: Path, size_mib: int) -> dict:
    """A random file of ``size_mib`` MiB, uploaded to the source bucket; its event's object resource."""
    with open(path, "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))
    blob = client.bucket("bench-source").blob(path.name, chunk_size=32 * MIB)
    blob.upload_from_filename(str(path), content_type="video/mp4")
    os.sync()  # flush the files just written, so that no measurement pays for it
    return {
        "bucket": "bench-source",
        "name": path.name,
        "generation": str(blob.generation),
        "size": str(size_mib * MIB),
        "contentType": "video/mp4",
        "md5Hash": blob.md5_hash,
    }


def measure(base_url: str, env: dict[str, str], path: Path, resource: dict, chunk: int, repeat: int) -> dict:
    """Medians of each measurement over ``repeat`` rounds, and the largest RSS growth seen."""
    standin = StandInControl(base_url)
    size = int(resource["size"])
    runs: dict[str, list[float]] = {"curl": [], "read": [], "send": [], "ingest": []}
    growth = 0.0
    for _ in range(repeat):
        runs["curl"].append(curl_put(base_url, path, size))
        standin.reset()
        runs["read"].append(read_object(resource["bucket"], resource["name"], size, chunk))
        runs["send"].append(send_bytes(base_url, size, chunk))
        standin.reset()
        clear_ledger(env["STATE_BUCKET"])
        result = ingest(env, resource)
        runs["ingest"].append(result["seconds"])
        growth = max(growth, (result["rss_peak_kib"] - result["rss_before_kib"]) / 1024)
        standin.reset()
    return {**{k: statistics.median(v) for k, v in runs.items()}, "growth_mib": growth}


def clear_ledger(bucket: str) -> None:
    """Forget every state record, so that the next round streams the same object again."""
    from google.cloud import storage

    for blob in storage.Client().list_blobs(bucket):
        blob.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # fake-gcs-server holds a whole upload in memory (about 5x its size): keep sizes to 1-2 GiB here.
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="object sizes in MiB")
    parser.add_argument("--chunk", type=int, default=16, help="UPLOAD_CHUNK_SIZE in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per size; medians are printed")
    parser.add_argument("--import-runs", type=int, default=15, help="runs per import measurement")
    parser.add_argument("--imports-only", action="store_true", help="measure the cold imports only")
    args = parser.parse_args()
    measure_imports(args.import_runs)
    if args.imports_only:
        return
    chunk = args.chunk * MIB
    root = Path(tempfile.mkdtemp(prefix="opus-bench-"))
    # The stand-in keeps what it receives in memory-backed files, so that no measurement is slowed
    # by the disk flushing what an earlier one wrote.
    received = Path(tempfile.mkdtemp(prefix="opus-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    processes = []
    try:
        processes.append(pubsub := emulators.start_pubsub(root))
        processes.append(gcs := emulators.start_fake_gcs(root / "gcs"))
        processes.append(standin := emulators.start_standin(received, API_KEY, root / "standin.log"))
        base_url = f"http://127.0.0.1:{standin.port}"
        os.environ.update(
            {
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs.port}",
                "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{pubsub.port}",
                "GOOGLE_CLOUD_PROJECT": PROJECT,
            }
        )
        from google.cloud import pubsub_v1, storage

        topic = f"projects/{PROJECT}/topics/clip-requests"
        pubsub_v1.PublisherClient().create_topic(name=topic)
        client = storage.Client()
        client.create_bucket("bench-source")
        client.create_bucket("bench-state")
        env = function_env(
            api_key=API_KEY,
            standin_url=base_url,
            topic=topic,
            state_bucket="bench-state",
            output_bucket="bench-clips",
            results_topic=topic,
            chunk_size=chunk,
            STATUS_METADATA="false",
        )
        print(f"chunk {args.chunk} MiB; loopback; stand-in in its own process; medians of {args.repeat} rounds")
        for size_mib in args.size:
            path = root / f"video-{size_mib}.mp4"
            resource = write_video(client, path, size_mib)
            m = measure(base_url, env, path, resource, chunk, args.repeat)
            path.unlink()
            client.bucket("bench-source").blob(path.name).delete()
            size = size_mib * MIB
            print(
                f"{size_mib:>6} MiB  curl {size / m['curl'] / MIB:6.1f} MiB/s  read {size / m['read'] / MIB:6.1f} MiB/s"
                f"  send {size / m['send'] / MIB:6.1f} MiB/s  ingest {size / m['ingest'] / MIB:6.1f} MiB/s  |  "
                f"ingest÷curl throughput {m['curl'] / m['ingest']:4.2f} (goal ≥ 0.90)  "
                f"wall÷max(read,send) {m['ingest'] / max(m['read'], m['send']):4.2f} (goal ≤ 1.15)  "
                f"peak RSS growth {m['growth_mib']:6.1f} MiB = {m['growth_mib'] / args.chunk:3.1f} chunks",
                flush=True,
            )
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(received, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
