"""The fuzzy AND: its combination and loss against written-out formulas, NumPy scoring against Keras,
MC dropout, save/load, and the decomposition it exists for: an anomaly injected into one channel's
features gets that channel's score, and the heat map shows it against the subsystem that broke."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hepad_cli.data.samples import TrainingSet
from hepad_cli.errors import ConfigError
from hepad_cli.evaluation.evaluate import EvaluatorSettings, score_samples_by_name
from hepad_cli.models.fuzzy_and import GLOBAL, GLOBAL_MC, FuzzyAndDetector, log_global
from tests.conftest import build_dataset
from tests.data.test_cms_dqm import SUBSYSTEM_CHANNEL, write_cms_dqm_files

FAST = {
    "epochs": 8,
    "batch_size": 64,
    "learning_rate": 0.03,
    "optimizer": "adam",
    "early_stopping_patience": 0,
    "reduce_lr_patience": 0,
    "progress_bar": False,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Generated lumisections (anomalies injected per subsystem) and a fuzzy AND fitted on them once."""
    directory = tmp_path_factory.mktemp("cms") / "cms_dqm"
    write_cms_dqm_files(directory, n=500)
    samples = build_dataset("cms_dqm", directory, trust_pickle=True, seed=1).load()
    detector = FuzzyAndDetector(hidden=[16], dropout=0.1, l2=1e-4, mc_passes=8, trainer=FAST, seed=0)
    detector.fit(samples.training_set("train"), samples.training_set("val"))
    return samples, detector


def test_combinations_follow_their_formulas():
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(50, 4))
    f = 1 / (1 + np.exp(-logits))
    # The notebook's fuzzy AND: exp(sum f_i - n) with f_i the sigmoid outputs, i.e. a product of exp(f_i - 1).
    notebook = np.exp(log_global(logits, "notebook", np))
    np.testing.assert_allclose(notebook, np.exp(f.sum(axis=1) - 4), rtol=1e-12)
    np.testing.assert_allclose(notebook, np.prod(np.exp(f - 1), axis=1), rtol=1e-12)
    assert (notebook > np.exp(-4)).all() and (notebook <= 1).all()
    # The exact product of the channel probabilities.
    np.testing.assert_allclose(np.exp(log_global(logits, "product", np)), np.prod(f, axis=1), rtol=1e-10)
    for combination in ("notebook", "product"):
        with_keras = keras.ops.convert_to_numpy(
            log_global(keras.ops.convert_to_tensor(logits), combination, keras.ops)
        )
        np.testing.assert_allclose(with_keras, log_global(logits, combination, np), rtol=1e-5, atol=1e-6)


def test_loss_is_weighted_log_loss_plus_largest_channel_penalty(trained):
    import keras

    samples, detector = trained
    x = samples.background_val
    y, w = samples.val_labels, samples.val_weights
    inputs, targets = detector.training_arrays(samples.training_set("val"))
    outputs = detector.forward(detector.networks_, inputs, False, None)
    terms = detector.loss_terms(inputs, keras.ops.convert_to_tensor(targets), outputs, detector.networks_)
    total, log_loss, penalty = (
        float(keras.ops.convert_to_numpy(terms[name])) for name in ("loss", "log_loss", "l2_penalty")
    )
    g = detector.global_good_probability(x)
    expected_log_loss = np.sum(w * -(y * np.log(g) + (1 - y) * np.log(1 - g))) / np.sum(w)
    kernels = [[kernel for kernel, _ in layers] for layers in detector.weights_]
    expected_penalty = max(sum(np.sum(k**2) for k in channel) for channel in kernels)
    assert log_loss == pytest.approx(expected_log_loss, rel=1e-4)
    assert penalty == pytest.approx(expected_penalty, rel=1e-4)
    assert total == pytest.approx(expected_log_loss + detector.l2 * expected_penalty, rel=1e-4)


def test_numpy_scoring_matches_keras_and_mc_dropout_averages_seeded_passes(trained):
    samples, detector = trained
    x = samples.background_test
    logits = detector.channel_logits(x)
    for i, (columns, net) in enumerate(
        zip(detector.feature_groups_.values(), detector.subnets_, strict=True)
    ):
        keras_logits = np.asarray(net(x[:, columns], training=False))[:, 0]
        np.testing.assert_allclose(logits[:, i], keras_logits, rtol=1e-4, atol=1e-5)
    scores = detector.score_all(x)
    assert list(scores) == [
        GLOBAL,
        GLOBAL_MC,
        "channel_muons",
        "channel_photons",
        "channel_PF",
        "channel_calo",
    ]
    np.testing.assert_allclose(scores[GLOBAL], detector.score(x))
    rng = np.random.default_rng(detector.seed)
    passes = [detector.global_good_probability(x, rng) for _ in range(detector.mc_passes)]
    np.testing.assert_allclose(scores[GLOBAL_MC], 1 - np.mean(passes, axis=0))
    assert not np.allclose(passes[0], passes[1])  # dropout is on in MC passes
    np.testing.assert_array_equal(detector.score_all(x)[GLOBAL_MC], scores[GLOBAL_MC])  # seeded
    assert np.corrcoef(scores[GLOBAL], scores[GLOBAL_MC])[0, 1] > 0.9


def test_injected_anomalies_get_the_highest_auc_in_their_channel(trained, tmp_path):
    samples, detector = trained
    scores_by_name, _ = score_samples_by_name(detector, samples.named_test_samples())
    settings = EvaluatorSettings(n_bootstrap=0, seed=0)
    report = detector.extra_report(samples, scores_by_name, tmp_path, settings)
    table = report["subsystem_channel_auc"]
    assert table["channels"] == ["muons", "photons", "PF", "calo"]
    rows = dict(zip(table["subsystems"], table["auc_lumi_weighted"], strict=True))
    for subsystem, channel in SUBSYSTEM_CHANNEL.items():
        row = rows[subsystem]
        best = table["channels"][int(np.argmax(row))]
        assert best == channel, (subsystem, row)
        assert row[table["channels"].index(channel)] > 0.9
    assert rows["Pixel"] == [None] * 4  # never bad in the test sample: undefined, not 0.5
    assert report["global"]["deterministic"]["bad"]["auc_lumi_weighted"] > 0.9
    assert report["global"]["mc_dropout_8"]["bad"]["auc_lumi_weighted"] > 0.9
    assert set(report["channels"]) == {"muons", "photons", "PF", "calo"}
    assert report["figures"] == ["channel_scores.png", "subsystem_channel_auc.png"]
    for name in report["figures"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    json.dumps(report)  # auc.json material


def test_save_and_load_give_the_same_scores(trained, tmp_path):
    samples, detector = trained
    detector.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "channel_PF.keras",
        "channel_calo.keras",
        "channel_muons.keras",
        "channel_photons.keras",
        "params.json",
        "state.json",
    ]
    loaded = FuzzyAndDetector.load(tmp_path / "model")
    for name, values in detector.score_all(samples.background_test).items():
        np.testing.assert_allclose(loaded.score_all(samples.background_test)[name], values, rtol=1e-6)


def test_fit_without_labels_or_channels_says_what_is_missing():
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ConfigError, match="trains on global good/bad labels.*data.training=weak"):
        FuzzyAndDetector().fit(x, x)
    with pytest.raises(ConfigError, match="name its channels"):
        FuzzyAndDetector().fit(TrainingSet(x, labels=np.ones(10)), x)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": [0]}, "model.hidden"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"combination": "min"}, "model.combination"),
        ({"mc_passes": 0}, "model.mc_passes"),
        ({"l2": -1}, "model.l2"),
        ({"activation": "softmax"}, "model.activation"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FuzzyAndDetector(**kwargs)


def test_channel_scores_are_written_for_both_combinations(tmp_path: Path, trained):
    samples, _ = trained
    detector = FuzzyAndDetector(hidden=[4], dropout=0.0, combination="product", trainer={**FAST, "epochs": 1})
    detector.fit(samples.training_set("train"), samples.training_set("val"))
    scores = detector.score_all(samples.background_test)
    f = 1 - np.stack([scores[f"channel_{name}"] for name in detector.feature_groups_], axis=1)
    np.testing.assert_allclose(1 - scores[GLOBAL], np.prod(f, axis=1), rtol=1e-8)
    np.testing.assert_allclose(scores[GLOBAL_MC], scores[GLOBAL])  # no dropout: MC equals deterministic
