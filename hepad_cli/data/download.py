"""Fetch one data file: use it if present and verified, otherwise download it atomically and verify it.

Checksums: ``"md5:<hex>"`` / ``"sha256:<hex>"`` pin a file; ``"zenodo"`` verifies against the md5 that
Zenodo publishes for the file (learned once from the records API, then kept in a ``<file>.md5`` sidecar);
``None`` reads the file unverified.

The download itself is pooch's ``HTTPDownloader`` (a tqdm progress bar) writing into a uniquely named
temporary file beside the target; only a complete, verified, fsynced file is renamed onto the target path.
``pooch.retrieve`` is not used because it re-downloads (and so overwrites) a present file whose hash does
not match, and it re-reads the whole file to hash it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urljoin, urlsplit

from hepad_cli.io import fsync_directory

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20  # 1 MiB: hashing and download chunks (the files are GBs)
DEFAULT_TIMEOUT = 60.0  # seconds per connect / per socket read, not for the whole transfer
STALE_TEMP_SECONDS = 3600.0  # a temp untouched this long belongs to a killed run (live ones grow every read)
ZENODO_API = "https://zenodo.org/api/records/"
_HEX_LENGTHS = {"md5": 32, "sha256": 64}
# /records/<id>/files/<key>, /record/<id>/files/<key>, /api/records/<id>/files/<key>/content
_ZENODO_PATH = re.compile(r"/(?:api/)?records?/(\d+)/files/(.+?)(?:/content)?/?$")


class DataFileError(RuntimeError):
    """A data file is missing, cannot be downloaded, or does not match its checksum."""


@dataclass(frozen=True)
class FetchedFile:
    """A data file on disk: its md5, whether it was verified, whether this call downloaded it."""

    path: Path
    md5: str
    verified: bool
    downloaded: bool
    expected: str | None  # the checksum it was verified against ("md5:<hex>" / "sha256:<hex>"), or None


def file_md5(path: str | os.PathLike) -> str:
    """md5 hex digest of a file, read in 1 MiB blocks."""
    return _hash_file(Path(path), ("md5",))["md5"]


def fetch_file(
    url: str,
    path: str | os.PathLike,
    checksum: str | None,
    allow_download: bool = True,
    zenodo_api: str = ZENODO_API,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchedFile:
    """Return the verified file at ``path``, downloading it from ``url`` first if it is missing."""
    path = Path(path).expanduser().resolve()
    _check_url(url)  # before anything else, so a bad URL is reported even when the file is present
    mode, expected = _parse_checksum(checksum)
    sidecar = md5_sidecar(path)
    log.info("data file %s (source %s, checksum %s)", path, url, checksum)

    if path.is_file():
        learned = False
        if mode == "zenodo":
            expected = read_md5_sidecar(sidecar)
            if expected is None:  # present but never verified here: one API call, then the sidecar
                try:
                    expected, learned = _zenodo_md5(url, zenodo_api, timeout), True
                except DataFileError as error:
                    raise DataFileError(
                        f"{error}. The file on disk has md5 {file_md5(path)}: if you trust it, "
                        f"pin it with data.checksum=md5:{file_md5(path)}"
                    ) from error
        fetched = _verify_present(path, expected)
        if learned:
            write_md5_sidecar(sidecar, fetched.md5, path.name)
        return fetched
    if path.exists():
        raise DataFileError(f"{path} exists but is not a regular file; move it away or use another data_dir")

    if not allow_download:
        raise DataFileError(
            f"data file {path} is missing and downloading is disabled. Fix: set data.download=true to "
            f"download it from {url}, or put the file at {path}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataFileError(f"cannot create the data directory {path.parent}: {error}") from error
    from filelock import FileLock

    # Jobs of a sweep that need the same file download it once: the others wait here, then verify it.
    with FileLock(f"{path.parent / ('.' + path.name)}.lock"):
        if path.is_file():
            return fetch_file(url, path, checksum, allow_download, zenodo_api, timeout=timeout)
        if mode == "zenodo":
            with contextlib.suppress(OSError):  # (an unwritable directory fails clearly in _download)
                sidecar.unlink(
                    missing_ok=True
                )  # it described an earlier file; never let it judge the new one
            expected = _zenodo_md5(url, zenodo_api, timeout)
        fetched = _download(url, path, expected, timeout)
        if mode == "zenodo":
            write_md5_sidecar(sidecar, fetched.md5, path.name)
        return fetched


def zenodo_file_id(url: str) -> tuple[str, str]:
    """(record id, file key) of a Zenodo file URL such as https://zenodo.org/records/2603256/files/val.h5."""
    match = _ZENODO_PATH.search(urlsplit(url).path)
    if match is None:
        raise DataFileError(
            f"checksum 'zenodo' needs a Zenodo file URL like "
            f"https://zenodo.org/records/<record>/files/<name>, got {url!r}; pin the checksum instead "
            "(data.checksum='md5:<hex>')"
        )
    return match.group(1), unquote(match.group(2))


# --- checksums ---------------------------------------------------------------------------------------


def _parse_checksum(checksum: str | None) -> tuple[str, str | None]:
    """(mode, expected): mode is 'none', 'zenodo' or 'pinned'; expected is normalised 'algo:hex'."""
    if checksum is None:
        return "none", None
    text = str(checksum).strip()
    if text.lower() == "zenodo":
        return "zenodo", None
    algo, _, digest = text.partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo in _HEX_LENGTHS and re.fullmatch(rf"[0-9a-f]{{{_HEX_LENGTHS[algo]}}}", digest):
        return "pinned", f"{algo}:{digest}"
    raise DataFileError(
        f"invalid checksum {checksum!r}: use 'md5:<32 hex digits>', 'sha256:<64 hex digits>', "
        "'zenodo' (the md5 Zenodo publishes), or null (read unverified)"
    )


def _hash_file(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Hex digests of one file for several algorithms, in a single pass of 1 MiB reads."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK_SIZE):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def _algorithms(expected: str | None) -> tuple[str, ...]:
    """md5 always (it is recorded), plus the algorithm of the expected checksum."""
    algo = expected.partition(":")[0] if expected else "md5"
    return ("md5",) if algo == "md5" else ("md5", algo)


def _verify_present(path: Path, expected: str | None) -> FetchedFile:
    """Check a file that is already on disk; never modify it."""
    digests = _hash_file(path, _algorithms(expected))
    if expected is None:
        _warn_unverified(path, digests["md5"])
        return FetchedFile(path, digests["md5"], verified=False, downloaded=False, expected=None)
    algo, _, want = expected.partition(":")
    if digests[algo] != want:
        raise DataFileError(
            f"{path} exists but does not match its expected checksum: expected {expected}, "
            f"found {algo}:{digests[algo]}. Fix: delete the file (and any {path.name}.md5 beside it) to "
            f"download it again, or, if it is your own file, set data.checksum='md5:{digests['md5']}' "
            "(or data.checksum=null to read it unverified)."
        )
    log.info("using %s (%s verified)", path, algo)
    return FetchedFile(path, digests["md5"], verified=True, downloaded=False, expected=expected)


def _warn_unverified(path: Path, md5: str) -> None:
    """Say loudly that nothing vouches for this file's content."""
    log.warning(
        "%s is UNVERIFIED (data.checksum is null); its md5 is %s. Set data.checksum='md5:%s' to pin it.",
        path,
        md5,
        md5,
    )


# --- the md5 kept beside a file (md5sum -c format) ----------------------------------------------------
# Beside a zenodo-mode download (the md5 Zenodo published), a generated Pythia sample and a converted CMS
# file: a cached file is verified against it on every reuse.


def md5_sidecar(path: Path) -> Path:
    """Where the md5 of ``path`` is kept: ``<file>.md5`` beside it."""
    return path.with_name(path.name + ".md5")


def read_md5_sidecar(sidecar: Path) -> str | None:
    """'md5:<hex>' from a sidecar, or None if it is missing or unreadable (then Zenodo is asked again)."""
    try:
        token = sidecar.read_text().split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return f"md5:{token}" if re.fullmatch(r"[0-9a-f]{32}", token) else None


def write_md5_sidecar(sidecar: Path, md5: str, name: str) -> None:
    """Write '<md5>  <name>' (md5sum -c format) atomically, so a killed run leaves no half sidecar."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{sidecar.name}.", suffix=".part", dir=sidecar.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{md5}  {name}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, sidecar)
    except OSError as error:
        # Best effort: a read-only data directory only costs one Zenodo API call per run.
        log.warning("cannot write %s (%s); the file cannot be verified offline next time", sidecar, error)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def sidecar_mismatch(path: Path) -> str | None:
    """Why a cached file does not match the md5 kept beside it (none kept, or bytes changed since), or
    None when it matches."""
    recorded = read_md5_sidecar(md5_sidecar(path))
    if recorded is None:
        return f"has no recorded checksum ({md5_sidecar(path).name} is missing), so it cannot be verified"
    found = f"md5:{file_md5(path)}"
    if found != recorded:
        return (
            f"does not match its recorded checksum (recorded {recorded}, found {found}): it changed on disk"
        )
    return None


def _zenodo_md5(url: str, zenodo_api: str, timeout: float) -> str:
    """'md5:<hex>' that Zenodo publishes for the file behind ``url`` (one records-API request)."""
    import requests

    record, key = zenodo_file_id(url)
    api_url = zenodo_api.rstrip("/") + "/" + record
    _check_url(api_url)
    log.info("asking Zenodo for the md5 of %s: %s", key, api_url)
    try:
        response = requests.get(api_url, timeout=timeout, headers={"Accept": "application/json"})
        response.raise_for_status()
        record_json = response.json()
    except (requests.RequestException, ValueError) as error:
        raise DataFileError(
            f"cannot learn the checksum of {key} from the Zenodo records API {api_url}: {error}. Fix: "
            "retry when Zenodo is reachable, or pin data.checksum='md5:<hex>' (or null to skip verification)"
        ) from error
    checksums = _zenodo_checksums(record_json)
    if key not in checksums:
        raise DataFileError(
            f"Zenodo record {record} ({api_url}) lists no file {key!r}; it has {sorted(checksums)}. "
            f"Check the URL {url}."
        )
    algo, _, digest = checksums[key].partition(":")
    if not digest:  # the legacy API gave a bare hex md5
        algo, digest = "md5", algo
    if algo.lower() != "md5" or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        raise DataFileError(f"Zenodo gives an unusable checksum {checksums[key]!r} for {key} ({api_url})")
    return f"md5:{digest.lower()}"


def _zenodo_checksums(record: Any) -> dict[str, str]:
    """{file key: checksum} from either records-API shape (files as a list, or {entries: {key: ...}})."""
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict):
        entries = files.get("entries") or {}
        items = [dict(value, key=value.get("key", key)) for key, value in entries.items()]
    elif isinstance(files, list):
        items = files
    else:
        raise DataFileError("the Zenodo records API answer has no 'files' list or 'files.entries' mapping")
    checksums = {}
    for item in items:
        if isinstance(item, dict):
            key = item.get("key") or item.get("filename")  # 'filename' in the legacy deposition shape
            if key and item.get("checksum"):
                checksums[str(key)] = str(item["checksum"])
    return checksums


# --- download ----------------------------------------------------------------------------------------


def _check_url(url: str) -> None:
    """Allow https anywhere, and plain http only to the loopback interface (local test servers)."""
    parts = urlsplit(str(url))
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme == "https" and host:
        return
    if scheme == "http" and _is_loopback(host):
        return
    raise DataFileError(
        f"refusing to fetch {url!r}: only https:// URLs are allowed (plain http only to localhost/127.0.0.1)"
    )


def _is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HashingWriter:
    """File-like sink for pooch: writes to disk and hashes and counts the bytes on the way."""

    def __init__(self, handle: IO[bytes], algorithms: tuple[str, ...]) -> None:
        self.handle = handle
        self.hashes = {name: hashlib.new(name) for name in algorithms}
        self.n_bytes = 0

    def write(self, chunk: bytes) -> int:
        self.handle.write(chunk)
        for digest in self.hashes.values():
            digest.update(chunk)
        self.n_bytes += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        self.handle.flush()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temps(path: Path) -> None:
    """Delete temps of killed earlier runs (not ones a concurrent download may still be writing)."""
    now = time.time()
    for entry in path.parent.iterdir():
        if not (entry.name.startswith(_temp_prefix(path)) and entry.name.endswith(".part")):
            continue
        try:
            if now - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                log.info("removing %s left by an interrupted download", entry)
                entry.unlink()
        except OSError:
            pass  # another process removed it first


def _download(url: str, path: Path, expected: str | None, timeout: float) -> FetchedFile:
    """Stream ``url`` into a temp beside ``path``, verify, fsync, rename; leave nothing behind on failure."""
    import pooch
    import requests

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataFileError(f"cannot create the data directory {path.parent}: {error}") from error
    _remove_stale_temps(path)
    headers: dict[str, str] = {}

    def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # Runs for every response, redirects included: an https URL must not be redirected to plain http.
        _check_url(response.url)
        if response.is_redirect:
            _check_url(urljoin(response.url, response.headers.get("Location", "")))
        if response.status_code == 200:
            size = response.headers.get("Content-Length", "")
            headers["length"], headers["encoding"] = size, response.headers.get("Content-Encoding", "")
            free = shutil.disk_usage(path.parent).free
            if size.isdigit() and int(size) > free:
                raise DataFileError(
                    f"{url} is {int(size) / 1e9:.2f} GB but only {free / 1e9:.2f} GB is free in {path.parent}"
                )

    downloader = pooch.HTTPDownloader(
        progressbar=True, chunk_size=BLOCK_SIZE, timeout=timeout, hooks={"response": on_response}
    )
    log.info("downloading %s -> %s", url, path)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            sink = _HashingWriter(handle, _algorithms(expected))
            try:
                downloader(url, sink, None)
            except requests.RequestException as error:
                raise DataFileError(
                    f"download of {url} failed: {error}. Nothing was written to {path}; try again, or put "
                    "the file there yourself."
                ) from error
            # urllib3 2 already rejects a body shorter than Content-Length; this guards other stacks.
            declared = headers.get("length", "")
            if declared.isdigit() and not headers.get("encoding") and int(declared) != sink.n_bytes:
                raise DataFileError(
                    f"download of {url} was cut short: received {sink.n_bytes} of {declared} bytes. "
                    f"Nothing was written to {path}; try again."
                )
            digests = {name: digest.hexdigest() for name, digest in sink.hashes.items()}
            if expected is not None:
                algo, _, want = expected.partition(":")
                if digests[algo] != want:
                    raise DataFileError(
                        f"downloaded {url} but its checksum {algo}:{digests[algo]} does not match the "
                        f"expected {expected}; the download was discarded and nothing was written to {path}. "
                        "Try again; if it persists the expected checksum (data.checksum) is wrong."
                    )
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name says the file is complete
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except OSError as error:
        raise DataFileError(f"cannot write {path} while downloading {url}: {error}") from error
    finally:
        tmp.unlink(missing_ok=True)  # no-op after a successful rename
    log.info("downloaded %s (%d bytes, md5 %s)", path, sink.n_bytes, digests["md5"])
    if expected is None:
        _warn_unverified(path, digests["md5"])
    verified = expected is not None
    return FetchedFile(path, digests["md5"], verified=verified, downloaded=True, expected=expected)
