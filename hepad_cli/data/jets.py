"""Top Quark Tagging-layout files → jet images and per-jet observables, streamed chunk by chunk.

While reading, every jet is checked for what its numbers mean (``JetChecks``): labels exactly 0 or 1,
at least one constituent with pT > 0, at least one constituent inside the image, and no constituent with
E < |p|. The findings name the file rows; the dataset stops on them before any training.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from tqdm.auto import tqdm

from hepad_cli.data.dataset import EventSample, Finding
from hepad_cli.data.images import check_preprocessing, images_into
from hepad_cli.data.substructure import tau32
from hepad_cli.data.toptagging_format import count_jets, iter_record_blocks
from hepad_cli.errors import DataError
from hepad_cli.validation import check_bool, check_fits_in_memory, check_int, check_number

#: A constituent is unphysical when E < |p| by more than this fraction (float rounding of E = |p| for
#: massless particles is about 1e-7).
ENERGY_TOLERANCE = 1e-4
#: Copies of the images a run holds at its peak (the images read, then the background/signal split).
IMAGE_COPIES = 2

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
        # Δφ wraps at ±π: a wider image would show the same particle twice or nowhere.
        check_number(
            "data.image.radius",
            self.radius,
            low=0,
            high=math.pi,
            low_open=True,
            hint="e.g. 0.8",
            error=DataError,
        )
        check_bool("data.image.normalise", self.normalise, error=DataError)
        steps = check_preprocessing(self.preprocess, key="data.image.preprocess", error=DataError)
        object.__setattr__(self, "preprocess", steps)

    def check_memory(self, n_jets: int) -> None:
        """Refuse an image size whose images of ``n_jets`` jets would not fit into memory, before any work."""
        check_fits_in_memory(
            "data.image.size",
            self.size,
            IMAGE_COPIES * n_jets * self.size**2 * np.dtype(np.float32).itemsize,
            f"{n_jets} jet images of {self.size}x{self.size} pixels ({IMAGE_COPIES} copies while reading "
            "and splitting)",
            error=DataError,
        )


@dataclass
class JetImages:
    """images: (n_jets, size, size, 1) float32; is_signal: (n_jets,); mass, pt: (n_jets,) in GeV;
    tau32: (n_jets,) N-subjettiness ratio, or None where it was not computed; findings: what the checks of
    the file found (``JetChecks``)."""

    images: np.ndarray
    is_signal: np.ndarray
    mass: np.ndarray
    pt: np.ndarray
    tau32: np.ndarray | None = None
    findings: list[Finding] = field(default_factory=list)

    def select(self, index: np.ndarray) -> JetImages:
        return JetImages(
            self.images[index],
            self.is_signal[index],
            self.mass[index],
            self.pt[index],
            None if self.tau32 is None else self.tau32[index],
            self.findings,
        )

    def as_sample(self) -> EventSample:
        """The images as detector inputs; jet mass and pT (GeV), and τ32 where computed, as observables."""
        observables = {"mass": self.mass, "pt": self.pt}
        if self.tau32 is not None:
            observables["tau32"] = self.tau32
        return EventSample(self.images, observables)


def _constituent_counts(constituents, real, unphysical, tolerance):  # pragma: no cover - runs compiled
    """Per jet: constituents with pT > 0 into ``real``, constituents with E < |p| (1 - tolerance) into
    ``unphysical``. Zero padding counts as neither."""
    floor = (1.0 - tolerance) ** 2
    for j in range(constituents.shape[0]):
        n_real = 0
        n_unphysical = 0
        for r in range(constituents.shape[1]):
            energy = constituents[j, r, 0]
            x = constituents[j, r, 1]
            y = constituents[j, r, 2]
            z = constituents[j, r, 3]
            pt2 = x * x + y * y
            if pt2 > 0:
                n_real += 1
            if energy < 0 or energy * energy < (pt2 + z * z) * floor:
                n_unphysical += 1
        real[j] = n_real
        unphysical[j] = n_unphysical


@lru_cache(maxsize=1)
def _counts_kernel():
    """_constituent_counts compiled by numba (cached on disk, like the image loops)."""
    import numba
    from numba import types

    from hepad_cli.data.images import numba_extensions_skipped

    signature = types.none(
        types.Array(types.float64, 3, "A", readonly=True), types.int64[::1], types.int64[::1], types.float64
    )
    with numba_extensions_skipped():
        return numba.njit(signature, cache=True, nogil=True)(_constituent_counts)


@lru_cache(maxsize=1)
def _checker():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="hepad-jet-checks")


class JetChecks:
    """Rows of a file whose jets cannot mean what the layout says, gathered block by block."""

    def __init__(self, path: str | os.PathLike, radius: float) -> None:
        self.path = str(path)
        self.radius = radius
        self.rows: dict[str, list[np.ndarray]] = {
            "labels": [],
            "empty": [],
            "outside": [],
            "unphysical": [],
        }
        self.total = 0

    @staticmethod
    def count(block) -> tuple[np.ndarray, np.ndarray]:
        """Per jet of a block: constituents with pT > 0, constituents with E < |p|. Releases the GIL, so
        it runs in a helper thread while the images of the same block are made."""
        real = np.empty(len(block.rows), np.int64)
        unphysical = np.empty(len(block.rows), np.int64)
        _counts_kernel()(block.constituents, real, unphysical, ENERGY_TOLERANCE)
        return real, unphysical

    def add(self, block, images: np.ndarray, real: np.ndarray, unphysical: np.ndarray) -> None:
        """Check one block: its labels, its constituent counts (``count``) and the images made from it."""
        labels = block.is_signal
        inside = images.reshape(len(images), -1).any(axis=1)
        for name, bad in (
            ("labels", (labels != 0) & (labels != 1)),
            ("empty", real == 0),
            ("outside", (real > 0) & ~inside),
            ("unphysical", unphysical > 0),
        ):
            if bad.any():
                self.rows[name].append(block.rows[bad])
        self.total += len(block.rows)

    def findings(self) -> list[Finding]:
        rows = {
            name: np.concatenate(chunks) if chunks else np.empty(0, np.int64)
            for name, chunks in self.rows.items()
        }
        return [
            Finding(
                self.path,
                "have an is_signal_new label other than 0 (QCD) or 1 (top)",
                rows["labels"],
                self.total,
                "labels must be exactly 0 or 1; fix the file (no jet is relabelled or dropped silently)",
                unit="jets",
            ),
            Finding(
                self.path,
                "have no constituent with pT > 0 (empty jets)",
                rows["empty"],
                self.total,
                "an empty jet has an empty image, the same for every such jet; remove them from the file",
                unit="jets",
            ),
            Finding(
                self.path,
                f"have no constituent within data.image.radius={self.radius} of the jet axis (empty images)",
                rows["outside"],
                self.total,
                "choose a radius that covers the jets, e.g. data.image.radius=0.8 for R = 0.8 jets",
                unit="jets",
            ),
            Finding(
                self.path,
                f"hold constituents with E < |p| (beyond a relative {ENERGY_TOLERANCE:g}), which no "
                "particle has",
                rows["unphysical"],
                self.total,
                "each constituent must be (E, px, py, pz) in GeV: check the column order of the file",
                unit="jets",
            ),
        ]


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
    _counts_kernel()
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
    image.check_memory(total)
    checks = JetChecks(path, image.radius)
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
            counting = _checker().submit(checks.count, block)  # on the core the image code leaves idle
            jet_pt, jet_mass, finite = images_into(
                block.constituents,
                images[window, :, :, 0],
                image.size,
                image.radius,
                image.normalise,
                image.preprocess,
            )
            checks.add(block, images[window], *counting.result())
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
    return JetImages(images, labels, masses, pts, tau32s, checks.findings())
