"""Latency and throughput of the HTTP prediction service on this machine.

Starts ``python -m multimodal_fusion serve`` on 127.0.0.1 (a fresh token, the
rate limit out of the way, room for 16 requests at once), waits until it is
ready, then sends real demo contacts (the typed message and the clip of each
contact in ``data/01_raw/incoming``) as multipart forms, ``--requests`` per
concurrency level, each client thread on its own keep-alive connection. One
server per model format (``--formats``; the exports come from ``kedro run
--pipelines export``), one after the other. Prints one line per format and
level, and each server's peak RSS:

    serve <format> c=<n>: p50_ms=<x> p95_ms=<x> p99_ms=<x> throughput=<x>/s errors=<n>

Run from the project root after ``make demo`` (and the export pipeline):

    .venv/bin/python benchmarks/serve.py
    .venv/bin/python benchmarks/serve.py --formats keras onnx_int8
    .venv/bin/python benchmarks/serve.py --requests 100 --concurrency 1 4
"""

from __future__ import annotations

import argparse
import csv
import http.client
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

BOUNDARY = "benchmark-boundary"


def _newest_package(root: Path) -> Path:
    folders = sorted((root / "data/local/06_models/model_package").glob("*/"))
    if not folders:
        sys.exit("no model package under data/local: run `make demo` first")
    return folders[-1] / "model_package"


def _contacts(raw: Path, n: int) -> list[bytes]:
    """Multipart bodies of the first ``n`` incoming contacts with both inputs."""
    with (raw / "texts.csv").open(newline="") as stream:
        texts = {row["id"]: row["text"] for row in csv.DictReader(stream)}
    bodies = []
    for clip in sorted((raw / "audio").iterdir()):
        if clip.stem in texts and texts[clip.stem]:
            bodies.append(_form(texts[clip.stem], clip.read_bytes(), clip.name))
        if len(bodies) == n:
            break
    return bodies


def _form(text: str, audio: bytes, name: str) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
            f"{text}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="audio"; filename="{name}"\r\n\r\n'
        ).encode()
        + audio
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(package: Path, model_format: str, port: int, token: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "multimodal_fusion", "serve"]
    command += ["--package", str(package), "--port", str(port)]
    command += ["--format", model_format]
    command += ["--rate", "100000", "--burst", "100000", "--max-concurrency", "32"]
    server = subprocess.Popen(
        command,
        env={**os.environ, "MF_SERVE_TOKENS": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server stopped while starting")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.terminate()
    sys.exit("the server was not ready within 300 s")


def _run_level(
    port: int, token: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], int, float]:
    """Sends every body once over ``concurrency`` connections: latencies (s),
    errors, wall time."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    queue = iter(range(len(bodies)))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(queue, None)
            if index is None:
                return
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/predict", bodies[index], headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                connection.close()
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    root = Path.cwd()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="default: newest of data/local")
    parser.add_argument("--incoming", type=Path, default=root / "data/01_raw/incoming")
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="per level (contacts repeat when fewer)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--formats", nargs="+", default=["keras", "litert_int8"], help="serve --format"
    )
    args = parser.parse_args()

    package = args.package or _newest_package(root)
    bodies = _contacts(args.incoming, args.requests)
    print(f"package: {package}\ncontacts: {len(bodies)} (text + clip)")
    bodies = [bodies[i % len(bodies)] for i in range(args.requests)]
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for model_format in args.formats:
        _benchmark(package, model_format, bodies, args.concurrency)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _benchmark(
    package: Path, model_format: str, bodies: list[bytes], levels: list[int]
) -> None:
    """One server of ``model_format``: a line per concurrency level, its RSS."""
    token, port = secrets.token_urlsafe(32), _free_port()
    server = _start(package, model_format, port, token)
    try:
        _run_level(port, token, bodies[:10], 1)  # warm connections and caches
        for concurrency in levels:
            latencies, errors, seconds = _run_level(port, token, bodies, concurrency)
            p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
            print(
                f"serve {model_format} c={concurrency}: p50_ms={p50:.1f} "
                f"p95_ms={p95:.1f} p99_ms={p99:.1f} "
                f"throughput={len(latencies) / seconds:.1f}/s errors={errors}"
            )
        rss = _peak_rss_mib(server.pid)
        print(f"serve {model_format}: server peak RSS {rss:.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
