"""ADC2021: files in the published layout, chunked and subsampled reading, checksums, downloads, scaling."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.adc2021 import read_particles, write_adc2021_h5
from hepad_cli.data.samples import DataError, split_background
from tests.conftest import build_dataset

SIGNAL_NAMES = ("Ato4l", "leptoquark", "hToTauTau", "hChToTauNu")
# The published file names, as conf/data/adc2021.yaml names them.
ADC2021_SIGNAL_FILES = {
    "Ato4l": "Ato4l_lepFilter_13TeV.h5",
    "leptoquark": "leptoquark_LOWMASS_lepFilter_13TeV.h5",
    "hToTauTau": "hToTauTau_13TeV_PU20.h5",
    "hChToTauNu": "hChToTauNu_13TeV_PU20.h5",
}


def toy_events(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """(n, 19, 4) events = (pT, eta, phi, class) rows MET, 4 e, 4 mu, 10 jets, pT-ordered and zero-padded.

    Background: one soft lepton and a few soft jets. Signals: more and harder leptons and jets.
    """
    events = np.zeros((n, 19, 4), dtype=np.float32)
    hard = kind != "background"
    n_leptons = rng.integers(2, 5, n) if hard else np.ones(n, dtype=int)
    n_jets = rng.integers(3, 9, n) if hard else rng.integers(0, 4, n)
    scale = 60.0 if hard else 22.0
    events[:, 0, 0] = rng.exponential(80.0 if hard else 25.0, n)
    events[:, 0, 2] = rng.uniform(-np.pi, np.pi, n)
    events[:, 0, 3] = 1
    for i in range(n):
        electrons = int(rng.integers(0, n_leptons[i] + 1))
        blocks = ((1, electrons, 2), (5, n_leptons[i] - electrons, 3), (9, n_jets[i], 4))
        for first, count, cls in blocks:
            count = min(int(count), 4 if cls != 4 else 10)
            if count:
                pt = np.sort(23.0 + rng.exponential(scale, count))[::-1]
                rows = slice(first, first + count)
                events[i, rows, 0] = pt
                events[i, rows, 1] = rng.uniform(-2.5 if cls != 4 else -4.0, 2.5 if cls != 4 else 4.0, count)
                events[i, rows, 2] = rng.uniform(-np.pi, np.pi, count)
                events[i, rows, 3] = cls
    return events


def write_adc_files(directory: Path, n_background: int = 300, n_signal: int = 60, seed: int = 0) -> dict:
    """Background and the four signal files in the published layout; returns {name: (path, events)}."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "background": (directory / "background_for_training.h5", toy_events(n_background, "background", rng))
    }
    for name in SIGNAL_NAMES:
        files[name] = (directory / ADC2021_SIGNAL_FILES[name], toy_events(n_signal, name, rng))
    for path, events in files.values():
        write_adc2021_h5(path, events)
    return files


def local_config(
    directory: Path, files: dict, checksum: str | None = None, base_url: str = "https://example.invalid"
):
    """Constructor arguments for the files in ``directory``; checksum='pin' pins each file's md5."""

    def entry(path: Path):
        pinned = f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}" if checksum == "pin" else checksum
        return {"file": path.name, "url": f"{base_url}/{path.name}", "checksum": pinned}

    return {
        "data_dir": str(directory),
        "background": entry(files["background"][0]),
        "signals": {name: entry(files[name][0]) for name in SIGNAL_NAMES},
    }


def test_published_layout_is_read_class_column_dropped_and_flattened_to_57(tmp_path):
    import h5py

    files = write_adc_files(tmp_path)
    with h5py.File(files["background"][0]) as f:
        assert f["Particles"].shape == (300, 19, 4)
        assert [n.decode() for n in f["Particles_Names"][:]] == ["Pt", "Eta", "Phi", "Class"]
    samples = build_dataset(
        "adc2021",
        **local_config(tmp_path, files, checksum="pin"),
        download=False,
        seed=2,
        split={"train": 0.6, "val": 0.2, "test": 0.2},
    ).load()
    assert samples.event_shape == (57,) and samples.representation == "particles"
    assert set(samples.signals) == set(SIGNAL_NAMES)
    raw = files["background"][1][:, :, :3].reshape(300, 57)
    rows = split_background(300, {"train": 0.6, "val": 0.2, "test": 0.2}, 2)
    np.testing.assert_array_equal(samples.background_train, raw[rows["train"]])
    np.testing.assert_array_equal(samples.background_test, raw[rows["test"]])
    np.testing.assert_array_equal(samples.signals["Ato4l"], files["Ato4l"][1][:, :, :3].reshape(-1, 57))
    # Observables come from the unscaled events: MET and the jet-pT sum.
    np.testing.assert_allclose(
        samples.observables["background"]["met"], files["background"][1][rows["test"], 0, 0]
    )
    np.testing.assert_allclose(
        samples.observables["leptoquark"]["ht"], files["leptoquark"][1][:, 9:19, 0].sum(axis=1), rtol=1e-6
    )
    assert all(entry["verified"] for entry in samples.provenance) and len(samples.provenance) == 5


def test_max_events_subsample_is_seeded_and_read_chunk_by_chunk(tmp_path, monkeypatch):
    import h5py

    files = write_adc_files(tmp_path, n_background=500)
    largest_read = []
    original = h5py.Dataset.__getitem__

    def recording_getitem(self, key):
        out = original(self, key)
        if self.name == "/Particles":
            largest_read.append(len(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording_getitem)
    config = local_config(tmp_path, files)
    first = build_dataset("adc2021", **config, download=False, max_events=120, chunk_size=32, seed=9).load()
    assert max(largest_read) <= 32  # never more than one chunk in memory from the file
    again = build_dataset("adc2021", **config, download=False, max_events=120, chunk_size=500, seed=9).load()
    other = build_dataset("adc2021", **config, download=False, max_events=120, chunk_size=32, seed=10).load()
    counts = first.counts()
    assert counts["background_train"] + counts["background_val"] + counts["background_test"] == 120
    np.testing.assert_array_equal(first.background_train, again.background_train)  # chunking changes nothing
    assert not np.array_equal(first.background_train, other.background_train)
    # The subsample is exactly the seeded choice of rows.
    rows = np.sort(np.random.default_rng(9).choice(500, 120, replace=False))
    expected = files["background"][1][rows][:, :, :3]
    split = split_background(120, {"train": 0.64, "val": 0.16, "test": 0.2}, 9)  # conf/data/adc2021.yaml
    np.testing.assert_array_equal(first.background_train, expected[split["train"]].reshape(-1, 57))


def test_read_particles_point_and_block_selection_agree(tmp_path):
    events = toy_events(300, "background", np.random.default_rng(1))
    write_adc2021_h5(tmp_path / "f.h5", events)
    # One row of a 300-event chunk is read as a point selection, the others as sliced blocks.
    cases = [([7], 300), ([0, 5, 299], 64), (np.arange(0, 300, 2), 64), (np.arange(300), 64), (None, 64)]
    for rows, chunk_size in cases:
        expected = events[:, :, :3] if rows is None else events[np.asarray(rows), :, :3]
        got = read_particles(
            tmp_path / "f.h5", None if rows is None else np.asarray(rows), chunk_size=chunk_size
        )
        np.testing.assert_array_equal(got, expected)


def test_scaling_is_fitted_on_background_train_only(tmp_path):
    files = write_adc_files(tmp_path)
    config = local_config(tmp_path, files)
    raw = build_dataset("adc2021", **config, download=False, seed=3).load()
    scaled = build_dataset("adc2021", **config, download=False, scaling="standard", seed=3).load()
    train = raw.background_train.astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0  # zero-padded columns: StandardScaler leaves them unscaled
    np.testing.assert_allclose(scaled.background_train, (train - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        scaled.signals["hToTauTau"], (raw.signals["hToTauTau"] - mean) / std, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(scaled.observables["hToTauTau"]["met"], raw.observables["hToTauTau"]["met"])


def test_missing_file_with_download_off_names_the_file_and_the_fix(tmp_path):
    files = write_adc_files(tmp_path)
    files["leptoquark"][0].unlink()
    with pytest.raises(DataError, match="leptoquark") as error:
        build_dataset("adc2021", **local_config(tmp_path, files), download=False).load()
    assert "data.download=true" in str(error.value) and "leptoquark_LOWMASS_lepFilter_13TeV.h5" in str(
        error.value
    )


def test_checksum_mismatch_is_refused(tmp_path):
    files = write_adc_files(tmp_path)
    config = local_config(tmp_path, files, checksum="pin")
    config["signals"]["Ato4l"]["checksum"] = "md5:" + "0" * 32
    with pytest.raises(DataError, match="does not match its expected checksum"):
        build_dataset("adc2021", **config, download=False).load()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("no_particles", "no 'Particles' dataset"),
        ("wrong_shape", r"expected \(n_events, 19, 4\)"),
        ("not_hdf5", "not a readable HDF5 file"),
    ],
)
def test_wrong_layout_is_refused_with_the_reason(tmp_path, layout, message):
    import h5py

    files = write_adc_files(tmp_path)
    path = files["hChToTauNu"][0]
    if layout == "not_hdf5":
        path.write_bytes(b"\x00" * 64)
    else:
        with h5py.File(path, "w") as f:
            if layout == "no_particles":
                f.create_dataset("Events", data=np.zeros((3, 19, 4)))
            else:
                f.create_dataset("Particles", data=np.zeros((3, 19, 3)))
    with pytest.raises(DataError, match=message):
        build_dataset("adc2021", **local_config(tmp_path, files), download=False).load()


def test_files_are_downloaded_from_a_server_and_verified(tmp_path):
    source = tmp_path / "server"
    files = write_adc_files(source)
    bodies = {f"/{path.name}": path.read_bytes() for path, _ in files.values()}
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            route = self.path.split("?")[0]
            requests.append(route)
            body = bodies.get(route)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        target = tmp_path / "data"
        config = local_config(source, files, checksum="pin", base_url=base) | {"data_dir": str(target)}
        samples = build_dataset("adc2021", **config, download=True, seed=1).load()
        assert sorted(requests) == sorted(bodies)
        assert all(entry["verified"] for entry in samples.provenance)
        for path, _ in files.values():
            assert (target / path.name).read_bytes() == path.read_bytes()
        build_dataset("adc2021", **config, download=True, seed=1).load()
        assert len(requests) == len(bodies)  # present and verified: no second request
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_events": -1}, "data.max_events"),
        ({"scaling": "robust"}, "data.scaling"),
        ({"signals": {}}, "data.signals"),
        ({"background": {"file": "x.h5"}}, "data.background"),
        ({"chunk_size": 0}, "data.chunk_size"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        build_dataset("adc2021", tmp_path / "nowhere", **kwargs)
    assert not (tmp_path / "nowhere").exists()
