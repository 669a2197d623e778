"""A Top Quark Tagging-layout file of random jets, as large as the published train.h5, for figure 2.

The physics does not matter here, the layout and the sizes do: 200 constituent slots per jet, 20-120 of
them filled with particles around a jet axis, pT-ordered, written by pandas (``to_hdf`` table format) in
chunks, exactly like the published files. Generated once and reused (the name holds the size and seed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hepad_cli.data.toptagging_format import MAX_CONSTITUENTS, TTV_CODES, count_jets, write_toptagging_h5

TRAIN_JETS = 1_211_000  # rows of the published train.h5


def random_jets(n_jets: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(constituents (n, 200, 4) as (E, px, py, pz) in GeV, is_signal (n,)): collimated sprays, padded."""
    multiplicity = rng.integers(20, 121, n_jets)
    slot = np.arange(MAX_CONSTITUENTS)
    real = slot[None, :] < multiplicity[:, None]
    pt = np.sort(rng.exponential(1.0, (n_jets, MAX_CONSTITUENTS)), axis=1)[:, ::-1]
    pt = pt * (600.0 / np.where(real, pt, 0.0).sum(axis=1, keepdims=True))
    eta = rng.uniform(-2, 2, (n_jets, 1)) + rng.normal(0, 0.25, (n_jets, MAX_CONSTITUENTS))
    phi = rng.uniform(-np.pi, np.pi, (n_jets, 1)) + rng.normal(0, 0.25, (n_jets, MAX_CONSTITUENTS))
    constituents = np.stack(
        [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1
    )
    constituents[~real] = 0.0
    return constituents, rng.integers(0, 2, n_jets)


def ensure_random_file(
    directory: str | os.PathLike, n_jets: int = TRAIN_JETS, seed: int = 0, chunk: int = 25_000
) -> Path:
    """Path of the random file with n_jets rows under directory, writing it (in chunks) if missing."""
    path = Path(directory) / f"random_toptagging_{n_jets}_{seed}.h5"
    if path.exists() and count_jets(path) == n_jets:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.h5")
    partial.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    for start in range(0, n_jets, chunk):
        constituents, is_signal = random_jets(min(chunk, n_jets - start), rng)
        write_toptagging_h5(partial, constituents, is_signal, ttv=TTV_CODES["train"], append=True)
    partial.rename(path)
    return path


if __name__ == "__main__":
    import sys

    print(ensure_random_file(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else TRAIN_JETS))
