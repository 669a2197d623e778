"""Top Quark Tagging-layout files → jet images and per-jet observables, streamed chunk by chunk."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hepad_cli.data.images import jet_kinematics, pixelate
from hepad_cli.data.samples import DataError
from hepad_cli.data.toptagging_format import count_jets, iter_chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSettings:
    """size: pixels per side; radius: half-width of the image in Δη and Δφ; normalise: sum to one."""

    size: int = 16
    radius: float = 0.8
    normalise: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0:
            raise DataError(f"data.image.size must be a positive integer, got {self.size!r} (e.g. 16)")
        if not isinstance(self.radius, int | float) or not self.radius > 0:
            raise DataError(f"data.image.radius must be a positive number, got {self.radius!r} (e.g. 0.8)")


@dataclass
class JetImages:
    """images: (n_jets, size, size, 1) float32; is_signal: (n_jets,); mass, pt: (n_jets,) in GeV."""

    images: np.ndarray
    is_signal: np.ndarray
    mass: np.ndarray
    pt: np.ndarray

    def select(self, index: np.ndarray) -> JetImages:
        return JetImages(self.images[index], self.is_signal[index], self.mass[index], self.pt[index])

    def observables(self) -> dict[str, np.ndarray]:
        return {"mass": self.mass, "pt": self.pt}


def read_jet_images(
    path: str | os.PathLike,
    image: ImageSettings,
    rows: np.ndarray | None = None,
    chunk_size: int = 10_000,
    description: str | None = None,
) -> JetImages:
    """Read the selected rows (all when None) and turn each chunk into images before the next is read."""
    total = count_jets(path) if rows is None else len(rows)
    images, labels, masses, pts = [], [], [], []
    with tqdm(
        total=total, desc=description or f"reading {os.path.basename(path)}", unit="jet", leave=False
    ) as bar:
        for chunk in iter_chunks(path, rows=rows, chunk_size=chunk_size):
            if not np.isfinite(chunk.constituents).all():
                raise DataError(
                    f"{path}: rows {chunk.rows[0]}..{chunk.rows[-1]} hold NaN or infinite momenta"
                )
            kinematics = jet_kinematics(chunk.constituents)
            images.append(pixelate(kinematics, image.size, image.radius, image.normalise)[..., None])
            labels.append(chunk.is_signal)
            masses.append(kinematics.mass.astype(np.float32))
            pts.append(kinematics.pt.astype(np.float32))
            bar.update(len(chunk.rows))
    if not images:
        raise DataError(f"{path} holds no jets")
    return JetImages(
        np.concatenate(images), np.concatenate(labels), np.concatenate(masses), np.concatenate(pts)
    )


def samples_from_jet_images(
    background: JetImages,
    signals: dict[str, JetImages],
    split: dict[str, float],
    seed: int,
    provenance: list[dict],
):
    """Seeded background split into train/val/test; every signal jet goes to the test side only."""
    from hepad_cli.data.samples import Samples, split_background

    parts = {
        name: background.select(rows)
        for name, rows in split_background(len(background.images), split, seed).items()
    }
    for name, jets in signals.items():
        if len(jets.images) == 0:
            raise DataError(f"signal '{name}' is empty: no jets to score")
    return Samples(
        background_train=parts["train"].images,
        background_val=parts["val"].images,
        background_test=parts["test"].images,
        signals={name: jets.images for name, jets in signals.items()},
        observables={"background": parts["test"].observables()}
        | {name: jets.observables() for name, jets in signals.items()},
        provenance=provenance,
        representation="image",
    )
