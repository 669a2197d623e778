import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hepad_cli.evaluation.metrics import auc_with_interval, tpr_at_fpr


def test_auc_equals_scikit_learn_including_ties():
    rng = np.random.default_rng(3)
    background = np.round(rng.normal(0, 1, 5000), 1)  # rounding creates many ties
    signal = np.round(rng.normal(0.7, 1, 2000), 1)
    auc, (low, high) = auc_with_interval(background, signal, n_bootstrap=100, seed=1)
    labels = np.r_[np.zeros(5000), np.ones(2000)]
    assert auc == pytest.approx(roc_auc_score(labels, np.r_[background, signal]), abs=1e-12)
    assert low < auc < high
    assert high - low < 0.05


def test_bootstrap_interval_covers_the_true_auc_at_the_stated_rate():
    # Two unit Gaussians separated by d have AUC = Φ(d/√2); 40 independent experiments.
    from scipy.stats import norm

    true_auc = norm.cdf(0.5 / np.sqrt(2))
    rng = np.random.default_rng(5)
    covered = 0
    for trial in range(40):
        _, (low, high) = auc_with_interval(
            rng.normal(0, 1, 400), rng.normal(0.5, 1, 400), n_bootstrap=200, seed=trial
        )
        covered += low <= true_auc <= high
    assert covered >= 33  # 95% nominal; binomial(40, 0.95) falls below 34 with probability ~3%


def test_tpr_at_fpr_is_null_where_the_background_cannot_resolve_it():
    background = np.arange(1000, dtype=float)  # 1000 events: FPR 1e-3 resolvable (1 event), 1e-4 not
    signal = np.array([998.5, 999.5, 990.5, 100.0])
    result = tpr_at_fpr(background, signal, fprs=(1e-1, 1e-3, 1e-4))
    # FPR 1e-1: 100 background events above the threshold 899 → signals above: 998.5, 999.5, 990.5.
    assert result["1e-01"] == pytest.approx(0.75)
    # FPR 1e-3: exactly one background event (999) above the threshold 998 → 998.5 and 999.5 pass.
    assert result["1e-03"] == pytest.approx(0.5)
    assert result["1e-04"] is None
