"""The embedded default: QCD, top, W and Z jets generated here with Pythia 8 + FastJet.

Files are written in the Top Quark Tagging layout and cached under the data directory, keyed by the
generation settings, so the reader and the image code are the ones used for the reference dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hepad_cli.data.download import file_md5
from hepad_cli.data.generation import GenerationSettings, ensure_sample
from hepad_cli.data.jets import ImageSettings, read_jet_images, samples_from_jet_images
from hepad_cli.data.samples import DataError, Samples

log = logging.getLogger(__name__)

SIGNAL_PROCESSES = ("top", "w", "z")


class PythiaJets:
    """Background: QCD dijets; signals: any of top, w, z. Jet window and sizes from the config."""

    def __init__(
        self,
        data_dir: str,
        n_background: int = 6000,
        n_signal: int = 1500,
        signals: list[str] | tuple[str, ...] = SIGNAL_PROCESSES,
        generation_seed: int = 1,
        n_workers: int | None = None,
        jet_pt_min: float = 550.0,
        jet_pt_max: float = 650.0,
        jet_eta_max: float = 2.0,
        jet_radius: float = 0.8,
        max_constituents: int = 200,
        image: dict | None = None,
        split: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.n_background = n_background
        self.n_signal = n_signal
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
        self.image = ImageSettings(**(image or {}))
        self.split = split or {"train": 0.6, "val": 0.2, "test": 0.2}
        self.seed = seed
        unknown = sorted(set(self.signals) - set(SIGNAL_PROCESSES))
        if unknown or not self.signals:
            raise DataError(
                f"data.signals must be a non-empty subset of {list(SIGNAL_PROCESSES)}, got {signals}"
            )
        self.settings = {"qcd": self._settings("qcd", n_background, 0)} | {
            name: self._settings(name, n_signal, i + 1) for i, name in enumerate(self.signals)
        }

    def _settings(self, process: str, n_jets: int, offset: int) -> GenerationSettings:
        try:
            # Each process gets its own seed so the samples are independent.
            return GenerationSettings(
                process=process, n_jets=n_jets, seed=self.generation_seed * 10 + offset, **self.jet
            )
        except ValueError as error:
            raise DataError(f"data: {error}") from error

    def load(self) -> Samples:
        data_dir = Path(self.data_dir).expanduser().resolve()
        log.info("Pythia jet cache: %s", data_dir / "pythia")
        jets, provenance = {}, []
        for process, settings in self.settings.items():
            path = ensure_sample(settings, data_dir, n_workers=self.n_workers)
            jets[process] = read_jet_images(path, self.image, description=f"imaging {process} jets")
            provenance.append(
                {
                    "path": str(path),
                    "md5": file_md5(path),
                    "verified": True,
                    "generated": True,
                    "process": process,
                }
            )
        background = jets.pop("qcd")
        return samples_from_jet_images(background, jets, self.split, self.seed, provenance)
