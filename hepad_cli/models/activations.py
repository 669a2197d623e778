"""The one table of activations: the names a model config may use, and their NumPy forms.

Keras layers take these names directly; NumPy scorers (the exported dense scorer, the fuzzy AND's
per-channel networks) use the in-place functions, which take and return a float array.
"""

from __future__ import annotations

import numpy as np

from hepad_cli.validation import check_choice


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    negative = x < 0
    x[negative] = alpha * np.expm1(x[negative])
    return x


def _selu(x: np.ndarray) -> np.ndarray:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return np.multiply(_elu(x, alpha), scale, out=x)


def _leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    return np.maximum(x, slope * x, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Written with tanh: no overflow warnings for large |x|, the same value as 1 / (1 + e^-x).
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.multiply(x, 0.5, out=x)
    return np.add(x, 0.5, out=x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x, 0.0, out=x)


def _swish(x: np.ndarray) -> np.ndarray:
    return np.multiply(x, _sigmoid(x.copy()), out=x)


def _gelu(x: np.ndarray) -> np.ndarray:
    # Keras' default gelu is the exact form 0.5·x·(1 + erf(x/√2)).
    from scipy.special import erf

    return np.multiply(x, 0.5 * (1.0 + erf(x / np.sqrt(2.0))), out=x)


#: In-place activations by Keras name; each takes and returns a float32 array.
ACTIVATIONS = {
    "linear": None,
    "relu": lambda x: np.maximum(x, 0, out=x),
    "elu": _elu,
    "selu": _selu,
    "tanh": lambda x: np.tanh(x, out=x),
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "swish": _swish,
    "silu": _swish,
    "gelu": _gelu,
    "leaky_relu": lambda x: _leaky_relu(x, 0.2),  # Keras' default negative slope
}


def numpy_activation(name: str):
    if name.startswith("leaky_relu:"):
        slope = float(name.split(":", 1)[1])
        return lambda x: _leaky_relu(x, slope)
    if name.startswith("elu:"):
        alpha = float(name.split(":", 1)[1])
        return lambda x: _elu(x, alpha)
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def check_activation(key: str, value: object) -> str:
    """A config key naming one of the activations above."""
    return str(check_choice(key, value, ACTIVATIONS))
