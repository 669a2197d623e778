"""Firmware export: hls4ml's bit-accurate C++ emulation of real tiny trained detectors against Keras.

Tolerance of the wide precision. ap_fixed<32,16> keeps 16 fractional bits: every input, weight, bias
and intermediate result is truncated by less than 2⁻¹⁶ ≈ 1.5e-5. Through two or three dense layers of
at most 12 inputs with weights of order 1, the reconstruction moves by well under 1e-3 per feature,
and the score (a mean of squared differences d², moved by about 2|d|·δ) by less than 1e-3 relative
plus 1e-4 absolute, which is the tolerance asserted. The on-chip sum is exact (hls4ml's ``auto``
widths), so nothing else contributes.
"""

from __future__ import annotations

import numpy as np
import pytest

from hepad_cli.evaluation.metrics import auc_with_interval, tpr_at_fpr
from hepad_cli.exporting import compare_scores, trigger_threshold
from hepad_cli.firmware import (
    FirmwareError,
    FirmwareSettings,
    FixedPoint,
    check_firmware,
    firmware_project,
    score_network,
)
from hepad_cli.models.dense_ae import DenseAutoencoder
from hepad_cli.models.vae import VariationalAutoencoder

WIDE = "ap_fixed<32,16>"
NARROW = "ap_fixed<6,3>"
RTOL, ATOL = 1e-3, 1e-4
N_FEATURES = 12
TRAINER = {"epochs": 2, "batch_size": 64, "progress_bar": False}
EVALUATOR = {
    "n_bootstrap": 40,
    "confidence_level": 0.95,
    "fprs": (0.1, 0.01),
    "min_background_above": 5,
    "seed": 0,
}


def toy_events(n: int, rng: np.random.Generator, signal: bool = False) -> np.ndarray:
    """Background: 12 features driven by 3 latent factors plus noise; signal: other factors, shifted."""
    mixing = np.random.default_rng(5).normal(0, 0.6, (3, N_FEATURES))
    latent = rng.normal(0, 1, (n, 3))
    events = latent @ mixing + rng.normal(0, 0.1, (n, N_FEATURES))
    if signal:
        events += rng.normal(0, 1.0, (n, N_FEATURES)) + 0.8
    return events.astype(np.float32)


@pytest.fixture(scope="module")
def toy_samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train": toy_events(1200, rng),
        "val": toy_events(300, rng),
        "background": toy_events(400, rng),
        "signal": toy_events(200, rng, signal=True),
    }


@pytest.fixture(scope="module")
def dense_ae(toy_samples):
    detector = DenseAutoencoder(latent_dim=3, encoder_hidden=[8], trainer=TRAINER, seed=0)
    return detector.fit(toy_samples["train"], toy_samples["val"])


def scored(toy_samples) -> dict[str, np.ndarray]:
    return {"background": toy_samples["background"], "signal": toy_samples["signal"]}


def emulate(detector, precision: str, directory, samples: dict, **settings) -> dict[str, np.ndarray]:
    network = score_network(detector)
    with firmware_project(network, FirmwareSettings(precision=precision, **settings), directory, True) as p:
        return {name: p.score(x) for name, x in samples.items()}


def test_wide_precision_emulation_equals_the_keras_scores(dense_ae, toy_samples, tmp_path):
    samples = scored(toy_samples)
    emulated = emulate(dense_ae, WIDE, tmp_path / "wide", samples)
    for name, x in samples.items():
        np.testing.assert_allclose(emulated[name], dense_ae.score(x), rtol=RTOL, atol=ATOL, err_msg=name)
    # The finished project: the HLS sources in place, no temporary directory, no emulation library.
    assert (tmp_path / "wide" / "firmware" / "anomaly_detector.cpp").is_file()
    assert (tmp_path / "wide" / "build_prj.tcl").is_file()
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.rglob("*.so"))
    assert str(tmp_path / "wide") in (tmp_path / "wide" / "hls4ml_config.yml").read_text()


def test_narrow_precision_changes_the_scores_and_the_comparison_reports_it(dense_ae, toy_samples, tmp_path):
    samples = scored(toy_samples)
    fixed = emulate(dense_ae, NARROW, tmp_path / "narrow", samples)
    keras = {name: dense_ae.score(x) for name, x in samples.items()}
    largest = max(np.max(np.abs(fixed[name] - keras[name])) for name in samples)
    assert largest > 100 * (ATOL + RTOL * max(np.max(v) for v in keras.values()))

    table = compare_scores(keras, fixed, "fixed", EVALUATOR, trigger_fpr=0.1)
    assert table["max_abs_score_difference"] == pytest.approx(largest)
    entry = table["signals"]["signal"]
    expected_fixed_auc, _ = auc_with_interval(fixed["background"], fixed["signal"], 20, 0)
    expected_float_auc, _ = auc_with_interval(keras["background"], keras["signal"], 20, 0)
    assert entry["auc_fixed"] == expected_fixed_auc and entry["auc_float"] == expected_float_auc
    assert entry["auc_fixed"] != entry["auc_float"]
    assert entry["auc_change"] == pytest.approx(expected_fixed_auc - expected_float_auc)
    assert entry["tpr_at_fpr_fixed"] == tpr_at_fpr(fixed["background"], fixed["signal"], (0.1, 0.01), 5)
    # Decisions at FPR 0.1, each score with its own threshold: count the flips here and compare.
    passes_float = keras["background"] > trigger_threshold(keras["background"], 0.1)
    passes_fixed = fixed["background"] > trigger_threshold(fixed["background"], 0.1)
    flips = int(np.count_nonzero(passes_float != passes_fixed))
    assert flips > 0
    assert table["trigger"]["background_flips"] == flips
    assert table["trigger"]["background_flip_share"] == flips / len(keras["background"])
    kept = np.count_nonzero(passes_float & passes_fixed) / np.count_nonzero(passes_float)
    assert table["trigger"]["float_triggered_kept_share"] == pytest.approx(kept) and kept < 1


def test_identical_scores_compare_as_identical(dense_ae, toy_samples):
    keras = {name: dense_ae.score(x) for name, x in scored(toy_samples).items()}
    table = compare_scores(keras, {k: v.copy() for k, v in keras.items()}, "fixed", EVALUATOR, 0.1)
    assert table["max_abs_score_difference"] == 0.0 and table["trigger"]["background_flips"] == 0
    assert table["trigger"]["float_triggered_kept_share"] == 1.0
    entry = table["signals"]["signal"]
    assert entry["auc_change"] == 0.0 and entry["tpr_at_fpr_fixed"] == entry["tpr_at_fpr_float"]
    unresolved = compare_scores(keras, keras, "fixed", EVALUATOR, trigger_fpr=1e-5)["trigger"]
    assert unresolved["background_flip_share"] is None and "needs at least 500000" in unresolved["why_null"]


def test_vae_reconstruction_score_runs_on_chip_through_the_mean_branch(toy_samples, tmp_path):
    vae = VariationalAutoencoder(latent_dim=3, hidden=[8], activation="relu", trainer=TRAINER, seed=0)
    vae.fit(toy_samples["train"], toy_samples["val"])
    network = score_network(vae)
    assert network.reduction == "sum" and network.score_factor == 1.0
    samples = scored(toy_samples)
    emulated = emulate(vae, WIDE, tmp_path / "vae", samples)
    for name, x in samples.items():
        # A sum over 12 features: twelve times the per-feature tolerance of the mean.
        np.testing.assert_allclose(emulated[name], vae.score(x), rtol=RTOL, atol=12 * ATOL, err_msg=name)


def test_layer_settings_reach_the_generated_hls_types(dense_ae, tmp_path):
    settings = FirmwareSettings(
        precision="ap_fixed<16,6>",
        input_precision="ap_fixed<18,10>",
        layer_precision={"dense_0": "ap_fixed<20,10,AP_RND,AP_SAT>"},
        score_precision="ap_ufixed<24,14>",
        reuse_factor=4,
    )
    with firmware_project(score_network(dense_ae), settings, tmp_path / "prj", emulate=False) as project:
        layers = {layer["name"]: layer for layer in project.layers}
    assert layers["event"]["types"]["result"] == "ap_fixed<18,10>"
    assert layers["dense_0"]["types"]["weight"] == "ap_fixed<20,10,AP_RND,AP_SAT,0>"
    assert layers["dense_1"]["types"]["weight"] == "ap_fixed<16,6>"
    assert layers["score_sum"]["types"]["result"] == "ap_ufixed<24,14>"
    assert layers["score_sum"]["types"]["weight"] == "ap_uint<1>"
    assert layers["dense_0"]["reuse_factor"] == 4 and layers["dense_0"]["multiplier_limit"] == 12 * 8 // 4
    defines = (tmp_path / "prj" / "firmware" / "defines.h").read_text()
    assert "typedef ap_fixed<20,10,AP_RND,AP_SAT,0> dense_0_weight_t;" in defines
    assert "typedef ap_fixed<18,10> input_t;" in defines


def test_an_interrupted_export_leaves_no_project(dense_ae, tmp_path):
    settings = FirmwareSettings(precision=WIDE)
    with pytest.raises(KeyboardInterrupt):
        with firmware_project(score_network(dense_ae), settings, tmp_path / "prj", emulate=True) as project:
            project.score(np.zeros((3, N_FEATURES), np.float32))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unsupported_detectors_are_refused_naming_what_is_supported(toy_samples):
    from hepad_cli.models.conv_ae import ConvAutoencoder
    from hepad_cli.models.fuzzy_and import FuzzyAndDetector
    from hepad_cli.models.pca import PCAReconstruction
    from hepad_cli.models.sklearn_detectors import IsolationForestDetector

    conv = ConvAutoencoder(latent_dim=2, filters=4)
    conv.networks_ = {"model": conv.build((8, 8, 1))[0]}
    with pytest.raises(FirmwareError, match=r"ConvAutoencoder cannot be exported.*Conv2D.*Supported: dense"):
        score_network(conv)
    train = toy_samples["train"]
    for detector in (IsolationForestDetector(n_estimators=5).fit(train), PCAReconstruction(2).fit(train)):
        with pytest.raises(
            FirmwareError, match="not a network of dense layers. Supported: dense autoencoders"
        ):
            score_network(detector)
    with pytest.raises(FirmwareError, match="FuzzyAndDetector cannot be exported"):
        score_network(FuzzyAndDetector())
    kl_vae = VariationalAutoencoder(
        latent_dim=2, hidden=[4], scores=["kl", "reconstruction"], trainer=TRAINER
    )
    with pytest.raises(FirmwareError, match="primary score is 'kl'.*exp"):
        score_network(kl_vae)
    swish = DenseAutoencoder(latent_dim=2, encoder_hidden=[4], activation="swish")
    swish.networks_ = {"model": swish.build((N_FEATURES,))[0]}
    with pytest.raises(FirmwareError, match="activation '(swish|silu)' has no hls4ml implementation"):
        check_firmware(score_network(swish), FirmwareSettings())


def test_settings_name_the_bad_value_and_the_fix(dense_ae):
    cases = {
        "ap_fixed<16>": "precision='ap_fixed<16>' is not an ap_fixed type: write e.g. 'ap_fixed<16,6>'",
        "fixed<16,6>": "is not an ap_fixed type",
        "ap_fixed<16,6,AP_ROUND>": "rounding mode 'AP_ROUND' is not one of",
        "ap_fixed<16,6,AP_RND,AP_CLIP>": "overflow mode 'AP_CLIP' is not one of",
        "ap_fixed<0,0>": "the width must be 1 to 128 bits",
    }
    for text, message in cases.items():
        with pytest.raises(FirmwareError, match=message.replace("(", r"\(").replace("[", r"\[")):
            FirmwareSettings(precision=text)
    with pytest.raises(FirmwareError, match="reuse_factor must be a positive integer"):
        FirmwareSettings(reuse_factor=0)
    with pytest.raises(FirmwareError, match=r"layer_precision names layers it cannot set: \['dense_9'\]"):
        check_firmware(
            score_network(dense_ae), FirmwareSettings(layer_precision={"dense_9": "ap_fixed<8,3>"})
        )


def test_fixed_point_types_parse_and_know_their_range():
    kind = FixedPoint.parse("ap_fixed<16,6>")
    assert (kind.width, kind.integer, kind.signed) == (16, 6, True)
    assert (kind.lowest, kind.highest, kind.step) == (-32.0, 32.0 - 2**-10, 2**-10)
    unsigned = FixedPoint.parse("ap_ufixed< 8 , 2 , AP_RND , AP_SAT >")
    assert str(unsigned) == "ap_ufixed<8,2,AP_RND,AP_SAT>"
    assert (unsigned.lowest, unsigned.highest) == (0.0, 4.0 - 2**-6)
    assert unsigned.directory_name == "ap_ufixed_8_2_AP_RND_AP_SAT"
    assert str(FixedPoint.parse("ap_fixed<16,6,AP_TRN,AP_WRAP>")) == "ap_fixed<16,6>"
