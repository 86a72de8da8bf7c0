"""Benchmarks: entry-point cold imports and ingest streaming, as ratios against baselines of the same run.

Prints, for each entry point, the cold import time (a fresh process importing ``main`` and what the
entry point imports before it can handle its first event) next to a fresh process importing only
the client libraries that entry point uses (goal ≤ 1.1×); ``--imports-only`` stops there.
Then, for one object of each ``--size`` MiB on loopback:
- ingest throughput ÷ one ``curl --upload-file`` PUT of the same bytes into the stand-in (goal ≥ 0.9);
- ingest wall time ÷ the slower of "read the object" and "send the bytes" (goal ≤ 1.15);
- the ingest process's CPU seconds (user + system, all threads) per GiB beside those of ``curl``
  reading the object plus ``curl`` sending it: the cost of moving the bytes without Python;
- the peak RSS of an ingest process above its RSS before the video (goal ≤ 2.5 chunks, at every size).
Then, for each ``--link-size`` among them, the same ingest and the same ``curl`` PUT on a modelled link
(the stand-in's link model: each session PUT answered ``--link-ms`` after its body arrived, bodies read
at ``--link-mibps``; 30 ms and 100 MiB/s by default), and ingest ÷ curl there (goal ≥ 0.95), printed
next to the loopback figures of that size.
And for one clip of each ``--clip-size`` MiB served by the stand-in, the peak RSS of a process copying
it into fake-gcs-server with ``clip_copy.copy_clip`` above its RSS before (goal ≤ 2.5 × COPY_CHUNK).
And what the duration probe before upload reads of a 1 GiB MP4 whose ``moov`` is at the end.
Timings are not asserted anywhere: machines are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests

from . import emulators
from .function_env import function_env
from .standin_control import StandInControl
from .videos import SALT_BYTES, video_pieces

MIB = 1024 * 1024
API_KEY = "sk-bench-0123456789"
PROJECT = "bench-project"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
XATTR = "user.metadata"  # where fake-gcs-server's filesystem backend keeps an object's attributes

# entry point → (what it imports before handling its first event, the client libraries it uses).
# Project creation checks its body with jsonschema on the first event; ingest imports Pub/Sub only
# when it publishes, after the whole upload, so neither pays for the other's libraries.
ENTRY_POINT_IMPORTS = {
    "on_video_uploaded": (
        "import main, opus_pipeline.usecases.ingest",
        "import functions_framework, google.cloud.storage, requests",
    ),
    "create_clip_project": (
        "import main, opus_pipeline.domain.messages, opus_pipeline.usecases.create_project; "
        "import opus_pipeline.domain.project_request as c; "
        "c.check_command({'videoUrl': 'u', 'curationPref': {'clipDurations': [[0, 90]]}})",
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
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=FUNCTIONS, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the measured statement failed:\n{statement}\n{out.stderr.strip()}")
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


def curl(*args: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one ``curl`` run that discards what it receives."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", "/dev/null", *args], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def curl_put(base_url: str, path: Path, size: int) -> tuple[float, float]:
    headers = [f"Content-Range: bytes 0-{size - 1}/{size}", "Content-Type: application/octet-stream"]
    return curl("-X", "PUT", "-H", headers[0], "-H", headers[1], "--upload-file", str(path), _new_session(base_url))


def read_object(resource: dict, chunk: int) -> float:
    from google.cloud import storage

    from opus_pipeline.domain.events import storage_object
    from opus_pipeline.gcs.source import SourceObject, read_session

    obj = storage_object(resource)
    source, size = SourceObject(storage.Client(), read_session(), obj, obj.generation), obj.size
    view = memoryview(bytearray(chunk))
    start = time.perf_counter()
    for offset in range(0, size, chunk):
        source.read_into(offset, view[: min(chunk, size - offset)])
    return time.perf_counter() - start


def send_bytes(base_url: str, size: int, chunk: int) -> float:
    """Seconds to send ``size`` bytes in one session request, as ingest does, from one chunk in memory."""
    from opus_pipeline.opus.resumable import ResumableSession

    session = ResumableSession(requests.Session(), _new_session(base_url), size)
    view = memoryview(bytearray(os.urandom(chunk)))
    start = time.perf_counter()
    session.put_stream((view[: min(chunk, size - offset)] for offset in range(0, size, chunk)), size)
    return time.perf_counter() - start


def measuring_child(setup: str, measured: str) -> str:
    """Code for a child process that runs ``setup``, then ``measured`` (which binds ``result``), and prints,
    as JSON, ``result`` with the wall and CPU seconds (all threads, user + system) of ``measured``,
    its RSS before and the process's peak RSS."""
    return f"""
import json, time
from pathlib import Path
def kib(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])
{setup}
before, start, cpu = kib("VmRSS:"), time.perf_counter(), time.process_time()
{measured}
print(json.dumps({{"result": result, "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "rss_before_kib": before, "rss_peak_kib": kib("VmHWM:")}}))
"""


# The child measures the ingest function handling one finalize event. It imports the Pub/Sub client
# first, as an instance that has published once has, so that the CPU it counts is the video's.
# The streaming time is what its ``video_uploaded`` log says. STATUS_METADATA=false: on
# fake-gcs-server a metadata patch copies the whole object into a new generation (real GCS only
# bumps the metageneration), which would make the emulator, not the pipeline, the subject.
INGEST_CHILD = measuring_child(
    """
import sys
from google.cloud import pubsub_v1
from opus_pipeline import runtime
from opus_pipeline.domain.events import storage_object
from opus_pipeline.usecases.ingest import handle_finalized
svc = runtime.build()
obj = storage_object(json.loads(sys.argv[1]))
""",
    "result = handle_finalized(obj, svc)",
)

# The child copies one clip; the bucket's metadata is read first, as an instance that has made an API
# call has, so that the growth measured is the copy's.
COPY_CHILD = measuring_child(
    """
import sys
import requests
from google.cloud import storage
from opus_pipeline.opus.clip_download import copy_clip
url, host, bucket, name = sys.argv[1:]
blob = storage.Client().bucket(bucket).blob(name)
blob.bucket.reload()
http = requests.Session()
""",
    "result = copy_clip(http, url, (host,), blob).size",
)


def child(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """Run ``code`` in a fresh interpreter; its measurement and the JSON lines it logged."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[-1], lines[:-1]


def place_video(data: Path, bucket: str, name: str, size_mib: int) -> tuple[Path, dict]:
    """A real MP4 of ``size_mib`` MiB (``videos.video_pieces``: ingest reads a video's duration before
    it sends a byte) written straight into fake-gcs-server's filesystem backend (``data``), and its
    event's object resource.

    Stored through fake-gcs-server's API, an object is held whole in its memory (by the upload
    handler, and again by the backend's CreateObject, even with ``-backend filesystem``; the ``-data``
    folder is read whole with ReadFile at start): 4 GiB got it killed at 22 GB. A file placed here
    with its attributes is served from disk, range by range, without a restart.
    """
    path = data / bucket / name
    digest = hashlib.md5()
    with open(path, "wb") as out:
        for piece in video_pieces(size_mib * MIB, salt=os.urandom(SALT_BYTES), piece=MIB):
            digest.update(piece)
            out.write(piece)
    md5 = base64.b64encode(digest.digest()).decode()
    generation = time.time_ns() // 1000  # as fake-gcs-server's filesystem backend numbers them
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    attrs = {"ContentType": "video/mp4", "Md5Hash": md5, "Etag": md5, "StorageClass": "STANDARD"}
    encoded = json.dumps({**attrs, "Created": now, "Updated": now, "Generation": generation}).encode()
    # The server keeps attributes in an extended attribute when its root supports them, else beside the file.
    try:
        os.getxattr(data, XATTR)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            path.with_name(path.name + ".metadata").write_bytes(encoded)
            encoded = b""
    if encoded:
        os.setxattr(path, XATTR, encoded)
    os.sync()  # flush the file just written, so that no measurement pays for it
    resource = {"bucket": bucket, "name": name, "generation": str(generation), "size": str(size_mib * MIB)}
    return path, {**resource, "contentType": "video/mp4", "md5Hash": md5}


def measure(base_url: str, env: dict[str, str], path: Path, resource: dict, chunk: int, repeat: int) -> dict:
    """Medians of each measurement over ``repeat`` rounds, and the largest RSS growth seen."""
    standin = StandInControl(base_url)
    size = int(resource["size"])
    media = f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b/{resource['bucket']}/o/{resource['name']}?alt=media"
    keys = ("curl", "curl_cpu", "get", "get_cpu", "read", "send", "ingest", "ingest_cpu")
    runs: dict[str, list[float]] = {key: [] for key in keys}
    growth = 0.0
    for _ in range(repeat):
        for key, (wall, cpu) in (("curl", curl_put(base_url, path, size)), ("get", curl(media))):
            runs[key].append(wall)
            runs[f"{key}_cpu"].append(cpu)
        standin.reset()
        runs["read"].append(read_object(resource, chunk))
        runs["send"].append(send_bytes(base_url, size, chunk))
        standin.reset()
        seconds, result = ingest_once(env, resource)
        runs["ingest"].append(seconds)
        runs["ingest_cpu"].append(result["cpu"])
        growth = max(growth, (result["rss_peak_kib"] - result["rss_before_kib"]) / 1024)
        standin.reset()
    return {**{k: statistics.median(v) for k, v in runs.items()}, "growth_mib": growth}


def ingest_once(env: dict[str, str], resource: dict) -> tuple[float, dict]:
    """The ingest function handling the video's event in a fresh child, on a fresh ledger: the streaming
    seconds its ``video_uploaded`` log says, and the child's measurement."""
    clear_ledger(env["STATE_BUCKET"])
    result, logged = child(INGEST_CHILD, json.dumps(resource), env=env)
    uploaded = [line for line in logged if line.get("event") == "video_uploaded"]
    if not uploaded:
        said = "\n".join(str(line.get("message")) for line in logged[-5:])
        raise RuntimeError(f"the ingest child uploaded nothing ({result.get('result')}); it logged last:\n{said}")
    return uploaded[0]["seconds"], result


def measure_link(
    base_url: str, env: dict[str, str], path: Path, resource: dict, link: tuple[float, int], repeat: int
) -> dict:
    """Medians of curl's PUT and of ingest on the stand-in's modelled link (turnaround s, bytes/s), and
    of the number of upload requests ingest sent."""
    standin = StandInControl(base_url)
    size = int(resource["size"])
    runs: dict[str, list[float]] = {"curl": [], "ingest": [], "requests": []}
    for _ in range(repeat):
        standin.reset()  # forgets the configuration too: the link is modelled again each time
        standin.model_link(*link)
        runs["curl"].append(curl_put(base_url, path, size)[0])
        standin.reset()
        standin.model_link(*link)
        runs["ingest"].append(ingest_once(env, resource)[0])
        runs["requests"].append(sum(len(u["puts"]) for u in standin.stats()["uploads"].values()))
    standin.reset()
    return {k: statistics.median(v) for k, v in runs.items()}


def clear_ledger(bucket: str) -> None:
    """Forget every state record, so that the next round streams the same object again."""
    from google.cloud import storage

    for blob in storage.Client().list_blobs(bucket):
        blob.delete()


def clip_url(base_url: str, size: int) -> str:
    """The export URL of a stand-in project's one clip of ``size`` bytes, once the project is complete."""
    standin = StandInControl(base_url)
    standin.configure(clipBytes=size, clipsPerProject=1, projectSeconds=0.2)
    project_id = standin.create_project(API_KEY).json()["id"]
    query = {"q": "findByProjectId", "projectId": project_id, "pageNum": 1, "pageSize": 1}
    while True:
        answer = requests.get(
            f"{base_url}/api/exportable-clips", params=query, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        )
        answer.raise_for_status()
        if answer.json():  # the stand-in's default envelope: a bare array
            return answer.json()[0]["uriForExport"]
        time.sleep(0.1)


def measure_copy(base_url: str, bucket: str, size: int, repeat: int) -> dict:
    """Medians of the copy's wall and CPU seconds over ``repeat`` rounds, and the largest RSS growth seen."""
    from google.cloud import storage

    url, host = clip_url(base_url, size), urlsplit(base_url).netloc
    runs: dict[str, list[float]] = {"wall": [], "cpu": []}
    growth = 0.0
    for _ in range(repeat):
        result, _ = child(COPY_CHILD, url, host, bucket, "clip.mp4")
        if result["result"] != size:
            raise RuntimeError(f"the copy has {result['result']} bytes, the clip {size}")
        storage.Client().bucket(bucket).blob("clip.mp4").delete()  # its file, before the next round writes one
        runs["wall"].append(result["wall"])
        runs["cpu"].append(result["cpu"])
        growth = max(growth, (result["rss_peak_kib"] - result["rss_before_kib"]) / 1024)
    StandInControl(base_url).reset()
    return {**{k: statistics.median(v) for k, v in runs.items()}, "growth_mib": growth}


def measure_probe(root: Path) -> None:
    """What the duration probe before upload reads of a 1 GiB MP4 whose ``moov`` is at the end (the
    worst place for it), as a share of the file (goal ≤ 1 MiB): through the same ranged reader ingest
    uses, counting what its range requests fetch."""
    from opus_pipeline.domain.media_probe import RangedReader, probe_duration

    from . import videos

    source = videos.make_video(root / "probe-source.mp4", seconds=120.0)
    path = videos.pad_mp4(source, root / "probe-1gib.mp4", 1024 * MIB)

    with open(path, "rb") as file:

        def read_range(start: int, end: int) -> bytes:
            file.seek(start)
            return file.read(end - start + 1)

        reader = RangedReader(read_range, path.stat().st_size)
        started = time.perf_counter()
        seconds = probe_duration(reader, name=path.name)
        took = time.perf_counter() - started
    print(
        f"probe of a 1 GiB moov-at-end MP4 ({seconds:.0f} s): {reader.bytes_read:,} bytes in {reader.requests} "
        f"requests = {reader.bytes_read / path.stat().st_size:.6f} of the file (goal ≤ 1 MiB), {took * 1000:.1f} ms",
        flush=True,
    )
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256, 1024, 4096], help="video sizes in MiB")
    # fake-gcs-server holds a whole upload in memory (a few times its size), and the copy is one.
    parser.add_argument("--clip-size", type=int, nargs="*", default=[256, 1024], help="clip sizes in MiB")
    parser.add_argument("--chunk", type=int, default=16, help="UPLOAD_CHUNK_SIZE in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per size; medians are printed")
    # fake-gcs-server handles a resumable upload's chunks slowly (about 2 minutes for 1 GiB here),
    # and the peak RSS of one copy already says what memory needs.
    parser.add_argument("--copy-repeat", type=int, default=1, help="rounds per clip size")
    parser.add_argument("--link-size", type=int, nargs="*", default=[256, 1024], help="sizes also run on the link")
    parser.add_argument("--link-ms", type=float, default=30.0, help="modelled turnaround of a session PUT, ms")
    parser.add_argument("--link-mibps", type=int, default=100, help="modelled link rate, MiB/s")
    parser.add_argument("--link-repeat", type=int, default=3, help="rounds per size on the modelled link")
    parser.add_argument("--import-runs", type=int, default=15, help="runs per import measurement")
    parser.add_argument("--imports-only", action="store_true", help="measure the cold imports only")
    args = parser.parse_args()
    measure_imports(args.import_runs)
    if args.imports_only:
        return
    chunk = args.chunk * MIB
    root = Path(tempfile.mkdtemp(prefix="opus-bench-"))
    measure_probe(root)
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
        for bucket in ("bench-source", "bench-state", "bench-clips"):
            client.create_bucket(bucket)
        env = function_env(
            api_key=API_KEY,
            standin_url=base_url,
            topic=topic,
            source_bucket="bench-source",
            state_bucket="bench-state",
            output_bucket="bench-clips",
            results_topic=topic,
            ingest_topic=topic,
            chunk_size=chunk,
            STATUS_METADATA="false",
        )
        print(
            f"chunk {args.chunk} MiB; loopback; stand-in in its own process; medians of {args.repeat} rounds"
            f" (clip copies: {args.copy_repeat})"
        )
        for size_mib in args.size:
            path, resource = place_video(
                emulators.fake_gcs_data(root / "gcs"), "bench-source", f"video-{size_mib}.mp4", size_mib
            )
            m = measure(base_url, env, path, resource, chunk, args.repeat)
            size = size_mib * MIB
            gib = size / 1024 / MIB
            ingest_cpu, get_cpu, put_cpu = m["ingest_cpu"] / gib, m["get_cpu"] / gib, m["curl_cpu"] / gib
            print(
                f"{size_mib:>6} MiB  curl {size / m['curl'] / MIB:6.1f} MiB/s  read {size / m['read'] / MIB:6.1f} MiB/s"
                f"  send {size / m['send'] / MIB:6.1f} MiB/s  ingest {size / m['ingest'] / MIB:6.1f} MiB/s  |  "
                f"ingest÷curl throughput {m['curl'] / m['ingest']:4.2f} (goal ≥ 0.90)  "
                f"wall÷max(read,send) {m['ingest'] / max(m['read'], m['send']):4.2f} (goal ≤ 1.15)\n"
                f"{'':>11}CPU per GiB: ingest {ingest_cpu:4.2f} s, curl get + curl put {get_cpu + put_cpu:4.2f} s "
                f"({get_cpu:4.2f} + {put_cpu:4.2f}), ratio {ingest_cpu / (get_cpu + put_cpu):4.2f}  |  "
                f"peak RSS growth {m['growth_mib']:6.1f} MiB = {m['growth_mib'] / args.chunk:3.1f} chunks (goal ≤ 2.5)",
                flush=True,
            )
            if size_mib in args.link_size:
                link = (args.link_ms / 1000, args.link_mibps * MIB)
                n = measure_link(base_url, env, path, resource, link, args.link_repeat)
                print(
                    f"{'':>11}modelled link ({args.link_ms:.0f} ms turnaround, {args.link_mibps} MiB/s; medians of "
                    f"{args.link_repeat}): curl {size / n['curl'] / MIB:6.1f} MiB/s  ingest "
                    f"{size / n['ingest'] / MIB:6.1f} MiB/s in {n['requests']:.0f} requests  |  "
                    f"ingest÷curl throughput {n['curl'] / n['ingest']:4.2f} "
                    f"(goal ≥ 0.95; loopback above: {m['curl'] / m['ingest']:4.2f})",
                    flush=True,
                )
            client.bucket("bench-source").blob(path.name).delete()
        from opus_pipeline.opus.clip_download import COPY_CHUNK

        for size_mib in args.clip_size:
            m = measure_copy(base_url, "bench-clips", size_mib * MIB, args.copy_repeat)
            cpu = m["cpu"] / size_mib * 1024
            print(
                f"{size_mib:>6} MiB clip copied in {m['wall']:5.2f} s, {cpu:4.2f} CPU s per GiB  |  "
                f"peak RSS growth {m['growth_mib']:6.1f} MiB = {m['growth_mib'] * MIB / COPY_CHUNK:3.1f} × COPY_CHUNK "
                "(goal ≤ 2.5)",
                flush=True,
            )
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(received, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
