"""data=files: real ROOT, Parquet, HDF5 and NumPy files written here, through every representation."""

from __future__ import annotations

import numpy as np
import pytest

from hepad_cli.data.files import four_vectors
from hepad_cli.data.images import jet_images
from hepad_cli.data.samples import split_background
from hepad_cli.errors import DataError
from hepad_cli.experiment import instantiate_node
from tests.conftest import compose_config
from tests.user_files import (
    FEATURES,
    SUFFIXES,
    WRITERS,
    Jets,
    make_jets,
    write_pandas_hdf5,
    write_root,
)

CONSTITUENTS = "data.constituents={pt: part_pt, eta: part_eta, phi: part_phi, e: part_e}"


def user_files(*overrides: str):
    """UserFiles as a run builds it from conf/data/files.yaml and these overrides."""
    return instantiate_node(compose_config("data=files", *overrides).data)


def read(background, signal, *overrides: str):
    """Dataset.read() of one background and one signal file."""
    dataset = user_files(f"data.background=[{background}]", f"data.signals.sig=[{signal}]", *overrides)
    return dataset, dataset.read()


@pytest.fixture(scope="module")
def jets() -> tuple[Jets, Jets]:
    return make_jets(300, seed=1), make_jets(80, seed=2, prongs=3, first_event=10_000)


@pytest.fixture(scope="module")
def files(tmp_path_factory, jets) -> dict[str, tuple]:
    """The same background and signal jets in every format."""
    directory = tmp_path_factory.mktemp("user-files")
    return {
        fmt: tuple(
            write(directory / f"{name}{SUFFIXES[fmt]}", sample)
            for name, sample in zip(("bkg", "sig"), jets, strict=True)
        )
        for fmt, write in WRITERS.items()
    }


def key_for(fmt: str) -> list[str]:
    return ["data.key=jets"] if fmt == "h5" else []


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_features_are_the_named_columns_in_the_given_order(files, jets, fmt):
    order = ["tau32", "mass", "pt", "tau21"]
    _, content = read(
        *files[fmt], f"data.features=[{','.join(order)}]", "data.passthrough=[run,event]", *key_for(fmt)
    )
    expected = np.column_stack([jets[0].features[name] for name in order])
    np.testing.assert_array_equal(content.background.events, expected)
    np.testing.assert_array_equal(content.background.observables["entry"], np.arange(300))
    np.testing.assert_array_equal(content.signals["sig"].observables["event"], jets[1].event)
    assert set(content.background.observables["source_file"]) == {0}
    assert set(content.signals["sig"].observables["source_file"]) == {1}
    assert [entry["sample"] for entry in content.provenance] == ["background", "sig"]


def test_pandas_table_is_read_through_pandas(tmp_path, jets):
    background = write_pandas_hdf5(tmp_path / "bkg.h5", jets[0])
    signal = write_pandas_hdf5(tmp_path / "sig.h5", jets[1])
    _, content = read(background, signal, f"data.features=[{','.join(FEATURES)}]", "data.chunk_size=70")
    expected = np.column_stack([jets[0].features[name] for name in FEATURES])
    np.testing.assert_array_equal(content.background.events, expected)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_image_representation_equals_the_top_tagging_image_path(files, jets, fmt):
    _, content = read(
        *files[fmt], "data.representation=image", CONSTITUENTS, "data.chunk_size=64", *key_for(fmt)
    )
    sample = jets[1]
    # The reference: the same particles as (E, px, py, pz) zero-padded, through the Top Tagging image code.
    width = int(sample.counts.max())
    pt, eta, phi, energy = (
        sample.padded(name, width).astype(np.float64)
        for name in ("part_pt", "part_eta", "part_phi", "part_e")
    )
    vectors = np.stack([energy, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)
    vectors[pt == 0] = 0.0
    np.testing.assert_allclose(content.signals["sig"].events[..., 0], jet_images(vectors), atol=1e-6)
    assert content.signals["sig"].events.shape == (80, 16, 16, 1)
    jet_pt = np.hypot(vectors[..., 1].sum(1), vectors[..., 2].sum(1))
    np.testing.assert_allclose(content.signals["sig"].observables["pt"], jet_pt, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["root", "parquet", "npz"])
def test_particles_are_padded_and_sorted_by_pt(files, jets, fmt):
    _, content = read(
        *files[fmt],
        "data.representation=particles",
        "data.constituents={pt: part_pt, eta: part_eta, phi: part_phi}",
        "data.max_particles=10",
    )
    events = content.background.events
    assert events.shape == (300, 10, 3)
    sample = jets[0]
    starts = np.cumsum(sample.counts) - sample.counts
    for jet in (0, 7, 123):
        pt = sample.particles["part_pt"][starts[jet] : starts[jet] + sample.counts[jet]]
        eta = sample.particles["part_eta"][starts[jet] : starts[jet] + sample.counts[jet]]
        order = np.argsort(-pt, kind="stable")[:10]
        np.testing.assert_array_equal(events[jet, : len(order), 0], pt[order])
        np.testing.assert_array_equal(events[jet, : len(order), 1], eta[order])
        assert (events[jet, len(order) :] == 0).all()


def test_massless_four_vectors_from_pt_eta_phi():
    from hepad_cli.data.columns import Jagged

    counts = np.array([2, 1])
    pt, eta, phi = np.array([10.0, 0.0, 5.0]), np.array([0.5, 0.0, -1.0]), np.array([0.1, 0.0, 3.0])
    vectors = four_vectors(
        {k: Jagged(counts, v) for k, v in zip(("pt", "eta", "phi"), (pt, eta, phi), strict=True)}
    )
    np.testing.assert_allclose(
        vectors[:, 0] ** 2, vectors[:, 1] ** 2 + vectors[:, 2] ** 2 + vectors[:, 3] ** 2
    )
    np.testing.assert_allclose(vectors[0, 1:], [10 * np.cos(0.1), 10 * np.sin(0.1), 10 * np.sinh(0.5)])
    assert (vectors[1] == 0).all()  # padding stays empty


def test_two_trees_in_one_file_need_a_tree_name(tmp_path, jets):
    background = write_root(tmp_path / "bkg.root", jets[0], extra_tree="Lumi")
    signal = write_root(tmp_path / "sig.root", jets[1])
    with pytest.raises(DataError, match=r"holds 2 TTrees \['Jets', 'Lumi'\]: name one with data.tree"):
        read(background, signal, "data.features=[mass]")
    _, content = read(background, signal, "data.features=[mass]", "data.tree=Jets")
    assert len(content.background) == 300
    with pytest.raises(DataError, match="has no TTree 'Events'; its TTrees: \\['Jets', 'Lumi'\\]"):
        read(background, signal, "data.features=[mass]", "data.tree=Events")


@pytest.mark.parametrize("fmt", ["root", "parquet", "h5"])
def test_selection_keeps_entry_numbers(files, jets, fmt):
    _, content = read(
        *files[fmt],
        "data.features=[mass,pt]",
        "data.selection='(mass > 40) & (abs(pt - 600) < 30)'",
        *key_for(fmt),
    )
    features = jets[0].features
    kept = np.flatnonzero((features["mass"] > 40) & (np.abs(features["pt"] - 600) < 30))
    np.testing.assert_array_equal(content.background.observables["entry"], kept)
    np.testing.assert_array_equal(content.background.events[:, 0], features["mass"][kept])


def test_max_events_takes_a_seeded_subsample(files):
    first = read(*files["root"], "data.features=[mass]", "data.max_events=100", "data.chunk_size=37")[1]
    again = read(*files["root"], "data.features=[mass]", "data.max_events=100")[1]
    other = read(*files["root"], "data.features=[mass]", "data.max_events=100", "seed=3")[1]
    entries = first.background.observables["entry"]
    assert len(entries) == 100 and len(first.signals["sig"]) == 80
    np.testing.assert_array_equal(entries, again.background.observables["entry"])
    assert not np.array_equal(entries, other.background.observables["entry"])


def test_label_column_routes_events_to_samples(tmp_path, jets):
    mixed = make_jets(200, seed=5)
    labels = np.random.default_rng(0).integers(0, 3, 200)
    mixed.features["label"] = labels.astype(np.float32)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({name: values for name, values in mixed.features.items()}), path)
    dataset = user_files(
        f"data.files=[{path}]",
        "data.label_column=label",
        "data.labels={0: background, 1: top, 2: top}",
        "data.features=[mass,pt]",
    )
    content = dataset.read()
    np.testing.assert_array_equal(content.background.observables["entry"], np.flatnonzero(labels == 0))
    assert sorted(content.signals["top"].observables["entry"]) == list(np.flatnonzero(labels > 0))


def test_scaler_is_fitted_on_background_train_only(files, jets):
    dataset = user_files(
        f"data.background=[{files['root'][0]}]",
        f"data.signals.sig=[{files['root'][1]}]",
        f"data.features=[{','.join(FEATURES)}]",
    )
    samples = dataset.load()
    train = split_background(300, dataset.split, dataset.seed)["train"]
    raw = np.column_stack([jets[0].features[name] for name in FEATURES])[train]
    np.testing.assert_allclose(samples.preprocessing.mean_, raw.astype(np.float64).mean(0), rtol=1e-10)
    assert samples.preprocessing.n_fitted_ == len(train)
    assert samples.input_signature["features"] == FEATURES


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.features=[mass,nsubjettiness]"],
            "has no branch 'nsubjettiness'; its branches: ['mass', 'tau21'",
        ),
        (
            ["data.features=[mass,part_pt]"],
            "branch 'part_pt' of .* is jagged .* use data.representation=particles",
        ),
        (
            ["data.representation=image", "data.constituents={pt: pt, eta: part_eta, phi: part_phi}"],
            "branch 'pt' of .* is flat; constituents need a jagged or fixed-length column",
        ),
        (
            ["data.representation=image", "data.constituents={pt: part_pt, eta: part_eta}"],
            "data.constituents must map one of",
        ),
        (["data.features=[mass]", "data.selection='masss > 3'"], "cannot be evaluated on"),
        (["data.representation=pixels"], "data.representation must be one of"),
    ],
)
def test_bad_settings_name_the_problem(files, overrides, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        read(*files["root"], *overrides)


def test_unequal_constituent_columns_are_refused(tmp_path, jets):
    broken = make_jets(20, seed=9)
    other = make_jets(20, seed=10)
    import awkward as ak
    import uproot

    path = tmp_path / "broken.root"
    with uproot.recreate(path) as f:
        f.mktree(
            "Jets", {"part_pt": "var * float32", "part_eta": "var * float32", "part_phi": "var * float32"}
        )
        f["Jets"].extend(
            {
                "part_pt": ak.unflatten(broken.particles["part_pt"], broken.counts),
                "part_eta": ak.unflatten(other.particles["part_eta"], other.counts),
                "part_phi": ak.unflatten(broken.particles["part_phi"], broken.counts),
            }
        )
    with pytest.raises(DataError, match="have different numbers of values at entry"):
        read(
            path,
            path,
            "data.representation=image",
            "data.constituents={pt: part_pt, eta: part_eta, phi: part_phi}",
        )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.root", b"not a ROOT file at all", "is not a readable ROOT file"),
        ("broken.parquet", b"PAR1 but not really", "is not a readable Parquet file"),
        ("broken.h5", b"no HDF5 here", "is not a readable HDF5 file"),
        ("events.csv", b"mass,pt\n1,2\n", "unknown file type '.csv'"),
    ],
)
def test_bad_files_are_refused(tmp_path, files, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read(path, files["root"][1], "data.features=[mass]")


def test_a_glob_that_matches_nothing_is_refused(tmp_path, files):
    with pytest.raises(DataError, match=r"data.background: '.*nothing\*.root' matches no file"):
        read(tmp_path / "nothing*.root", files["root"][1], "data.features=[mass]")


def test_parquet_and_root_give_the_same_images(files):
    _, from_root = read(*files["root"], "data.representation=image", CONSTITUENTS)
    _, from_parquet = read(*files["parquet"], "data.representation=image", CONSTITUENTS)
    np.testing.assert_array_equal(from_root.background.events, from_parquet.background.events)
