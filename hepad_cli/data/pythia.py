"""The embedded default: QCD, top, W and Z jets generated here with Pythia 8 + FastJet.

Files are written in the Top Quark Tagging layout and cached under the data directory, keyed by the
generation settings, so the reader and the image code are the ones used for the reference dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hepad_cli.data.dataset import Dataset, DatasetContent
from hepad_cli.data.download import file_md5, md5_sidecar, read_md5_sidecar
from hepad_cli.data.generation import GenerationSettings, ensure_sample
from hepad_cli.data.jets import ImageSettings, read_jet_images
from hepad_cli.errors import DataError
from hepad_cli.validation import check_bool, check_int

log = logging.getLogger(__name__)

SIGNAL_PROCESSES = ("top", "w", "z")


class PythiaJets(Dataset):
    """Background: QCD dijets; signals: any of top, w, z. Jet window and sizes from the config."""

    representation = "image"
    background_name = "qcd"

    def __init__(
        self,
        *,
        data_dir: str,
        n_background: int,
        n_signal: int,
        signals: list[str],
        generation_seed: int,
        n_workers: int | None,
        jet_pt_min: float,
        jet_pt_max: float,
        jet_eta_max: float,
        jet_radius: float,
        max_constituents: int,
        image: dict,
        tau32: bool,
        split: dict,
        seed: int,
        scaling: str | None,
        invert: bool,
        invert_signal: str | None,
    ) -> None:
        super().__init__(split=split, seed=seed, scaling=scaling, invert=invert, invert_signal=invert_signal)
        self.data_dir = data_dir
        self.n_background = check_int("data.n_background", n_background, hint="e.g. 6000", error=DataError)
        self.n_signal = check_int("data.n_signal", n_signal, hint="e.g. 1500", error=DataError)
        self.signals = list(signals)
        self.generation_seed = generation_seed
        self.n_workers = n_workers
        self.jet = dict(
            jet_pt_min=jet_pt_min,
            jet_pt_max=jet_pt_max,
            jet_eta_max=jet_eta_max,
            jet_radius=jet_radius,
            max_constituents=max_constituents,
        )
        self.image = ImageSettings(**image)
        self.with_tau32 = check_bool("data.tau32", tau32, error=DataError)
        unknown = sorted(set(self.signals) - set(SIGNAL_PROCESSES))
        if unknown or not self.signals:
            raise DataError(
                f"data.signals must be a non-empty subset of {list(SIGNAL_PROCESSES)}, got {signals}"
            )
        self.settings = {"qcd": self._settings("qcd", n_background, 0)} | {
            name: self._settings(name, n_signal, i + 1) for i, name in enumerate(self.signals)
        }
        # Before generating anything: the images of every jet must fit into memory.
        self.image.check_memory(sum(settings.n_jets for settings in self.settings.values()))

    def _settings(self, process: str, n_jets: int, offset: int) -> GenerationSettings:
        try:
            # Each process gets its own seed so the samples are independent.
            return GenerationSettings(
                process=process, n_jets=n_jets, seed=self.generation_seed * 10 + offset, **self.jet
            )
        except ValueError as error:
            raise DataError(f"data: {error}") from error

    def read(self) -> DatasetContent:
        data_dir = Path(self.data_dir).expanduser().resolve()
        log.info("Pythia jet cache: %s", data_dir / "pythia")
        jets, provenance, findings = {}, [], []
        for process, settings in self.settings.items():
            path = ensure_sample(settings, data_dir, n_workers=self.n_workers)
            jets[process] = read_jet_images(
                path, self.image, description=f"imaging {process} jets", with_tau32=self.with_tau32
            )
            findings += jets[process].findings
            md5 = file_md5(path)
            recorded = read_md5_sidecar(md5_sidecar(path))
            provenance.append(
                {
                    "path": str(path),
                    "md5": md5,
                    # ensure_sample checked it; hashed again after reading, so "verified" is of what was read.
                    "verified": recorded == f"md5:{md5}",
                    "expected_checksum": recorded,
                    "generated": True,
                    "process": process,
                }
            )
        background = jets.pop("qcd")
        return DatasetContent(
            background=background.as_sample(),
            signals={name: sample.as_sample() for name, sample in jets.items()},
            provenance=provenance,
            findings=findings,
        )
