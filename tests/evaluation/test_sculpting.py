"""Background sculpting and the decorrelated score on samples whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from hepad_cli.errors import ConfigError, DataError
from hepad_cli.evaluation import decorrelation
from hepad_cli.evaluation.sculpting import SculptingSettings, js_divergence, sculpting_report


def test_a_score_equal_to_the_mass_sculpts_as_computed_by_hand():
    # 1000 events with masses 0.5, 1.5, ..., 999.5 GeV and score = mass; 10 bins of 100 GeV.
    mass = np.arange(1000) + 0.5
    report = sculpting_report(mass, mass, "mass", SculptingSettings(bins=10, range=[0, 1000]))
    assert report["observable"] == "mass"
    assert report["spearman"] == pytest.approx(1.0)
    # Keeping 10 %: the 100 heaviest, all in the last bin. Before: 0.1 in each bin; after: 1 in the last.
    p, q = np.full(10, 0.1), np.r_[np.zeros(9), 1.0]
    m = (p + q) / 2
    by_hand = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.log2(1 / m[-1])
    ten = report["by_background_efficiency"]["0.1"]
    assert ten["js_divergence"] == pytest.approx(by_hand, abs=1e-12)
    assert ten["median_before"] == 500.0
    assert ten["median_after"] == 950.0  # median of 900.5 ... 999.5
    assert ten["n_selected"] == 100
    # Keeping 50 %: the heaviest 500 fill the upper five bins with 0.2 each.
    p, q = np.full(10, 0.1), np.r_[np.zeros(5), np.full(5, 0.2)]
    m = (p + q) / 2
    by_hand = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q[5:] * np.log2(q[5:] / m[5:]))
    half = report["by_background_efficiency"]["0.5"]
    assert half["js_divergence"] == pytest.approx(by_hand, abs=1e-12)
    assert (half["median_after"], half["n_selected"]) == (750.0, 500)
    # Keeping 1 % keeps 10 events: exactly the minimum, so it is still reported.
    assert report["by_background_efficiency"]["0.01"]["n_selected"] == 10


def test_cuts_keeping_fewer_than_the_minimum_are_null():
    mass = np.arange(500) + 0.5
    report = sculpting_report(mass, mass, "mass", SculptingSettings(), min_events=10)
    assert report["by_background_efficiency"]["0.01"] is None  # 5 events pass
    assert report["by_background_efficiency"]["0.1"]["n_selected"] == 50


def test_a_score_independent_of_the_mass_does_not_sculpt_beyond_the_statistical_floor():
    rng = np.random.default_rng(4)
    mass = rng.exponential(80, 20000) + 20
    report = sculpting_report(rng.normal(size=20000), mass, "mass", SculptingSettings(range=[0, 400]))
    for entry in report["by_background_efficiency"].values():
        assert entry["js_divergence"] < 3 * entry["js_divergence_random_selection"] + 1e-3
    assert abs(report["spearman"]) < 0.03


def test_js_divergence_is_zero_for_equal_shapes_and_one_for_disjoint_ones():
    assert js_divergence(np.array([1, 2, 3]), np.array([2, 4, 6])) == 0.0
    assert js_divergence(np.array([5, 0]), np.array([0, 7])) == pytest.approx(1.0)


def mass_dependent_sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Falling mass spectrum; score = a known function of the mass plus noise whose width grows with it."""
    mass = rng.exponential(80, n) + 20
    score = np.sqrt(mass) / 3 + rng.normal(0, 0.5, n) * (1 + mass / 200)
    return score, mass


def test_the_decorrelated_score_of_a_mass_dependent_score_does_not_sculpt():
    rng = np.random.default_rng(5)
    fit_scores, fit_mass = mass_dependent_sample(100_000, rng)
    scores, mass = mass_dependent_sample(20000, rng)
    settings = SculptingSettings(range=[0, 400])
    transform = decorrelation.fit(fit_scores, fit_mass, "mass", bins=10)
    raw = sculpting_report(scores, mass, "mass", settings)["by_background_efficiency"]["0.1"]
    flat = sculpting_report(transform.apply(scores, mass), mass, "mass", settings)
    ten = flat["by_background_efficiency"]["0.1"]
    assert raw["js_divergence"] > 0.2
    assert ten["js_divergence"] < 0.005  # the random-selection floor of 2000 events is 0.0015
    # Over seeds 0-7 the median moved by at most 4.2 % (the median of 2000 events fluctuates so).
    assert ten["median_after"] == pytest.approx(ten["median_before"], rel=0.06)
    assert abs(flat["spearman"]) < 0.03
    # A cut on it keeps about the same background fraction in every mass range.
    cut = transform.apply(scores, mass) > np.quantile(transform.apply(scores, mass), 0.9)
    for low, high in ((20, 50), (50, 100), (100, 200), (200, 1000)):
        window = (mass >= low) & (mass < high)
        assert cut[window].mean() == pytest.approx(0.1, abs=0.02)


def test_the_decorrelated_score_keeps_the_order_of_scores_at_fixed_mass():
    rng = np.random.default_rng(6)
    transform = decorrelation.fit(*mass_dependent_sample(5000, rng), "mass", bins=8)
    scores = np.linspace(-10, 30, 401)  # far beyond the fitted scores on both sides
    for mass in (25.0, 90.0, 400.0):
        values = transform.apply(scores, np.full_like(scores, mass))
        assert np.all(np.diff(values) > 0)


def test_saved_transform_round_trips_and_the_module_api_applies_it(tmp_path):
    rng = np.random.default_rng(7)
    transform = decorrelation.fit(*mass_dependent_sample(3000, rng), "mass", bins=6)
    scores, mass = mass_dependent_sample(500, rng)
    assert decorrelation.load(tmp_path) is None  # a run without a decorrelated score
    decorrelation.save(transform, tmp_path)
    loaded = decorrelation.load(tmp_path)
    np.testing.assert_array_equal(loaded.apply(scores, mass), transform.apply(scores, mass))
    np.testing.assert_array_equal(
        decorrelation.apply(tmp_path, scores, {"mass": mass, "pt": mass}), transform.apply(scores, mass)
    )
    with pytest.raises(DataError, match="needs the observable 'mass'"):
        decorrelation.apply(tmp_path, scores, {"pt": mass})


def test_a_damaged_transform_file_is_refused_with_its_path(tmp_path):
    (tmp_path / decorrelation.FILE).write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="decorrelation.json is not a readable hepad decorrelation file"):
        decorrelation.load(tmp_path)


def test_too_few_events_per_bin_name_the_setting():
    with pytest.raises(DataError, match="evaluator.decorrelation_bins"):
        decorrelation.fit(np.arange(15.0), np.arange(15.0), "mass", bins=10)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"background_efficiencies": [0.1, 1.5]}, "background_efficiencies"),
        ({"background_efficiencies": []}, "background_efficiencies"),
        ({"bins": 1}, "evaluator.sculpting.bins"),
        ({"range": [5, 1]}, "evaluator.sculpting.range"),
        ({"observable": 3}, "evaluator.sculpting.observable"),
    ],
)
def test_bad_sculpting_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        SculptingSettings(**settings)


def test_an_observable_the_data_lack_is_refused_and_mass_is_the_default():
    assert SculptingSettings().observable_for({"mass", "pt"}) == "mass"
    assert SculptingSettings().observable_for({"met", "ht"}) is None
    assert SculptingSettings(observable="ht").observable_for({"met", "ht"}) == "ht"
    with pytest.raises(ConfigError, match=r"observable='msd' is not an observable .* \['mass', 'pt'\]"):
        SculptingSettings(observable="msd").observable_for({"mass", "pt"})
