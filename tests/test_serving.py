"""The HTTP prediction service, against real uvicorn servers on loopback serving
the toy project's model package.

Two servers start once for the module: ``main`` (generous limits, a 2 MiB body
limit) and ``tight`` (burst of 3, one request at a time, a 2 s timeout) for the
rate, concurrency and timeout limits. Requests go over raw sockets so that
malformed ones can be sent as they are.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from multimodal_fusion.package import ModelPackage, result_of
from multimodal_fusion.serving.settings import ServeConfigError, tokens_from_credentials
from tests.test_inference import _package_folder

TOKEN = "main-token-0123456789abcdef"
TOKEN_B = "second-token-0123456789abcdef"
TOKEN_C = "third-token-0123456789abcdef"
BOUNDARY = "test-boundary-7d3f"
MARKER_TEXT = "zebra quokka marker never logged"
CLIENT_FILE = "../../etc/secret-client-name.wav"
READY_SECONDS = 180
TIMEOUT = 30


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(package: Path, log: Path, tokens: str, *args: str) -> Server:
    port = _free_port()
    command = [sys.executable, "-m", "multimodal_fusion", "serve"]
    command += ["--package", str(package), "--port", str(port), *args]
    stream = log.open("wb")
    process = subprocess.Popen(
        command,
        env={**os.environ, "MF_SERVE_TOKENS": tokens},
        stdout=stream,
        stderr=subprocess.STDOUT,
    )
    return Server(process, port, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log.read_text()
        try:
            if _call(server, "GET", "/readyz", timeout=5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"server not ready in {READY_SECONDS} s: {server.log.read_text()}")


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=20)


@pytest.fixture(scope="module")
def package_folder(toy_project: Path) -> Path:
    return _package_folder(toy_project)


@pytest.fixture(scope="module")
def servers(package_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """The main and the tight server, started side by side."""
    logs = tmp_path_factory.mktemp("serve")
    main = _start(
        package_folder,
        logs / "main.log",
        TOKEN,
        *("--max-body-mb", "2", "--rate", "100", "--burst", "400"),
        *("--max-concurrency", "8", "--max-batch", "8", "--timeout", "20"),
    )
    tight = _start(
        package_folder,
        logs / "tight.log",
        ",".join([TOKEN, TOKEN_B, TOKEN_C]),
        *("--rate", "0.2", "--burst", "3", "--max-concurrency", "1"),
        *("--timeout", "2"),
    )
    try:
        _wait_ready(main)
        _wait_ready(tight)
        yield {"main": main, "tight": tight}
    finally:
        _stop(main)
        _stop(tight)


@pytest.fixture(scope="module")
def main(servers) -> Server:
    return servers["main"]


@pytest.fixture(scope="module")
def package(package_folder: Path) -> ModelPackage:
    return ModelPackage.load(package_folder)


@pytest.fixture(scope="module")
def clip(toy_project: Path) -> bytes:
    return (toy_project / "data/01_raw/audio/t0003.wav").read_bytes()


# --- talking to the server ------------------------------------------------------


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_reply(sock: socket.socket) -> Reply:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body)


def _open(
    server: Server, method: str, path: str, body: bytes, headers: dict[str, str]
) -> socket.socket:
    """Sends a request's head and ``body`` (as given: it may be incomplete)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        sock.sendall(_head(method, path, headers) + body)
    except OSError:  # the server may answer and close before reading it all
        pass
    return sock


def _call(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    token: str | None = TOKEN,
    timeout: float = TIMEOUT,
) -> Reply:
    given = {name: value for name, value in (headers or {}).items() if value}
    headers = {"Content-Length": str(len(body)), **given}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sock = _open(server, method, path, body, headers)
    sock.settimeout(timeout)
    with sock:
        return _read_reply(sock)


def _form(
    text: str | bytes | None = None,
    audio: bytes | None = None,
    filename: str = "clip.wav",
) -> tuple[bytes, dict[str, str]]:
    parts = []
    if text is not None:
        value = text.encode() if isinstance(text, str) else text
        parts.append(
            b'Content-Disposition: form-data; name="text"\r\n\r\n' + value + b"\r\n"
        )
    if audio is not None:
        parts.append(
            f'Content-Disposition: form-data; name="audio"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + audio
            + b"\r\n"
        )
    body = b"".join(f"--{BOUNDARY}\r\n".encode() + p for p in parts)
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _predict(server: Server, **form: Any) -> Reply:
    body, headers = _form(**form)
    return _call(server, "POST", "/v1/predict", body, headers)


def _wav(seconds: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.2 * np.sin(2 * np.pi * 300 * t), rate, format="WAV")
    return buffer.getvalue()


def _expected(package: ModelPackage, texts: list, audio: list) -> list[dict]:
    rows = package.predict(texts=texts, audio=audio)
    return [result_of(row) for _, row in rows.iterrows()]


def _same_prediction(served: dict, direct: dict) -> None:
    assert served["label"] == direct["label"]
    assert served["modalities"] == direct["modalities"]
    assert served["package_version"] == direct["package_version"]
    assert [t["label"] for t in served["top"]] == [t["label"] for t in direct["top"]]
    np.testing.assert_allclose(
        [t["probability"] for t in served["top"]],
        [t["probability"] for t in direct["top"]],
        # float32: a batch's size and padding change the order of the
        # network's sums (2e-6 relative seen between a micro-batch and alone)
        rtol=1e-5,
        atol=1e-6,
    )


# --- predictions ----------------------------------------------------------------


def test_predictions_equal_the_package(main, package, clip):
    cases = [
        ("my card is lost", None),
        (None, clip),
        ("my parcel is late", clip),
        ("refund please", b"not audio at all"),  # predicted from the text
    ]
    for text, audio in cases:
        reply = _predict(main, text=text, audio=audio)
        assert reply.status == 200, reply.body
        served = reply.json()
        direct = _expected(package, [text], [audio])[0]
        _same_prediction(served, direct)
        assert served["rejected_inputs"] == direct["rejected_inputs"]
        assert len(served["request_id"]) == 32
        assert reply.headers["x-request-id"] == served["request_id"]
    assert served["rejected_inputs"] == {"audio": "unrecognised_format"}


def test_a_batch_equals_the_package_on_the_same_contacts(main, package, clip):
    texts = ["my card is lost", None, "my parcel is late", None]
    audio = [None, clip, clip, None]
    contacts = [
        {"text": t, "audio": base64.b64encode(a).decode() if a else None}
        for t, a in zip(texts, audio, strict=True)
    ]
    body = json.dumps({"contacts": contacts}).encode()
    reply = _call(
        main, "POST", "/v1/predict/batch", body, {"Content-Type": "application/json"}
    )
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    direct = _expected(package, texts, audio)
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    for served, expected in zip(results[:3], direct[:3], strict=True):
        _same_prediction(served, expected)
    assert results[3]["status"] == "rejected"
    assert results[3]["reason"] == "no_usable_modality"


def _model_calls(server: Server) -> float:
    metrics = _call(server, "GET", "/metrics").body.decode()
    line = next(
        x for x in metrics.splitlines() if x.startswith("mf_model_batch_contacts_count")
    )
    return float(line.split()[-1])


def test_concurrent_requests_share_model_calls_and_equal_the_package(
    main, package, toy_project
):
    clips = sorted((toy_project / "data/01_raw/audio").glob("*.wav"))[:8]
    texts = [f"my card number {i} is lost" for i in range(len(clips))]
    audio = [c.read_bytes() for c in clips]
    calls_before = _model_calls(main)
    start = threading.Barrier(len(clips))

    def send(i: int) -> Reply:
        start.wait()
        return _predict(main, text=texts[i], audio=audio[i])

    with ThreadPoolExecutor(len(clips)) as pool:
        replies = list(pool.map(send, range(len(clips))))
    for i, reply in enumerate(replies):
        assert reply.status == 200, reply.body
        _same_prediction(reply.json(), _expected(package, [texts[i]], [audio[i]])[0])
    # Requests that arrived while the model was busy were predicted together.
    assert _model_calls(main) - calls_before < len(clips)


def test_health_readiness_docs_and_metrics(main):
    assert _call(main, "GET", "/healthz", token=None).json() == {"status": "ok"}
    ready = _call(main, "GET", "/readyz", token=None).json()
    assert ready["status"] == "ready"
    assert ready["format"] == "keras"
    paths = _call(main, "GET", "/openapi.json", token=None).json()["paths"]
    assert {"/v1/predict", "/v1/predict/batch", "/healthz", "/readyz"} <= set(paths)
    assert _call(main, "GET", "/docs", token=None).status == 200

    _predict(main, text="my card is lost")
    metrics = _call(main, "GET", "/metrics").body.decode()
    assert 'mf_requests_total{path="/v1/predict",status="200"}' in metrics
    assert 'mf_request_duration_seconds_bucket{le="0.5",path="/v1/predict"}' in metrics
    assert "mf_predictions_total{label=" in metrics
    assert 'mf_contact_modalities_total{modalities="text"}' in metrics


# --- authentication and exposure ------------------------------------------------


def test_a_request_without_a_token_gets_401_and_a_wrong_one_403(main):
    body, headers = _form(text="my card is lost")
    missing = _call(main, "POST", "/v1/predict", body, headers, token=None)
    wrong = _call(main, "POST", "/v1/predict", body, headers, token="x" * 32)
    other_scheme = _call(
        main,
        "POST",
        "/v1/predict",
        body,
        {**headers, "Authorization": f"Basic {TOKEN}"},
        token=None,
    )

    assert (missing.status, missing.json()["reason"]) == (401, "missing_token")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (wrong.status, wrong.json()["reason"]) == (403, "wrong_token")
    assert other_scheme.status == 401
    assert _call(main, "GET", "/metrics", token=None).status == 401


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no bearer token"),
        (["--insecure-local", "--host", "0.0.0.0"], "only serves on a loopback"),
        (["--env", "prod"], "no environment 'prod'"),
    ],
)
def test_the_server_refuses_to_start_exposed_without_tokens(
    package_folder, tmp_path, args, message
):
    env = {k: v for k, v in os.environ.items() if k != "MF_SERVE_TOKENS"}
    (tmp_path / "conf" / "base").mkdir(parents=True)
    command = [sys.executable, "-m", "multimodal_fusion", "serve"]
    done = subprocess.run(
        [*command, "--package", str(package_folder), *args]
        + ["--conf-source", str(tmp_path / "conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_tokens_come_from_the_kedro_credentials_of_the_environment(tmp_path):
    conf = tmp_path / "conf"
    for env in ("base", "local", "prod", "staging", "broken"):
        (conf / env).mkdir(parents=True)
    assert tokens_from_credentials(conf, "prod") == ()  # no credentials file
    (conf / "prod" / "credentials.yml").write_text(
        "serve:\n  tokens: [first-token-0123456789, ' second-token-0123456789 ']\n"
    )
    (conf / "staging" / "credentials.yml").write_text(
        "serve: {tokens: 'a-token-0123456789abc,b-token-0123456789abc'}\n"
    )
    (conf / "broken" / "credentials.yml").write_text("serve: {tokens: 12}\n")
    assert tokens_from_credentials(conf, "prod") == (
        "first-token-0123456789",
        "second-token-0123456789",
    )
    assert len(tokens_from_credentials(conf, "staging")) == 2
    assert tokens_from_credentials(conf, None) == ()  # local has none
    assert tokens_from_credentials(tmp_path / "no-conf", None) == ()
    with pytest.raises(ServeConfigError, match="list of strings"):
        tokens_from_credentials(conf, "broken")


# --- the malformed-request corpus -----------------------------------------------


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JSON_TYPE = "application/json"


def _raw(body: bytes, content_type: str | None = FORM_TYPE, path: str = "") -> dict:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"body": body, "headers": headers, "path": path or "/v1/predict"}


def _batch(body: bytes, content_type: str = JSON_TYPE) -> dict:
    return _raw(body, content_type, "/v1/predict/batch")


def _corpus(package: ModelPackage, clip: bytes) -> list[tuple[str, dict, int, str]]:
    """(case, request, status, reason): every malformed request and what it
    must get. ``form`` requests are well-formed multipart forms."""
    too_long = "a" * (package.preprocessing["text"]["max_chars"] + 1)
    max_seconds = package.preprocessing["audio"]["limits"]["max_seconds"]
    body, _ = _form(text="my card is lost", audio=clip)
    nine = json.dumps({"contacts": [{"text": "hi"}] * 9}).encode()
    odd = "ca\u200brd\u202e lost \U0001f4b3 e\u0301 \ufeff\u0000"
    return [
        ("truncated multipart", _raw(body[: len(body) // 2]), 400, "malformed_request"),
        ("0-byte audio", {"form": {"audio": b""}}, 422, "empty_file"),
        ("text file named .wav", {"form": {"audio": b"hi\n" * 50}}, 422,
         "unrecognised_format"),
        ("clip over max_seconds", {"form": {"audio": _wav(max_seconds + 1)}}, 422,
         "too_long"),
        # The head only: the server answers before reading a body that large.
        ("Content-Length over the limit", _raw(b"") | {"length": 50 * 2**20}, 413,
         "body_too_large"),
        ("text over max_chars", {"form": {"text": too_long}}, 422, "text_too_long"),
        ("huge text", {"form": {"text": "ab " * 500_000}}, 422, "text_too_long"),
        ("both unusable", {"form": {"text": too_long, "audio": b""}}, 422,
         "no_usable_modality"),
        ("no input", {"form": {}}, 422, "no_input"),
        ("JSON content type", _raw(b'{"text": "hi"}', JSON_TYPE), 415,
         "unsupported_media_type"),
        ("no content type", _raw(b"text=hi", None), 415, "unsupported_media_type"),
        ("path in file name", {"form": {"audio": clip, "filename": CLIENT_FILE}},
         200, ""),
        ("odd unicode", {"form": {"text": odd}}, 200, ""),
        ("invalid utf-8", {"form": {"text": b"card \xff\xfe lost \xc3"}}, 200, ""),
        ("batch: not JSON", _batch(b"["), 422, "invalid_request"),
        ("batch: bad base64", _batch(b'{"contacts": [{"audio": "UklG!!"}]}'), 422,
         "invalid_request"),
        ("batch: too many", _batch(nine), 422, "too_many_contacts"),
        ("batch: a form", _batch(body, FORM_TYPE), 415, "unsupported_media_type"),
    ]  # fmt: skip


def _send(server: Server, request: dict) -> Reply:
    if "form" in request:
        body, headers = _form(**request["form"])
        return _call(server, "POST", "/v1/predict", body, headers)
    headers = {**request["headers"], "Content-Length": request.get("length")}
    return _call(server, "POST", request["path"], request["body"], headers)


def test_every_malformed_request_gets_its_status_and_reason(main, package, clip):
    wrong = {}
    for case, request, status, reason in _corpus(package, clip):
        reply = _send(main, request)
        got = (reply.status, reply.json().get("reason") or "")
        if got != (status, reason):
            wrong[case] = got
    assert not wrong, f"expected other statuses/reasons: {wrong}"
    assert _call(main, "GET", "/healthz", token=None).status == 200


def test_a_streamed_body_over_the_limit_gets_413(main):
    """Chunked, so the size is only known while reading. The limit (2 MiB) is
    sent first and taken in, then one byte more: the server reads every byte
    sent and answers, so the connection closes cleanly."""
    headers = {"Content-Type": FORM_TYPE, "Transfer-Encoding": "chunked"}
    headers["Authorization"] = f"Bearer {TOKEN}"
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; '
    part += 'filename="a.wav"\r\n\r\n'
    first = part.encode().ljust(2**18, b"x")
    with _open(main, "POST", "/v1/predict", b"", headers) as sock:
        for chunk in [first] + [b"x" * 2**18] * 7:  # 2 MiB
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(0.02)
        time.sleep(0.5)
        sock.sendall(b"1\r\nx\r\n")
        reply = _read_reply(sock)
    assert (reply.status, reply.json()["reason"]) == (413, "body_too_large")


def test_memory_returns_to_its_level_after_a_burst_of_bad_requests(main, package, clip):
    corpus = [request for _, request, _, _ in _corpus(package, clip)]
    for request in corpus:  # first use of every path
        _send(main, request)
    before = main.rss_kb()
    for _ in range(3):
        for request in corpus:
            _send(main, request)
    time.sleep(1)
    after = main.rss_kb()
    assert _call(main, "GET", "/healthz", token=None).status == 200
    assert after - before < 80 * 1024, f"RSS grew from {before} kB to {after} kB"


# --- rate, concurrency and timeout limits (the tight server) --------------------


def test_a_burst_over_the_rate_limit_gets_429(servers):
    tight = servers["tight"]
    statuses = [
        _call(tight, "POST", "/v1/predict", *_form(), token=TOKEN_B) for _ in range(5)
    ]
    assert [r.status for r in statuses[:3]] == [422, 422, 422]  # no input
    assert [r.status for r in statuses[3:]] == [429, 429]
    assert statuses[3].json()["reason"] == "rate_limited"
    assert int(statuses[3].headers["retry-after"]) >= 1
    # Another client has its own bucket.
    assert _call(tight, "POST", "/v1/predict", *_form(), token=TOKEN_C).status == 422


def test_saturation_gets_503_and_a_stalled_body_408(servers):
    tight = servers["tight"]
    body, headers = _form(text="my card is lost")
    headers = {
        **headers,
        "Content-Length": str(len(body)),
        "Authorization": f"Bearer {TOKEN}",
    }
    stalled = _open(tight, "POST", "/v1/predict", body[:20], headers)
    with stalled:
        time.sleep(0.3)  # the stalled request is in flight
        busy = _call(tight, "POST", "/v1/predict", *_form(text="hi"), token=TOKEN_C)
        assert (busy.status, busy.json()["reason"]) == (503, "busy")
        assert busy.headers["retry-after"] == "1"
        timed_out = _read_reply(stalled)
    assert (timed_out.status, timed_out.json()["reason"]) == (408, "request_timeout")
    assert _call(tight, "GET", "/healthz", token=None).status == 200


# --- logs -----------------------------------------------------------------------


def test_access_logs_are_json_lines_without_text_audio_or_file_names(main, clip):
    _predict(main, text=MARKER_TEXT, audio=clip, filename=CLIENT_FILE)
    time.sleep(0.2)
    log = main.log.read_text(errors="replace")
    assert MARKER_TEXT not in log
    assert "secret-client-name" not in log
    assert "ab ab ab" not in log  # the huge text of the corpus
    entries = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    served = [e for e in entries if e["path"] == "/v1/predict" and e["status"] == 200]
    assert served
    assert {"request_id", "status", "latency_ms", "modalities"} <= set(served[-1])
    assert served[-1]["modalities"] == "text+audio"
