"""fetch_file against a loopback HTTP server that serves a Top Tagging-layout file and a fake Zenodo API."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from hepad_cli.data.download import DataFileError, FetchedFile, fetch_file, file_md5, zenodo_file_id
from hepad_cli.data.toptagging_format import count_jets, write_toptagging_h5
from tests.conftest import toy_jets

N_JETS = 50
RECORD = "2603256"
FILE_ROUTE = f"/records/{RECORD}/files/val.h5"
TEST_SECONDS = 30  # hard bound per test: a hung socket fails the test instead of the whole session
FETCH_TIMEOUT = 5.0  # per socket read inside fetch_file


def is_lock(path: Path) -> bool:
    """The download lock file stays behind by design (removing it races with waiting processes)."""
    return path.name.endswith(".lock")


def data_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if not is_lock(p)]


@dataclass
class FakeServer:
    """What the loopback server serves, and what it was asked for."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # route -> body
    api: dict[str, Any] = field(default_factory=dict)  # record id -> records-API JSON
    truncate: bool = False  # send the full Content-Length, then half the body, then close
    requests: Counter = field(default_factory=Counter)  # route -> number of GETs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, route: str = FILE_ROUTE, query: str = "?download=1") -> str:
        return f"{self.base}{route}{query}"

    @property
    def api_base(self) -> str:
        return f"{self.base}/api/records/"

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # server-side socket timeout, so a stuck client cannot pin a thread forever

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = urlsplit(self.path).path
            with state.lock:
                state.requests[route] += 1
            if route.startswith("/api/records/") and route.rsplit("/", 1)[-1] in state.api:
                self._send(json.dumps(state.api[route.rsplit("/", 1)[-1]]).encode(), "application/json")
            elif route in state.files:
                body = state.files[route]
                if state.truncate:
                    # The connection drops mid-body: the client was promised more bytes than it gets.
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(body, "application/octet-stream")
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep pytest output clean

    return Handler


@pytest.fixture(autouse=True)
def time_bound() -> Iterator[None]:
    """Fail any test of this module that runs longer than TEST_SECONDS."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"test exceeded {TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def toptagging_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small val.h5 in the published layout (50 jets), as bytes to serve."""
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(N_JETS - 20), np.ones(20)]
    constituents = np.concatenate([toy_jets(N_JETS - 20, 1, rng), toy_jets(20, 3, rng)])
    path = tmp_path_factory.mktemp("served") / "val.h5"
    write_toptagging_h5(path, constituents, labels)
    return path.read_bytes()


@pytest.fixture
def server(toptagging_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A ThreadingHTTPServer on 127.0.0.1 (free port) serving val.h5; shut down after the test."""
    # A proxy from the environment must not intercept loopback requests.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = FakeServer(files={FILE_ROUTE: toptagging_bytes})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Temporary or partial files a failed download might have left."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.endswith(".part") or (p.name.startswith(".") and not is_lock(p))
    )


def fetch(server: FakeServer, path: Path, checksum: str | None, **kwargs: Any) -> FetchedFile:
    return fetch_file(
        server.url(), path, checksum, zenodo_api=server.api_base, timeout=FETCH_TIMEOUT, **kwargs
    )


def zenodo_record(data: bytes, shape: str) -> dict[str, Any]:
    """A records-API answer in the list shape or in the {entries: {...}} shape."""
    files = [
        {"key": "val.h5", "size": len(data), "checksum": f"md5:{md5_of(data)}"},
        {"key": "test.h5", "size": 1, "checksum": "md5:" + "0" * 32},
    ]
    if shape == "list":
        return {"id": int(RECORD), "files": files}
    return {"id": int(RECORD), "files": {"enabled": True, "entries": {f["key"]: f for f in files}}}


# --- pinned checksums ---------------------------------------------------------------------------------


def test_good_md5_downloads_caches_and_reads(server: FakeServer, tmp_path: Path, toptagging_bytes: bytes):
    path = tmp_path / "cache" / "val.h5"  # parent does not exist yet: created because we download
    fetched = fetch(server, path, f"md5:{md5_of(toptagging_bytes)}")
    assert fetched == FetchedFile(
        path, md5_of(toptagging_bytes), True, True, f"md5:{md5_of(toptagging_bytes)}"
    )
    assert count_jets(path) == N_JETS
    assert file_md5(path) == md5_of(toptagging_bytes)
    assert server.requests[FILE_ROUTE] == 1
    assert leftovers(path.parent) == []


def test_good_sha256_verifies_and_still_reports_md5(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes
):
    sha = hashlib.sha256(toptagging_bytes).hexdigest()
    fetched = fetch(server, tmp_path / "val.h5", f"SHA256:{sha.upper()}")  # case-insensitive
    assert fetched.verified and fetched.downloaded
    assert fetched.expected == f"sha256:{sha}" and fetched.md5 == md5_of(toptagging_bytes)


def test_bad_checksum_leaves_no_file_and_no_temp(server: FakeServer, tmp_path: Path, toptagging_bytes: bytes):
    path = tmp_path / "val.h5"
    wrong = "md5:" + "0" * 32
    with pytest.raises(DataFileError) as error:
        fetch(server, path, wrong)
    message = str(error.value)
    assert wrong in message and md5_of(toptagging_bytes) in message and str(path) in message
    assert not path.exists()
    assert data_files(tmp_path) == []


def test_present_valid_file_makes_no_request(server: FakeServer, tmp_path: Path, toptagging_bytes: bytes):
    path = tmp_path / "val.h5"
    path.write_bytes(toptagging_bytes)
    fetched = fetch(server, path, f"md5:{md5_of(toptagging_bytes)}")
    assert fetched.verified and not fetched.downloaded
    assert server.total == 0


def test_present_mismatching_file_is_reported_and_kept(server: FakeServer, tmp_path: Path):
    path = tmp_path / "val.h5"
    path.write_bytes(b"my own file")
    expected = "md5:" + "1" * 32
    with pytest.raises(DataFileError) as error:
        fetch(server, path, expected)
    message = str(error.value)
    assert str(path) in message and expected in message and md5_of(b"my own file") in message
    assert "delete" in message and "data.checksum" in message
    assert path.read_bytes() == b"my own file"  # never overwritten
    assert server.total == 0


def test_invalid_checksum_string_is_rejected(server: FakeServer, tmp_path: Path):
    with pytest.raises(DataFileError, match="md5:<32 hex digits>"):
        fetch(server, tmp_path / "val.h5", "md5:not-hex")
    assert server.total == 0


# --- failures in transfer -----------------------------------------------------------------------------


def test_interrupted_transfer_leaves_nothing_then_retry_succeeds(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes
):
    path = tmp_path / "val.h5"
    server.truncate = True
    with pytest.raises(DataFileError, match="download of"):
        fetch(server, path, None)  # unverified: only the length check can catch the short body
    assert not path.exists() and data_files(tmp_path) == []

    server.truncate = False
    fetched = fetch(server, path, f"md5:{md5_of(toptagging_bytes)}")
    assert fetched.verified and fetched.downloaded and count_jets(path) == N_JETS


def test_body_shorter_than_content_length_is_caught_by_our_own_count(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # urllib3 2 already raises on a short body; simulate bytes lost anyway to test the second guard.
    from hepad_cli.data import download

    original = download._HashingWriter.write

    def lossy(self: download._HashingWriter, chunk: bytes) -> int:
        return original(self, chunk[: len(chunk) // 2])

    monkeypatch.setattr(download._HashingWriter, "write", lossy)
    with pytest.raises(DataFileError, match="cut short"):
        fetch(server, tmp_path / "val.h5", None)
    assert data_files(tmp_path) == []


def test_http_error_leaves_nothing(server: FakeServer, tmp_path: Path):
    path = tmp_path / "val.h5"
    with pytest.raises(DataFileError, match="404"):
        fetch_file(server.url("/records/1/files/missing.h5"), path, None, timeout=FETCH_TIMEOUT)
    assert data_files(tmp_path) == []


def test_leftover_temp_of_killed_run_is_never_taken_for_the_file(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes
):
    path = tmp_path / "val.h5"
    stale = tmp_path / ".val.h5.killed.part"  # the temp name pattern, holding a complete copy
    stale.write_bytes(toptagging_bytes)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    live = tmp_path / ".val.h5.live.part"  # a concurrent download still writing: must be left alone
    live.write_bytes(b"partial")
    with pytest.raises(DataFileError, match="data.download"):
        fetch(server, path, None, allow_download=False)

    fetch(server, path, f"md5:{md5_of(toptagging_bytes)}")
    assert server.requests[FILE_ROUTE] == 1  # downloaded, not adopted from the temp
    assert not stale.exists() and live.exists()


# --- unverified ---------------------------------------------------------------------------------------


def test_unverified_download_and_read_warn(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "val.h5"
    with caplog.at_level(logging.WARNING, logger="hepad_cli.data.download"):
        first = fetch(server, path, None)
        second = fetch(server, path, None)
    assert (first.verified, first.downloaded, first.expected) == (False, True, None)
    assert (second.verified, second.downloaded) == (False, False)
    assert first.md5 == second.md5 == md5_of(toptagging_bytes)
    assert server.requests[FILE_ROUTE] == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "UNVERIFIED" in r.getMessage()]
    assert len(warnings) == 2 and str(path) in warnings[0].getMessage()


# --- zenodo -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["list", "entries"])
def test_zenodo_first_call_uses_api_then_sidecar_means_no_requests(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes, shape: str
):
    server.api[RECORD] = zenodo_record(toptagging_bytes, shape)
    path = tmp_path / "val.h5"
    first = fetch(server, path, "zenodo")
    assert first.verified and first.downloaded and first.expected == f"md5:{md5_of(toptagging_bytes)}"
    assert server.requests == Counter({f"/api/records/{RECORD}": 1, FILE_ROUTE: 1})
    sidecar = tmp_path / "val.h5.md5"
    assert sidecar.read_text().split() == [md5_of(toptagging_bytes), "val.h5"]
    assert sorted(p.name for p in data_files(tmp_path)) == ["val.h5", "val.h5.md5"]

    server.requests.clear()
    second = fetch(server, path, "zenodo")
    assert second.verified and not second.downloaded and second.md5 == first.md5
    assert server.total == 0


def test_zenodo_present_file_without_sidecar_asks_api_once(
    server: FakeServer, tmp_path: Path, toptagging_bytes: bytes
):
    server.api[RECORD] = zenodo_record(toptagging_bytes, "list")
    path = tmp_path / "val.h5"
    path.write_bytes(toptagging_bytes)
    fetched = fetch(server, path, "zenodo")
    assert fetched.verified and not fetched.downloaded
    assert server.requests == Counter({f"/api/records/{RECORD}": 1})
    assert (tmp_path / "val.h5.md5").exists()
    fetch(server, path, "zenodo")
    assert server.total == 1


def test_zenodo_mismatch_on_download_leaves_nothing(server: FakeServer, tmp_path: Path):
    server.api[RECORD] = zenodo_record(b"something else", "entries")
    with pytest.raises(DataFileError, match="does not match"):
        fetch(server, tmp_path / "val.h5", "zenodo")
    assert data_files(tmp_path) == []


def test_zenodo_unknown_file_key_is_reported(server: FakeServer, tmp_path: Path, toptagging_bytes: bytes):
    server.api[RECORD] = {"files": [{"key": "train.h5", "checksum": "md5:" + "2" * 32}]}
    with pytest.raises(DataFileError, match="train.h5"):
        fetch(server, tmp_path / "val.h5", "zenodo")
    assert server.requests[FILE_ROUTE] == 0


def test_zenodo_url_forms():
    assert zenodo_file_id("https://zenodo.org/records/2603256/files/val.h5?download=1") == (
        "2603256",
        "val.h5",
    )
    assert zenodo_file_id("https://zenodo.org/record/2603256/files/val.h5") == ("2603256", "val.h5")
    assert zenodo_file_id("https://zenodo.org/api/records/5046389/files/a%20b.h5/content") == (
        "5046389",
        "a b.h5",
    )
    with pytest.raises(DataFileError, match="Zenodo file URL"):
        zenodo_file_id("https://example.org/val.h5")


# --- refusals before any network ----------------------------------------------------------------------


def test_missing_without_download_names_path_and_fix(server: FakeServer, tmp_path: Path):
    path = tmp_path / "nested" / "val.h5"
    with pytest.raises(DataFileError) as error:
        fetch(server, path, "zenodo", allow_download=False)
    message = str(error.value)
    assert str(path) in message and "data.download" in message and server.url() in message
    assert not path.parent.exists()  # the directory is only created for a download
    assert server.total == 0


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x.h5", "ftp://127.0.0.1/x.h5", "file:///etc/passwd", "x.h5", "http://10.0.0.1/x"],
)
def test_insecure_or_odd_urls_are_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
):
    import requests

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a request was made")

    monkeypatch.setattr(requests.Session, "send", no_network)
    with pytest.raises(DataFileError, match="refusing to fetch"):
        fetch_file(url, tmp_path / "x.h5", None)
    assert data_files(tmp_path) == []


def test_loopback_hosts_may_use_http(server: FakeServer, tmp_path: Path, toptagging_bytes: bytes):
    url = server.url().replace("127.0.0.1", "localhost")
    fetched = fetch_file(url, tmp_path / "val.h5", f"md5:{md5_of(toptagging_bytes)}", timeout=FETCH_TIMEOUT)
    assert fetched.downloaded and fetched.verified
