"""The scikit-learn alternatives of the trigger notebook behind the Detector interface.

Events of any shape are flattened. Scores are oriented so that higher = more anomalous:

- ``IsolationForestDetector``: −``score_samples`` (= 2^(−E[path length]/c(ψ)), in (0, 1]);
- ``OneClassSVMDetector``: −``decision_function`` (signed distance, inliers negative after the flip); the
  training set is subsampled to ``max_train_events`` (seeded) because the fit scales quadratically;
- ``GaussianMixtureDetector``: −log p(x), the negative log-likelihood under the fitted mixture.

Saving never pickles: each fitted model is written as plain arrays (``.npz``, loaded with
``allow_pickle=False``) and a ``params.json``. IsolationForest and OneClassSVM are scored from those arrays
by numpy code written here (the same numbers as scikit-learn, checked by the tests), so a saved model
needs no scikit-learn internals to be loaded; a GaussianMixture is rebuilt from its documented fitted
attributes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path
from hepad_cli.models.base import Detector, flatten

log = logging.getLogger(__name__)

SCORE_CHUNK = 4096  # events per chunk when scoring: bounds the (events × trees) arrays
KERNEL_BLOCK = 4_000_000  # entries of one (events × support vectors) kernel block


def _positive_int(name: str, value: object, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(
            f"model.{name} must be a positive integer{' or null' if allow_none else ''}, got {value!r}"
        )


def _fraction_or_count(name: str, value: object, allow_auto: bool = False) -> None:
    """A float in (0, 1], a positive integer, or 'auto'."""
    if allow_auto and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"model.{name} must be a number{' or auto' if allow_auto else ''}, got {value!r}")
    if isinstance(value, int) and value <= 0 or isinstance(value, float) and not 0 < value <= 1:
        raise ConfigError(f"model.{name} must be a positive integer or a fraction in (0, 1], got {value!r}")


def _save_arrays(directory: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(directory / name, suffix=".partial.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _load_arrays(directory: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(Path(directory) / name, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def _check_features(detector: Detector, x: np.ndarray) -> np.ndarray:
    flat = flatten(x)
    if flat.shape[1] != detector.n_features_:
        raise ConfigError(
            f"{type(detector).__name__} was fitted on {detector.n_features_} features per event, "
            f"got events with {flat.shape[1]}"
        )
    return flat


# --- Isolation Forest --------------------------------------------------------------------------------


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): average path length of an unsuccessful search in a binary search tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(Detector):
    """scikit-learn's IsolationForest; score = −score_samples, computed from the stored trees."""

    score_name = "isolation_forest_score"

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
        _positive_int("n_estimators", n_estimators)
        _fraction_or_count("max_samples", max_samples, allow_auto=True)
        _fraction_or_count("max_features", max_features)

    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> IsolationForestDetector:
        from sklearn.ensemble import IsolationForest

        flat = flatten(x_train)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.seed,
        ).fit(flat)
        self.n_features_ = flat.shape[1]
        subsampled = forest._max_features != flat.shape[1]
        lefts, rights, features, thresholds, values, roots = [], [], [], [], [], []
        offset = 0
        for tree, columns in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            is_leaf = t.children_left == -1
            # sklearn: a leaf contributes depth (root = 0) + c(samples in the leaf).
            depth = t.compute_node_depths().astype(np.float64) - 1.0
            values.append(np.where(is_leaf, depth + _average_path_length(t.n_node_samples), 0.0))
            local = np.where(is_leaf, 0, t.feature)
            features.append(np.asarray(columns)[local] if subsampled else local)
            thresholds.append(t.threshold.astype(np.float64))
            lefts.append(np.where(is_leaf, -1, t.children_left + offset))
            rights.append(np.where(is_leaf, -1, t.children_right + offset))
            roots.append(offset)
            offset += t.node_count
        self.children_left_ = np.concatenate(lefts).astype(np.int64)
        self.children_right_ = np.concatenate(rights).astype(np.int64)
        self.feature_ = np.concatenate(features).astype(np.int64)
        self.threshold_ = np.concatenate(thresholds)
        self.leaf_value_ = np.concatenate(values)
        self.roots_ = np.array(roots, dtype=np.int64)
        self.max_samples_ = int(forest._max_samples)
        self.max_depth_ = int(max(tree.tree_.max_depth for tree in forest.estimators_))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        flat = _check_features(self, x)
        # Trees compare float32 inputs with float64 thresholds, as scikit-learn's trees do.
        flat = np.asarray(flat, dtype=np.float32)
        denominator = len(self.roots_) * float(_average_path_length(np.array([self.max_samples_]))[0])
        scores = np.empty(len(flat))
        for start in range(0, len(flat), SCORE_CHUNK):
            chunk = flat[start : start + SCORE_CHUNK]
            rows = np.arange(len(chunk))[:, None]
            node = np.broadcast_to(self.roots_, (len(chunk), len(self.roots_))).copy()
            for _ in range(self.max_depth_ + 1):
                left = self.children_left_[node]
                inner = left >= 0
                if not inner.any():
                    break
                go_left = chunk[rows, self.feature_[node]] <= self.threshold_[node]
                node = np.where(inner, np.where(go_left, left, self.children_right_[node]), node)
            depth = self.leaf_value_[node].sum(axis=1)
            scores[start : start + len(chunk)] = (
                2.0 ** -(depth / denominator) if denominator > 0 else np.ones(len(chunk))
            )
        return scores

    _ARRAYS = ("children_left_", "children_right_", "feature_", "threshold_", "leaf_value_", "roots_")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        arrays = {name.rstrip("_"): getattr(self, name) for name in self._ARRAYS}
        arrays |= {
            "max_samples": np.array(self.max_samples_),
            "max_depth": np.array(self.max_depth_),
            "n_features": np.array(self.n_features_),
        }
        _save_arrays(directory, "isolation_forest.npz", arrays)

    @classmethod
    def load(cls, directory: str | Path) -> IsolationForestDetector:
        detector = cls(**cls._read_params(Path(directory)))
        arrays = _load_arrays(Path(directory), "isolation_forest.npz")
        for name in cls._ARRAYS:
            setattr(detector, name, arrays[name.rstrip("_")])
        detector.max_samples_ = int(arrays["max_samples"])
        detector.max_depth_ = int(arrays["max_depth"])
        detector.n_features_ = int(arrays["n_features"])
        return detector


# --- One-class SVM -----------------------------------------------------------------------------------

KERNELS = ("rbf", "linear", "poly", "sigmoid")


class OneClassSVMDetector(Detector):
    """scikit-learn's OneClassSVM fitted on at most ``max_train_events`` background events (seeded choice);
    score = −decision_function, computed from the support vectors and dual coefficients."""

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
        if kernel not in KERNELS:
            raise ConfigError(f"model.kernel must be one of {list(KERNELS)}, got {kernel!r}")
        if isinstance(nu, bool) or not isinstance(nu, int | float) or not 0 < nu <= 1:
            raise ConfigError(f"model.nu must be a fraction in (0, 1], got {nu!r}")
        if gamma not in ("scale", "auto") and (
            isinstance(gamma, bool) or not isinstance(gamma, int | float) or not gamma > 0
        ):
            raise ConfigError(f"model.gamma must be 'scale', 'auto' or a positive number, got {gamma!r}")
        _positive_int("degree", degree)
        _positive_int("max_train_events", max_train_events, allow_none=True)

    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> OneClassSVMDetector:
        from sklearn.svm import OneClassSVM

        flat = flatten(x_train).astype(np.float64)
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
        svm = OneClassSVM(
            kernel=self.kernel, nu=self.nu, gamma=self.gamma, degree=self.degree, coef0=self.coef0
        ).fit(flat)
        self.n_features_ = flat.shape[1]
        self.support_vectors_ = np.asarray(svm.support_vectors_, dtype=np.float64)
        self.dual_coef_ = np.asarray(svm.dual_coef_, dtype=np.float64).ravel()
        self.intercept_ = float(np.asarray(svm.intercept_).ravel()[0])
        self.gamma_ = float(svm._gamma)
        return self

    def _kernel(self, flat: np.ndarray) -> np.ndarray:
        dot = flat @ self.support_vectors_.T
        if self.kernel == "linear":
            return dot
        if self.kernel == "poly":
            return (self.gamma_ * dot + self.coef0) ** self.degree
        if self.kernel == "sigmoid":
            return np.tanh(self.gamma_ * dot + self.coef0)
        squared = (flat**2).sum(1)[:, None] + (self.support_vectors_**2).sum(1)[None, :] - 2.0 * dot
        return np.exp(-self.gamma_ * np.maximum(squared, 0.0))

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's OneClassSVM.decision_function: positive for inliers."""
        flat = _check_features(self, x).astype(np.float64)
        out = np.empty(len(flat))
        # Kernel blocks of at most ~4M entries (32 MB each): thousands of support vectors stay cheap.
        rows = int(np.clip(KERNEL_BLOCK // max(len(self.support_vectors_), 1), 1, SCORE_CHUNK))
        for start in range(0, len(flat), rows):
            chunk = flat[start : start + rows]
            out[start : start + len(chunk)] = self._kernel(chunk) @ self.dual_coef_ + self.intercept_
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.decision_function(x)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        _save_arrays(
            directory,
            "one_class_svm.npz",
            {
                "support_vectors": self.support_vectors_,
                "dual_coef": self.dual_coef_,
                "intercept": np.array(self.intercept_),
                "gamma": np.array(self.gamma_),
                "n_features": np.array(self.n_features_),
                "n_train_events": np.array(self.n_train_events_),
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> OneClassSVMDetector:
        detector = cls(**cls._read_params(Path(directory)))
        arrays = _load_arrays(Path(directory), "one_class_svm.npz")
        detector.support_vectors_ = arrays["support_vectors"]
        detector.dual_coef_ = arrays["dual_coef"]
        detector.intercept_ = float(arrays["intercept"])
        detector.gamma_ = float(arrays["gamma"])
        detector.n_features_ = int(arrays["n_features"])
        detector.n_train_events_ = int(arrays["n_train_events"])
        return detector


# --- Gaussian mixture --------------------------------------------------------------------------------

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GaussianMixtureDetector(Detector):
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
        _positive_int("n_components", n_components)
        _positive_int("max_iter", max_iter)
        _positive_int("n_init", n_init)
        if covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(
                f"model.covariance_type must be one of {list(COVARIANCE_TYPES)}, got {covariance_type!r}"
            )
        if isinstance(reg_covar, bool) or not isinstance(reg_covar, int | float) or reg_covar < 0:
            raise ConfigError(f"model.reg_covar must be a non-negative number, got {reg_covar!r}")

    def fit(self, x_train: np.ndarray, x_val: np.ndarray | None = None) -> GaussianMixtureDetector:
        from sklearn.mixture import GaussianMixture

        flat = flatten(x_train).astype(np.float64)
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
        flat = _check_features(self, x).astype(np.float64)
        return -self.model_.score_samples(flat)

    _FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self._save_params(directory)
        arrays = {name.rstrip("_"): np.asarray(getattr(self.model_, name)) for name in self._FITTED}
        arrays |= {
            "converged": np.array(bool(self.model_.converged_)),
            "n_iter": np.array(self.model_.n_iter_),
            "lower_bound": np.array(self.model_.lower_bound_),
            "n_features": np.array(self.n_features_),
        }
        _save_arrays(directory, "gaussian_mixture.npz", arrays)

    @classmethod
    def load(cls, directory: str | Path) -> GaussianMixtureDetector:
        from sklearn.mixture import GaussianMixture

        detector = cls(**cls._read_params(Path(directory)))
        arrays = _load_arrays(Path(directory), "gaussian_mixture.npz")
        model = GaussianMixture(
            n_components=detector.n_components,
            covariance_type=detector.covariance_type,
            reg_covar=detector.reg_covar,
            max_iter=detector.max_iter,
            n_init=detector.n_init,
            random_state=detector.seed,
        )
        for name in cls._FITTED:
            setattr(model, name, arrays[name.rstrip("_")])
        model.converged_ = bool(arrays["converged"])
        model.n_iter_ = int(arrays["n_iter"])
        model.lower_bound_ = float(arrays["lower_bound"])
        model.n_features_in_ = int(arrays["n_features"])
        detector.model_ = model
        detector.n_features_ = int(arrays["n_features"])
        return detector
