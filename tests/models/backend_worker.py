"""Runs in a subprocess with KERAS_BACKEND set: fits, saves, reloads and scores every Keras detector.

    python -m tests.models.backend_worker OUT_DIR [SAVED_BY_ANOTHER_BACKEND_DIR] [--devices 2]

Writes OUT_DIR/result.json: per detector, the scores before saving, after loading, from a second fit with
the same seed, and (with a second directory) the scores of the models another backend saved there.
With ``--devices 2`` it trains with trainer.distribute=data_parallel over two virtual CPU devices.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TRAINER = {"epochs": 2, "batch_size": 32, "progress_bar": False, "early_stopping_patience": 0}


def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(256, 10)).astype(np.float32)
    images = rng.dirichlet(np.full(64, 0.3), 160).astype(np.float32).reshape(160, 8, 8, 1)
    labels = (rng.random(256) > 0.25).astype(np.float32)
    return {"features": features, "images": images, "labels": labels}


def detectors(trainer: dict) -> dict:
    from hepad_cli.models.conv_ae import ConvAutoencoder
    from hepad_cli.models.dense_ae import DenseAutoencoder
    from hepad_cli.models.fuzzy_and import FuzzyAndDetector
    from hepad_cli.models.vae import VariationalAutoencoder

    return {
        "conv_ae": ConvAutoencoder(latent_dim=2, filters=4, trainer=trainer, seed=3),
        "dense_ae": DenseAutoencoder(latent_dim=3, encoder_hidden=[6], trainer=trainer, seed=3),
        "vae": VariationalAutoencoder(latent_dim=2, hidden=[6], trainer=trainer, seed=3),
        "fuzzy_and": FuzzyAndDetector(hidden=[4], dropout=0.1, mc_passes=2, trainer=trainer, seed=3),
    }


def fit(name: str, detector, arrays: dict) -> np.ndarray:
    """Fit on the first rows, return the primary scores of every row (float64)."""
    from hepad_cli.data.samples import TrainingSet

    if name == "conv_ae":
        x = arrays["images"]
        detector.fit(x[:128], x[128:])
    elif name == "fuzzy_and":
        x, y = arrays["features"], arrays["labels"]
        groups = {"first": [0, 1, 2, 3], "rest": list(range(4, 10))}
        detector.fit(TrainingSet(x[:200], y[:200], None, groups), TrainingSet(x[200:], y[200:], None, groups))
    else:
        x = arrays["features"]
        detector.fit(x[:200], x[200:])
    return detector.score(x)


def inputs(name: str, arrays: dict) -> np.ndarray:
    return arrays["images"] if name == "conv_ae" else arrays["features"]


def main(argv: list[str]) -> int:
    devices = 2 if "--devices" in argv else 1
    argv = [a for a in argv if a not in ("--devices", "2")]
    out_dir = Path(argv[0])
    import keras

    if devices == 2 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    trainer = {**TRAINER, **({"distribute": "data_parallel"} if devices == 2 else {})}
    arrays = data()
    result = {"backend": keras.backend.backend(), "detectors": {}}
    for name, detector in detectors(trainer).items():
        scores = fit(name, detector, arrays)
        model_dir = out_dir / name
        detector.save(model_dir)
        loaded = type(detector).load(model_dir).score(inputs(name, arrays))
        again = fit(name, detectors(trainer)[name], arrays)
        result["detectors"][name] = {
            "scores": scores.tolist(),
            "after_load": loaded.tolist(),
            "same_seed_again": again.tolist(),
            "history_keys": sorted(detector.history_),
            "compute": detector.compute_,
        }
        if len(argv) > 1:
            other = Path(argv[1]) / name
            result["detectors"][name]["loaded_from_other_backend"] = (
                type(detector).load(other).score(inputs(name, arrays)).tolist()
            )
    (out_dir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
