"""Top Quark Tagging-layout files → jet images and per-jet observables, streamed chunk by chunk."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from hepad_cli.data.dataset import EventSample
from hepad_cli.data.images import check_preprocessing, images_into
from hepad_cli.data.substructure import tau32
from hepad_cli.data.toptagging_format import count_jets, iter_record_blocks
from hepad_cli.errors import DataError
from hepad_cli.validation import check_bool, check_int, check_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSettings:
    """size: pixels per side; radius: half-width of the image in Δη and Δφ; normalise: sum to one;
    preprocess: standard preprocessing steps (center, rotate, flip; hepad_cli.data.images)."""

    size: int
    radius: float
    normalise: bool
    preprocess: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_int("data.image.size", self.size, hint="e.g. 16", error=DataError)
        check_number("data.image.radius", self.radius, low=0, low_open=True, hint="e.g. 0.8", error=DataError)
        check_bool("data.image.normalise", self.normalise, error=DataError)
        steps = check_preprocessing(self.preprocess, key="data.image.preprocess", error=DataError)
        object.__setattr__(self, "preprocess", steps)


@dataclass
class JetImages:
    """images: (n_jets, size, size, 1) float32; is_signal: (n_jets,); mass, pt: (n_jets,) in GeV;
    tau32: (n_jets,) N-subjettiness ratio, or None where it was not computed."""

    images: np.ndarray
    is_signal: np.ndarray
    mass: np.ndarray
    pt: np.ndarray
    tau32: np.ndarray | None = None

    def select(self, index: np.ndarray) -> JetImages:
        return JetImages(
            self.images[index],
            self.is_signal[index],
            self.mass[index],
            self.pt[index],
            None if self.tau32 is None else self.tau32[index],
        )

    def as_sample(self) -> EventSample:
        """The images as detector inputs; jet mass and pT (GeV), and τ32 where computed, as observables."""
        observables = {"mass": self.mass, "pt": self.pt}
        if self.tau32 is not None:
            observables["tau32"] = self.tau32
        return EventSample(self.images, observables)


#: File rows per read of read_jet_images (3.3 MB: the block just read is still in the CPU cache), and how
#: many such reads a background thread runs ahead of the image code.
READ_WINDOW = 512
READ_AHEAD = 1


def _empty_without_hugepages(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """np.empty without NumPy's transparent-huge-page hint (madvise MADV_HUGEPAGE on arrays over 4 MB).

    Where the kernel compacts memory to find huge pages at fault time (THP ``defrag=madvise``, a common
    default), the hint makes the first touch of a large array several times slower: 2.5 s instead of
    0.5 s for the 1.24 GB of images of the 1.2M-jet train file, measured on the 2-core machines.
    """
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # pragma: no cover - other NumPy layouts: keep the default
        return np.empty(shape, dtype)
    previous = _set_madvise_hugepage(False)
    try:
        return np.empty(shape, dtype)
    finally:
        _set_madvise_hugepage(previous)


def _fault_in_while_compiling(array: np.ndarray) -> None:
    """Touch every page of a fresh array in a helper thread while this one loads the compiled image
    code, so the page faults (about 0.5 s for 1.2M images) overlap that wait instead of the reading."""
    import threading

    from hepad_cli.data.images import load_compiled

    flat = array.reshape(-1)
    toucher = threading.Thread(target=flat[:: 4096 // array.itemsize].fill, args=(0,), daemon=True)
    toucher.start()
    load_compiled()
    toucher.join()  # before any image is written: the zeros must not land on results


def read_jet_images(
    path: str | os.PathLike,
    image: ImageSettings,
    rows: np.ndarray | None = None,
    chunk_size: int = 10_000,
    description: str | None = None,
    with_tau32: bool = False,
) -> JetImages:
    """Read the selected rows (all when None) and turn each window into images before the next is read.

    Streams: a background thread reads windows of at most min(chunk_size, READ_WINDOW) file rows into a
    small ring of reused buffers while this thread turns the previous window into images, written
    straight into one preallocated array; memory is the images plus a few windows (about 10 MB).
    ``with_tau32``: also compute each jet's N-subjettiness ratio τ32 from its constituents.
    """
    total = count_jets(path) if rows is None else len(rows)
    if total == 0:
        raise DataError(f"{path} holds no jets")
    images = _empty_without_hugepages((total, image.size, image.size, 1), np.float32)
    _fault_in_while_compiling(images)
    labels = np.empty(total, np.int64)
    masses = np.empty(total, np.float32)
    pts = np.empty(total, np.float32)
    tau32s = np.empty(total, np.float32) if with_tau32 else None
    filled = 0
    with tqdm(
        total=total, desc=description or f"reading {os.path.basename(path)}", unit="jet", leave=False
    ) as bar:
        for block in iter_record_blocks(
            path, rows=rows, chunk_size=min(chunk_size, READ_WINDOW), prefetch=READ_AHEAD
        ):
            window = slice(filled, filled + len(block.rows))
            jet_pt, jet_mass, finite = images_into(
                block.constituents,
                images[window, :, :, 0],
                image.size,
                image.radius,
                image.normalise,
                image.preprocess,
            )
            if not finite.all():
                bad = block.rows[~finite]
                raise DataError(
                    f"{path}: {len(bad)} jets hold NaN or infinite momenta (first at row {bad[0]}); "
                    "the file is damaged: delete it and download or generate it again"
                )
            labels[window] = block.is_signal
            masses[window] = jet_mass
            pts[window] = jet_pt
            if tau32s is not None:
                tau32s[window] = tau32(block.constituents)
            filled = window.stop
            bar.update(len(block.rows))
    return JetImages(images, labels, masses, pts, tau32s)
