"""The Top Quark Tagging reference dataset (Zenodo record 2603256), read as the jetnet package reads it.

jetnet itself cannot be installed next to TensorFlow 2.21 (its dependency chain pins numpy<2), so this
module reads the same published files and computes the same quantities: constituents (E, px, py, pz)
→ (Δη, Δφ, pT/pT_jet) → pT images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hepad_cli.data.dataset import Dataset, DatasetContent
from hepad_cli.data.download import fetch_file
from hepad_cli.data.jets import ImageSettings, read_jet_images
from hepad_cli.data.toptagging_format import count_jets
from hepad_cli.errors import DataError
from hepad_cli.validation import check_bool, check_int

log = logging.getLogger(__name__)


class TopTaggingJets(Dataset):
    """Background = QCD jets (is_signal_new = 0), split train/val/test; signal "top" = test only."""

    representation = "image"
    background_name = "qcd"

    def __init__(
        self,
        *,
        data_dir: str,
        file: str,
        url: str,
        checksum: str | None,
        download: bool,
        max_jets: int | None,
        image: dict,
        tau32: bool,
        split: dict,
        seed: int,
        scaling: str | None,
        invert: bool,
        invert_signal: str | None,
        chunk_size: int,
    ) -> None:
        super().__init__(split=split, seed=seed, scaling=scaling, invert=invert, invert_signal=invert_signal)
        self.data_dir = data_dir
        self.file = file
        self.url = url
        self.checksum = checksum
        self.download = download
        self.max_jets = check_int("data.max_jets", max_jets, allow_none=True, error=DataError)
        self.image = ImageSettings(**image)
        self.with_tau32 = check_bool("data.tau32", tau32, error=DataError)
        self.chunk_size = check_int("data.chunk_size", chunk_size, error=DataError)

    def read(self) -> DatasetContent:
        location = Path(self.data_dir).expanduser().resolve()
        # data.data_dir may name the directory holding the file or, as users often type it, the file.
        path = location if location.is_file() else location / self.file
        log.info("Top Quark Tagging file: %s", path)
        fetched = fetch_file(self.url, path, self.checksum, allow_download=self.download)
        rows = self.subsample_rows(count_jets(path), self.max_jets)
        jets = read_jet_images(
            path, self.image, rows=rows, chunk_size=self.chunk_size, with_tau32=self.with_tau32
        )
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
        return DatasetContent(
            background.as_sample(), {"top": top.as_sample()}, provenance, findings=jets.findings
        )
