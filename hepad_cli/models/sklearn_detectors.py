"""The scikit-learn alternatives of the trigger notebook behind the Detector interface.

Events of any shape are flattened. Scores are oriented so that higher = more anomalous:

- ``IsolationForestDetector``: −``score_samples`` (= 2^(−E[path length]/c(ψ)), in (0, 1]);
- ``OneClassSVMDetector``: −``decision_function`` (signed distance, inliers negative after the flip); the
  training set is subsampled to ``max_train_events`` (seeded) because the fit scales quadratically;
- ``GaussianMixtureDetector``: −log p(x), the negative log-likelihood under the fitted mixture.

Saving never pickles: the fitted estimator is written with ``skops.io`` (a zip of JSON and NumPy arrays)
and loaded back with an explicit list of trusted types: anything else in the file is refused. Only
scikit-learn's public API is used, so a saved model scores exactly as the fitted one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np

from hepad_cli.errors import ConfigError, DataError
from hepad_cli.io import atomic_path
from hepad_cli.models.base import Detector, flatten, unlabelled
from hepad_cli.validation import check_choice, check_int, check_number, is_number

log = logging.getLogger(__name__)

MODEL_FILE = "estimator.skops"


class SklearnDetector(Detector):
    """A fitted scikit-learn estimator ``model_`` on flattened events, saved with skops."""

    #: Types beyond skops' defaults that a saved estimator of this class may hold (nothing else loads).
    trusted_types: ClassVar[tuple[str, ...]] = ()

    def _check_features(self, x: np.ndarray) -> np.ndarray:
        flat = flatten(x)
        if flat.shape[1] != self.n_features_:
            raise DataError(
                f"{type(self).__name__} was fitted on {self.n_features_} features per event, "
                f"got events with {flat.shape[1]}"
            )
        return flat

    def save(self, directory: str | Path) -> None:
        import skops.io

        directory = Path(directory)
        self._save_params(directory)
        with atomic_path(directory / MODEL_FILE, suffix=".partial.skops") as tmp:
            skops.io.dump(self.model_, tmp)

    @classmethod
    def load(cls, directory: str | Path) -> SklearnDetector:
        import skops.io

        directory = Path(directory)
        detector = cls(**cls._read_params(directory))
        path = directory / MODEL_FILE
        untrusted = set(skops.io.get_untrusted_types(file=path)) - set(cls.trusted_types)
        if untrusted:
            raise DataError(
                f"{path} holds types this detector never saves ({sorted(untrusted)}); refusing to load it"
            )
        detector.model_ = skops.io.load(path, trusted=list(cls.trusted_types))
        detector.n_features_ = int(detector.model_.n_features_in_)
        return detector


class IsolationForestDetector(SklearnDetector):
    """scikit-learn's IsolationForest; score = −score_samples."""

    score_name = "isolation_forest_score"
    trusted_types = ("sklearn.tree._tree.Tree",)

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_features: int | float = 1.0,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.seed = seed
        check_int("model.n_estimators", n_estimators)
        if max_samples != "auto":
            _check_fraction_or_count("model.max_samples", max_samples, "or auto")
        _check_fraction_or_count("model.max_features", max_features)

    def fit(self, train: np.ndarray, val: np.ndarray | None = None) -> IsolationForestDetector:
        from sklearn.ensemble import IsolationForest

        flat = flatten(unlabelled(train))
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.seed,
        ).fit(flat)
        self.n_features_ = flat.shape[1]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        # float32 inputs, as the trees were fitted on float32.
        return -self.model_.score_samples(np.asarray(self._check_features(x), dtype=np.float32))


def _check_fraction_or_count(key: str, value: object, also: str = "") -> None:
    """A positive integer, or a fraction in (0, 1]."""
    if (
        not is_number(value)
        or (isinstance(value, int) and value <= 0)
        or (not isinstance(value, int) and not 0 < value <= 1)
    ):
        raise ConfigError(
            f"{key} must be a positive integer or a fraction in (0, 1]{' ' + also if also else ''}, "
            f"got {value!r}"
        )


KERNELS = ("rbf", "linear", "poly", "sigmoid")


class OneClassSVMDetector(SklearnDetector):
    """scikit-learn's OneClassSVM fitted on at most ``max_train_events`` background events (seeded choice);
    score = −decision_function."""

    score_name = "one_class_svm_score"

    def __init__(
        self,
        kernel: str = "rbf",
        nu: float = 0.5,
        gamma: str | float = "scale",
        degree: int = 3,
        coef0: float = 0.0,
        max_train_events: int | None = 10_000,
        seed: int = 0,
    ) -> None:
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.max_train_events = max_train_events
        self.seed = seed
        check_choice("model.kernel", kernel, KERNELS)
        check_number("model.nu", nu, 0, 1, low_open=True)
        if gamma not in ("scale", "auto"):
            check_number("model.gamma", gamma, low=0, low_open=True, hint="or 'scale' or 'auto'")
        check_int("model.degree", degree)
        check_int("model.max_train_events", max_train_events, allow_none=True)

    def fit(self, train: np.ndarray, val: np.ndarray | None = None) -> OneClassSVMDetector:
        from sklearn.svm import OneClassSVM

        flat = flatten(unlabelled(train)).astype(np.float64)
        if self.max_train_events is not None and len(flat) > self.max_train_events:
            rows = np.sort(
                np.random.default_rng(self.seed).choice(len(flat), self.max_train_events, replace=False)
            )
            log.info(
                "one-class SVM: fitting on %d of %d background training events (model.max_train_events)",
                len(rows),
                len(flat),
            )
            flat = flat[rows]
        self.n_train_events_ = len(flat)
        self.model_ = OneClassSVM(
            kernel=self.kernel, nu=self.nu, gamma=self.gamma, degree=self.degree, coef0=self.coef0
        ).fit(flat)
        self.n_features_ = flat.shape[1]
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's OneClassSVM.decision_function: positive for inliers."""
        return self.model_.decision_function(self._check_features(x).astype(np.float64))

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.decision_function(x)


COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GaussianMixtureDetector(SklearnDetector):
    """scikit-learn's GaussianMixture; score = −log-likelihood of the event under the mixture."""

    score_name = "negative_log_likelihood"

    def __init__(
        self,
        n_components: int = 4,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 200,
        n_init: int = 1,
        seed: int = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.seed = seed
        check_int("model.n_components", n_components)
        check_int("model.max_iter", max_iter)
        check_int("model.n_init", n_init)
        check_choice("model.covariance_type", covariance_type, COVARIANCE_TYPES)
        check_number("model.reg_covar", reg_covar, low=0)

    def fit(self, train: np.ndarray, val: np.ndarray | None = None) -> GaussianMixtureDetector:
        from sklearn.mixture import GaussianMixture

        flat = flatten(unlabelled(train)).astype(np.float64)
        if self.n_components > len(flat):
            raise ConfigError(
                f"model.n_components={self.n_components} exceeds the {len(flat)} background training events"
            )
        self.model_ = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.seed,
        ).fit(flat)
        if not self.model_.converged_:
            log.warning("GaussianMixture did not converge in %d iterations (model.max_iter)", self.max_iter)
        self.n_features_ = flat.shape[1]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(self._check_features(x).astype(np.float64))
