"""The input signature of a trained detector: what its events looked like, saved beside the model.

``model/input_signature.json`` records the representation, the feature names in order (or the
constituent quantities and the particle count), the event shape, the image settings and the dataset's
whole config. hepad-score compares new inputs with it before reading any event: another representation,
image size or event shape is refused; features are matched by name, never by position.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hepad_cli.errors import DataError
from hepad_cli.io import atomic_write_json

log = logging.getLogger(__name__)

FILE = "input_signature.json"
FORMAT_VERSION = 1


def save_signature(directory: str | Path, signature: dict, event_shape: tuple[int, ...], data: dict) -> None:
    """input_signature.json: the dataset's signature, the event shape the detector saw, the data config."""
    atomic_write_json(
        Path(directory) / FILE,
        {
            "format_version": FORMAT_VERSION,
            "representation": signature.get("representation"),
            "features": signature.get("features"),
            "constituents": signature.get("constituents"),
            "max_particles": signature.get("max_particles"),
            "image": signature.get("image"),
            "event_shape": [int(v) for v in event_shape],
            "dataset": data.get("_target_"),
            "data": data,
        },
    )


def load_signature(directory: str | Path) -> dict:
    path = Path(directory) / FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: the run was made before hepad saved input signatures, so new inputs "
            "cannot be checked against it; train it again"
        ) from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is unreadable ({error})") from None


def match_features(trained: list[str] | None, given: list[str]) -> list[str]:
    """The given feature names in the trained order (matched by name); DataError for any difference."""
    if trained is None:
        raise DataError(
            "the run's detector was trained on features without recorded names, so new columns cannot be "
            "matched to its inputs by name; apply runs trained with data=files"
        )
    missing = [name for name in trained if name not in given]
    extra = [name for name in given if name not in trained]
    if missing or extra:
        raise DataError(
            f"data.features={given} does not match the features the detector was trained on, {trained}: "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"not trained on {extra}" if extra else "",
                )
                if part
            )
        )
    if given != trained:
        log.info("features matched by name to the trained order %s", trained)
    return list(trained)


def check_compatible(trained: dict, given: dict) -> None:
    """DataError naming the first difference between a trained signature and new inputs' one that would
    make the detector see something else than it was trained on (features are compared by name)."""
    if trained.get("representation") != given["representation"]:
        raise DataError(
            f"the detector was trained on representation={trained.get('representation')!r} events, "
            f"data.representation={given['representation']!r} was given: set data.representation="
            f"{trained.get('representation')}"
        )
    # Compared as JSON stores them (a tuple of the config reads back as a list).
    if given["representation"] == "image" and trained.get("image") != json.loads(json.dumps(given["image"])):
        raise DataError(
            f"the detector was trained on images with {trained.get('image')}, data.image={given['image']} "
            "was given: use the trained image settings"
        )
    if given["representation"] == "particles":
        for key in ("constituents", "max_particles"):
            if trained.get(key) != given[key]:
                raise DataError(
                    f"the detector was trained with {key}={trained.get(key)}, the inputs give {given[key]}: "
                    f"set data.{key} as in training"
                )
    if list(trained.get("event_shape") or []) != list(given["event_shape"]):
        raise DataError(
            f"the detector was trained on events of shape {tuple(trained.get('event_shape') or ())}, the "
            f"inputs make events of shape {tuple(given['event_shape'])}"
        )
