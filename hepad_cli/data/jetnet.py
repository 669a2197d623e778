"""The Top Quark Tagging reference dataset (Zenodo record 2603256), read as the jetnet package reads it.

jetnet itself cannot be installed next to TensorFlow 2.21 (its dependency chain pins numpy<2), so this
module reads the same published files and computes the same quantities: constituents (E, px, py, pz)
→ (Δη, Δφ, pT/pT_jet) → pT images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hepad_cli.data.download import fetch_file
from hepad_cli.data.jets import ImageSettings, read_jet_images, samples_from_jet_images
from hepad_cli.data.samples import DataError, Samples
from hepad_cli.data.toptagging_format import count_jets

log = logging.getLogger(__name__)


class TopTaggingJets:
    """Background = QCD jets (is_signal_new = 0), split train/val/test; signal "top" = test only."""

    def __init__(
        self,
        data_dir: str,
        file: str = "val.h5",
        url: str = "https://zenodo.org/records/2603256/files/val.h5?download=1",
        checksum: str | None = "zenodo",
        download: bool = True,
        max_jets: int | None = None,
        image: dict | None = None,
        split: dict | None = None,
        seed: int = 0,
        chunk_size: int = 10_000,
    ) -> None:
        self.data_dir = data_dir
        self.file = file
        self.url = url
        self.checksum = checksum
        self.download = download
        self.max_jets = max_jets
        self.image = ImageSettings(**(image or {}))
        self.split = split or {"train": 0.6, "val": 0.2, "test": 0.2}
        self.seed = seed
        self.chunk_size = chunk_size
        if max_jets is not None and (
            isinstance(max_jets, bool) or not isinstance(max_jets, int) or max_jets <= 0
        ):
            raise DataError(f"data.max_jets must be a positive integer or null, got {max_jets!r}")

    def load(self) -> Samples:
        location = Path(self.data_dir).expanduser().resolve()
        # data.data_dir may name the directory holding the file or, as users often type it, the file.
        path = location if location.is_file() else location / self.file
        log.info("Top Quark Tagging file: %s", path)
        fetched = fetch_file(self.url, path, self.checksum, allow_download=self.download)
        n_jets = count_jets(path)
        rows = None
        if self.max_jets is not None and self.max_jets < n_jets:
            rows = np.sort(np.random.default_rng(self.seed).choice(n_jets, self.max_jets, replace=False))
        jets = read_jet_images(path, self.image, rows=rows, chunk_size=self.chunk_size)
        background = jets.select(np.flatnonzero(jets.is_signal == 0))
        top = jets.select(np.flatnonzero(jets.is_signal == 1))
        log.info("read %d QCD and %d top jets from %s", len(background.images), len(top.images), path.name)
        provenance = [
            {
                "path": str(path),
                "md5": fetched.md5,
                "verified": fetched.verified,
                "expected_checksum": fetched.expected,
                "rows_read": int(len(jets.images)),
            }
        ]
        return samples_from_jet_images(background, {"top": top}, self.split, self.seed, provenance)
