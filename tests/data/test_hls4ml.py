"""hls4ml jets: an OpenML cache in scikit-learn's layout read offline, Zenodo-layout HDF5, the scaler."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.hls4ml import (
    FEATURES,
    H5_FEATURE_COLUMNS,
    H5_FEATURE_NAMES,
    MASS_INDEX,
    openml_cache_paths,
    read_hls4ml_h5,
    write_hls4ml_h5,
)
from hepad_cli.data.samples import DataError, split_background
from tests.conftest import build_dataset

DATA_ID = 42468
ARFF_URL = "https://api.openml.org/data/v1/download/22044765/hls4ml_lhc_jets_hlf.arff"
# OpenML's class values (nominal, in OpenML's order) and the names hepad uses for them.
OPENML_CLASSES = ("g", "q", "t", "w", "z")
TO_OPENML = {"g": "g", "q": "q", "top": "t", "w": "w", "z": "z"}
CLASS_MASS = {"g": 30.0, "q": 20.0, "w": 80.0, "z": 91.0, "top": 172.0}  # GeV, mass_mmdt peaks


def toy_jet_features(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 16) jet features in FEATURES order: q/g alike, W/Z/top clearly different (mass, prongs, size)."""
    labels = np.asarray(labels)
    n = len(labels)
    signal = np.isin(labels, ("w", "z", "top"))
    x = rng.normal(0.0, 1.0, (n, len(FEATURES)))
    x[:, :14] = 0.3 + 0.05 * x[:, :14] + np.where(signal, 0.25, 0.0)[:, None] * (np.arange(14) % 2)[None, :]
    x[:, 0] = -2.5 + 0.5 * rng.normal(size=n) + np.where(signal, 1.0, 0.0)  # zlogz
    x[:, MASS_INDEX] = np.abs(np.array([CLASS_MASS[c] for c in labels]) + 8.0 * rng.normal(size=n))
    x[:, -1] = rng.poisson(np.where(signal, 55.0, 28.0))  # multiplicity
    return x.astype(np.float32)


def toy_labels(
    rng: np.random.Generator, n_g: int = 120, n_q: int = 120, n_each_signal: int = 50
) -> np.ndarray:
    labels = np.array(
        ["g"] * n_g + ["q"] * n_q + ["w"] * n_each_signal + ["z"] * n_each_signal + ["top"] * n_each_signal
    )
    return labels[rng.permutation(len(labels))]


def write_openml_cache(data_home: Path, features: np.ndarray, labels: np.ndarray) -> str:
    """Write the files scikit-learn's fetch_openml caches for data id 42468; return the ARFF's md5.

    The layout is scikit-learn's cache: ``<data_home>/openml/openml.org/<URL path>.gz`` for the three JSON
    answers of the OpenML API (description, features, qualities) and for the ARFF file itself.
    """
    lines = ["% hls4ml_lhc_jets_hlf (toy rows written by hepad's tests)", "@RELATION hls4ml_lhc_jets_hlf", ""]
    lines += [f"@ATTRIBUTE {name} NUMERIC" for name in FEATURES]
    lines += ["@ATTRIBUTE class {" + ",".join(OPENML_CLASSES) + "}", "", "@DATA"]
    lines += [
        ",".join(f"{v:.9g}" for v in row) + f",{TO_OPENML[label]}"
        for row, label in zip(features, labels, strict=True)
    ]
    arff = ("\n".join(lines) + "\n").encode()
    md5 = hashlib.md5(arff).hexdigest()
    feature_list = [
        {
            "index": str(i),
            "name": name,
            "data_type": "numeric",
            "is_target": "false",
            "is_ignore": "false",
            "is_row_identifier": "false",
            "number_of_missing_values": "0",
        }
        for i, name in enumerate(FEATURES)
    ]
    feature_list.append(
        {
            "index": str(len(FEATURES)),
            "name": "class",
            "data_type": "nominal",
            "nominal_value": list(OPENML_CLASSES),
            "is_target": "true",
            "is_ignore": "false",
            "is_row_identifier": "false",
            "number_of_missing_values": "0",
        }
    )
    answers = {
        "description": {
            "data_set_description": {
                "id": str(DATA_ID),
                "name": "hls4ml_lhc_jets_hlf",
                "version": "1",
                "format": "ARFF",
                "status": "active",
                "file_id": "22044765",
                "url": ARFF_URL,
                "md5_checksum": md5,
                "default_target_attribute": "class",
                "description": "toy copy for tests",
            }
        },
        "features": {"data_features": {"feature": feature_list}},
        "qualities": {
            "data_qualities": {
                "quality": [
                    {"name": "NumberOfInstances", "value": f"{len(labels)}.0"},
                    {"name": "NumberOfFeatures", "value": f"{len(FEATURES) + 1}.0"},
                ]
            }
        },
    }
    for key, path in openml_cache_paths(data_home, DATA_ID).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps(answers[key]).encode()))
    arff_path = (
        Path(data_home) / "openml" / "openml.org" / "data/v1/download/22044765/hls4ml_lhc_jets_hlf.arff.gz"
    )
    arff_path.parent.mkdir(parents=True, exist_ok=True)
    arff_path.write_bytes(gzip.compress(arff))
    return md5


@pytest.fixture
def toy_jets():
    rng = np.random.default_rng(5)
    labels = toy_labels(rng)
    return toy_jet_features(labels, rng), labels


@pytest.fixture
def no_network(monkeypatch):
    """Make any OpenML request fail loudly: the cache must be enough."""
    import sklearn.datasets._openml as openml

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[0] if args else kwargs}")

    monkeypatch.setattr(openml, "urlopen", refuse)


@pytest.mark.parametrize("download", [False, True])
def test_openml_cache_is_read_without_network(tmp_path, toy_jets, no_network, download):
    features, labels = toy_jets
    md5 = write_openml_cache(tmp_path, features, labels)
    samples = build_dataset(
        "hls4ml", tmp_path, source="openml", download=download, scaling=None, seed=3
    ).load()
    n_background = int(np.isin(labels, ("g", "q")).sum())
    counts = samples.counts()
    assert counts["background_train"] + counts["background_val"] + counts["background_test"] == n_background
    assert set(samples.signals) == {"w", "z", "top"}
    for name in ("w", "z", "top"):
        # OpenML says 't' where the HDF5 one-hot says 'j_t': each signal must get exactly its own jets.
        np.testing.assert_allclose(
            np.sort(samples.signals[name][:, MASS_INDEX]),
            np.sort(features[labels == name][:, MASS_INDEX]),
            rtol=1e-6,
        )
    assert samples.event_shape == (16,) and samples.representation == "features"
    entry = samples.provenance[0]
    assert entry["verified"] is True and entry["expected_checksum"] == f"md5:{md5}"
    assert entry["source"] == "openml:42468"


def test_openml_and_hdf5_sources_agree_despite_different_label_orders(tmp_path, toy_jets, no_network):
    features, labels = toy_jets
    write_openml_cache(tmp_path / "openml_home", features, labels)
    (tmp_path / "h5" / "val").mkdir(parents=True)
    write_hls4ml_h5(tmp_path / "h5" / "val" / "jetImage_0.h5", features[:300], labels[:300])
    write_hls4ml_h5(tmp_path / "h5" / "val" / "jetImage_1.h5", features[300:], labels[300:])
    from_openml = build_dataset(
        "hls4ml", tmp_path / "openml_home", source="openml", download=False, seed=1
    ).load()
    from_h5 = build_dataset(
        "hls4ml",
        tmp_path / "h5",
        source="h5",
        download=False,
        h5={"files": ["val/*.h5"], "archive": None},
        seed=1,
    ).load()
    for name in ("background_train", "background_val", "background_test"):
        np.testing.assert_allclose(getattr(from_h5, name), getattr(from_openml, name), rtol=1e-5, atol=1e-5)
    for name in ("w", "z", "top"):
        np.testing.assert_allclose(from_h5.signals[name], from_openml.signals[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(from_h5.observables[name]["mass"], features[labels == name][:, MASS_INDEX])
    assert all(entry["verified"] is False for entry in from_h5.provenance)  # present files: nothing vouches


def test_hdf5_file_has_the_published_layout(tmp_path, toy_jets):
    import h5py

    features, labels = toy_jets
    path = tmp_path / "jets.h5"
    write_hls4ml_h5(path, features, labels)
    with h5py.File(path) as f:
        jets = f["jets"][:]
        names = [n.decode() for n in f["jetFeatureNames"][:]]
    assert jets.shape == (len(labels), 59) and len(names) == 59
    assert names[12] == "j_zlogz" and names[34] == "j_c1_b0_mmdt" and names[46] == "j_n2_b2_mmdt"
    assert names[48] == "j_mass_mmdt" and names[52] == "j_multiplicity"
    assert names[53:58] == ["j_g", "j_q", "j_w", "j_z", "j_t"]
    # The notebook's own selection gives the 16 features and the one-hot target.
    np.testing.assert_array_equal(
        jets[:, [12, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 48, 52]], features
    )
    np.testing.assert_array_equal(
        np.argmax(jets[:, -6:-1], axis=1), [["g", "q", "w", "z", "top"].index(c) for c in labels]
    )
    read_features, read_labels = read_hls4ml_h5(path)
    np.testing.assert_array_equal(read_features, features)
    np.testing.assert_array_equal(read_labels, labels)
    assert [H5_FEATURE_NAMES[c] for c in H5_FEATURE_COLUMNS] == [f"j_{n}" for n in FEATURES]


def test_scaler_is_fitted_on_background_train_only(tmp_path, toy_jets, no_network):
    features, labels = toy_jets
    write_openml_cache(tmp_path, features, labels)
    raw = build_dataset("hls4ml", tmp_path, download=False, scaling=None, seed=7).load()
    scaled = build_dataset("hls4ml", tmp_path, download=False, scaling="standard", seed=7).load()
    train = raw.background_train.astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    np.testing.assert_allclose(scaled.background_train, (train - mean) / std, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        scaled.background_test, (raw.background_test - mean) / std, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(scaled.signals["top"], (raw.signals["top"] - mean) / std, rtol=1e-4, atol=1e-4)
    # Fitted on anything else, the test split or the signals would be centred too.
    assert abs(scaled.signals["top"][:, MASS_INDEX].mean()) > 3
    # The split itself is the seeded background split.
    background = features[np.isin(labels, ("g", "q"))]
    rows = split_background(len(background), {"train": 0.6, "val": 0.2, "test": 0.2}, 7)["train"]
    np.testing.assert_array_equal(raw.background_train, background[rows])


def test_missing_cache_with_download_off_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="data.download=false") as error:
        build_dataset("hls4ml", tmp_path, download=False).load()
    assert "data.download=true" in str(error.value)


def test_pinned_openml_checksum_mismatch_is_refused(tmp_path, toy_jets, no_network):
    features, labels = toy_jets
    md5 = write_openml_cache(tmp_path, features, labels)
    build_dataset(
        "hls4ml", tmp_path, download=False, openml={"data_id": 42468, "checksum": f"md5:{md5}"}
    ).load()
    with pytest.raises(DataError, match="pins md5:0000"):
        build_dataset(
            "hls4ml", tmp_path, download=False, openml={"data_id": 42468, "checksum": "md5:" + "0" * 32}
        ).load()


def test_max_jets_is_a_seeded_subsample(tmp_path, toy_jets, no_network):
    features, labels = toy_jets
    write_openml_cache(tmp_path, features, labels)
    first = build_dataset("hls4ml", tmp_path, download=False, max_jets=200, seed=4).load()
    again = build_dataset("hls4ml", tmp_path, download=False, max_jets=200, seed=4).load()
    assert sum(first.counts().values()) == 200
    np.testing.assert_array_equal(first.background_train, again.background_train)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("not_hdf5", "not a readable HDF5 file"),
        ("no_jets", "no 'jets' dataset"),
        ("wrong_shape", r"expected \(n_jets, 59\)"),
        ("wrong_names", "jetFeatureNames differ"),
    ],
)
def test_damaged_hdf5_files_are_refused_with_the_reason(tmp_path, damage, message):
    import h5py

    path = tmp_path / "val" / "bad.h5"
    path.parent.mkdir()
    if damage == "not_hdf5":
        path.write_bytes(b"this is not hdf5")
    else:
        with h5py.File(path, "w") as f:
            if damage == "no_jets":
                f.create_dataset("jetImage", data=np.zeros((2, 3, 3)))
            elif damage == "wrong_shape":
                f.create_dataset("jets", data=np.zeros((2, 58), np.float32))
            else:
                f.create_dataset("jets", data=np.zeros((2, 59), np.float32))
                names = list(H5_FEATURE_NAMES)
                names[48], names[52] = names[52], names[48]
                f.create_dataset("jetFeatureNames", data=np.array([n.encode() for n in names]))
    with pytest.raises(DataError, match=message):
        build_dataset(
            "hls4ml", tmp_path, source="h5", download=False, h5={"files": ["val/*.h5"], "archive": None}
        ).load()


def _tar(path: Path, members: dict[str, Path]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_archive_is_extracted_once_and_its_files_count_as_verified(tmp_path, toy_jets):
    features, labels = toy_jets
    source = tmp_path / "src.h5"
    write_hls4ml_h5(source, features, labels)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    md5 = _tar(data_dir / "val.tar.gz", {"val/jetImage_0.h5": source})
    config = {
        "files": ["val/*.h5"],
        "archive": {
            "file": "val.tar.gz",
            "url": "https://example.invalid/val.tar.gz",
            "checksum": f"md5:{md5}",
        },
    }
    samples = build_dataset("hls4ml", data_dir, source="h5", download=False, h5=config).load()
    assert (data_dir / "val" / "jetImage_0.h5").is_file()
    assert (
        samples.provenance[0]["verified"] is True
        and samples.provenance[0]["archive_checksum"] == f"md5:{md5}"
    )
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")]  # no staging directory left
    # Later runs find the files present: the manifest written at extraction still vouches for them.
    again = build_dataset("hls4ml", data_dir, source="h5", download=False, h5=config).load()
    assert again.provenance[0]["verified"] is True
    write_hls4ml_h5(data_dir / "val" / "jetImage_0.h5", features[:100], labels[:100])
    with pytest.raises(DataError, match="changed since it was extracted"):
        build_dataset("hls4ml", data_dir, source="h5", download=False, h5=config).load()


def test_archive_escaping_the_data_directory_is_refused(tmp_path, toy_jets):
    features, labels = toy_jets
    source = tmp_path / "src.h5"
    write_hls4ml_h5(source, features, labels)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    md5 = _tar(data_dir / "evil.tar.gz", {"../escaped.h5": source})
    config = {
        "files": ["*.h5"],
        "archive": {
            "file": "evil.tar.gz",
            "url": "https://example.invalid/evil.tar.gz",
            "checksum": f"md5:{md5}",
        },
    }
    with pytest.raises(DataError, match="cannot extract"):
        build_dataset("hls4ml", data_dir, source="h5", download=False, h5=config).load()
    assert not (tmp_path / "escaped.h5").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_archive_with_a_link_out_of_the_data_directory_is_refused(tmp_path, toy_jets, kind):
    """A link member pointing outside the target, followed by a member written through it."""
    import io

    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = data_dir / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("val/link.h5")
        link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        link.linkname = str(outside) if kind == "hardlink" else "../../outside.txt"
        tar.addfile(link)
        payload = tarfile.TarInfo("val/link.h5")
        payload.size = 8
        tar.addfile(payload, io.BytesIO(b"replaced"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    config = {
        "files": ["val/*.h5"],
        "archive": {
            "file": archive.name,
            "url": "https://example.invalid/evil.tar.gz",
            "checksum": f"md5:{md5}",
        },
    }
    with pytest.raises(DataError, match="cannot extract"):
        build_dataset("hls4ml", data_dir, source="h5", download=False, h5=config).load()
    assert outside.read_text() == "untouched"
    assert not (data_dir / "val").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "csv"}, "data.source"),
        ({"signals": ["higgs"]}, "data.signals"),
        ({"max_jets": 0}, "data.max_jets"),
        ({"scaling": "minmax"}, "data.scaling"),
        ({"h5": {"files": []}}, "data.h5.files"),
    ],
)
def test_bad_settings_fail_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        build_dataset("hls4ml", tmp_path / "nowhere", **kwargs)
    assert not (tmp_path / "nowhere").exists()


def test_signal_jets_identical_to_background_jets_are_dropped(tmp_path, toy_jets, no_network):
    features, labels = toy_jets
    top = np.flatnonzero(labels == "top")[:3]
    features = np.r_[features, features[top]]  # the same three jets again, labelled as quarks
    labels = np.r_[labels, ["q"] * 3]
    write_openml_cache(tmp_path, features, labels)
    samples = build_dataset("hls4ml", tmp_path, download=False, scaling=None).load()
    assert len(samples.signals["top"]) == int((labels == "top").sum()) - 3
    background = np.r_[samples.background_train, samples.background_val, samples.background_test]
    assert {row.tobytes() for row in samples.signals["top"]}.isdisjoint({row.tobytes() for row in background})
