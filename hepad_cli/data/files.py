"""``data=files``: the user's own event files (ROOT, Parquet, HDF5, NumPy) as background and signals.

Inputs: ``background`` (paths or globs) and ``signals`` (name → paths or globs), or one set of ``files``
whose ``label_column`` values ``labels`` maps to "background" and signal names. Each file is read chunk by
chunk through ``hepad_cli.data.columns`` and turned into detector inputs by the ``representation``:

- ``features``: the flat columns ``features`` → (n, k), in that order;
- ``particles``: the jagged constituent columns ``constituents`` → (n, max_particles, 3|4), highest pT
  first, zero-padded;
- ``image``: the constituents as four-vectors (E, px, py, pz) → the same pT images as the Top Tagging
  path, through the same fast image code (``images_into``), relative to the jet axis.

Every event keeps where it came from (``source_file``: its file's index in the provenance list, and
``entry``: its entry number in that file) and any ``passthrough`` columns; they go into scores.h5.
``InputFiles`` is the reading half on its own: hepad-score streams new files through it chunk by chunk.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hepad_cli.data.columns import FIXED, FLAT, JAGGED, Chunk, Jagged, open_columns
from hepad_cli.data.dataset import Dataset, DatasetContent, EventSample
from hepad_cli.data.jets import ImageSettings
from hepad_cli.errors import DataError
from hepad_cli.validation import check_choice, check_int

log = logging.getLogger(__name__)

REPRESENTATIONS = ("features", "particles", "image")
#: Accepted sets of constituent keys; their order is the order of a particle's values (particles).
CONSTITUENT_SETS = (
    ("pt", "eta", "phi"),
    ("pt", "eta", "phi", "e"),
    ("pt", "eta", "phi", "mass"),
    ("e", "px", "py", "pz"),
)
BACKGROUND = "background"
#: Jets padded at a time on the way to images: the padded block stays a few tens of MB.
IMAGE_BLOCK = 8192


@dataclass
class InputGroup:
    """Files read together: one sample (``sample``), or labelled files routed by ``labels``."""

    files: list[Path]
    sample: str | None = None
    labels: dict[float, str] | None = None


@dataclass
class EventChunk:
    """Detector inputs of consecutive entries of one file, with their observables."""

    events: np.ndarray
    observables: dict[str, np.ndarray]


def _as_paths(key: str, patterns: object) -> list[Path]:
    """Sorted files matching a list of paths or globs; DataError for a pattern that matches nothing."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        raise DataError(f"{key} must be a list of paths or globs, got {patterns!r} (e.g. '[bkg/*.root]')")
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise DataError(
                f"{key}: {pattern!r} matches no file (relative paths start at {Path.cwd()}); check the path"
            )
        paths += [Path(m).resolve() for m in matches if Path(m).is_file()]
    return list(dict.fromkeys(paths))


def _label_value(key: object) -> float:
    try:
        return float(key)
    except (TypeError, ValueError):
        raise DataError(
            f"data.labels keys must be the numbers found in data.label_column, got {key!r} "
            "(e.g. '{0: background, 1: top}')"
        ) from None


class InputFiles:
    """The reading settings of ``data=files``: which files, which columns, how to make events of them."""

    def __init__(
        self,
        *,
        background,
        signals,
        files,
        label_column,
        labels,
        tree,
        key,
        selection,
        representation,
        features,
        constituents,
        max_particles,
        image,
        passthrough,
        chunk_size,
    ) -> None:
        self.representation = check_choice(
            "data.representation", representation, REPRESENTATIONS, error=DataError
        )
        self.tree = tree
        self.key = key
        self.selection = selection
        if selection is not None and not isinstance(selection, str):
            raise DataError(f"data.selection must be a string such as 'pt > 500' or null, got {selection!r}")
        self.chunk_size = check_int("data.chunk_size", chunk_size, error=DataError)
        self.passthrough = self._names("data.passthrough", passthrough, allow_empty=True)
        self.features: list[str] = []
        self.constituents: dict[str, str] = {}
        self.max_particles = None
        self.image = None
        if self.representation == "features":
            self.features = self._names("data.features", features, allow_empty=False)
        else:
            self.constituents = self._constituents(constituents)
            if self.representation == "particles":
                self.max_particles = check_int("data.max_particles", max_particles, error=DataError)
            else:
                self.image = ImageSettings(**dict(image))
        self.groups = self._groups(background, signals, files, label_column, labels)
        self.label_column = label_column

    @staticmethod
    def _names(key: str, value: object, allow_empty: bool) -> list[str]:
        if value is None:
            value = []
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise DataError(f"{key} must be a list of column names, got {value!r} (e.g. '[mass,tau21]')")
        if not value and not allow_empty:
            raise DataError(f"{key} is empty: name the columns to use, e.g. {key}='[mass,tau21,tau32,pt]'")
        if len(set(value)) != len(value):
            raise DataError(f"{key} names a column twice: {list(value)}")
        return list(value)

    @staticmethod
    def _constituents(value: object) -> dict[str, str]:
        if not isinstance(value, dict) or tuple(sorted(value)) not in {
            tuple(sorted(s)) for s in CONSTITUENT_SETS
        }:
            sets = ", ".join("{" + ", ".join(s) + "}" for s in CONSTITUENT_SETS)
            raise DataError(
                f"data.constituents must map one of {sets} to column names, got {value!r} "
                "(e.g. '{pt: part_pt, eta: part_eta, phi: part_phi}')"
            )
        order = next(s for s in CONSTITUENT_SETS if sorted(s) == sorted(value))
        return {name: str(value[name]) for name in order}

    def _groups(self, background, signals, files, label_column, labels) -> list[InputGroup]:
        signals = {} if signals is None else signals
        if not isinstance(signals, dict):
            raise DataError(f"data.signals must map signal names to lists of files, got {signals!r}")
        if files:
            if background or signals:
                raise DataError(
                    "give either data.background / data.signals, or data.files with data.label_column, "
                    "not both"
                )
            if not isinstance(label_column, str) or not isinstance(labels, dict) or not labels:
                raise DataError(
                    "data.files needs data.label_column (the column holding each event's class) and "
                    f"data.labels mapping its values to names, e.g. '{{0: background, 1: top}}'; got "
                    f"label_column={label_column!r}, labels={labels!r}"
                )
            mapping = {_label_value(k): str(v) for k, v in labels.items()}
            return [InputGroup(_as_paths("data.files", files), labels=mapping)]
        groups = []
        if background:
            groups.append(InputGroup(_as_paths("data.background", background), sample=BACKGROUND))
        for name, patterns in signals.items():
            if str(name) == BACKGROUND:
                raise DataError("'background' cannot be a signal name")
            groups.append(InputGroup(_as_paths(f"data.signals.{name}", patterns), sample=str(name)))
        if not groups:
            raise DataError(
                "no input files: set data.background='[bkg/*.root]' (and data.signals.<name>='[...]'), "
                "or data.files with data.label_column and data.labels"
            )
        return groups

    # --- what the events look like --------------------------------------------------------------

    @property
    def input_columns(self) -> list[str]:
        return self.features or list(self.constituents.values())

    @property
    def event_shape(self) -> tuple[int, ...]:
        if self.representation == "features":
            return (len(self.features),)
        if self.representation == "particles":
            return (self.max_particles, len(self.constituents))
        return (self.image.size, self.image.size, 1)

    def signature(self) -> dict:
        """What a detector trained on these events expects of new ones (hepad_cli.data.signature)."""
        return {
            "representation": self.representation,
            "features": self.features or None,
            "constituents": list(self.constituents) or None,
            "max_particles": self.max_particles,
            "image": None if self.image is None else vars(self.image).copy(),
            "event_shape": list(self.event_shape),
        }

    @property
    def sample_names(self) -> list[str]:
        names = []
        for group in self.groups:
            names += [group.sample] if group.sample else list(dict.fromkeys(group.labels.values()))
        return list(dict.fromkeys(names))

    # --- opening and checking -------------------------------------------------------------------

    def _needed(self, group: InputGroup) -> dict[str, tuple[str, ...]]:
        """{column: kinds it may have} for one group."""
        needed = {name: (FLAT,) for name in self.features}
        needed |= {name: (JAGGED, FIXED) for name in self.constituents.values()}
        needed |= {name: (FLAT,) for name in self.passthrough}
        if group.labels is not None:
            needed[self.label_column] = (FLAT,)
        return needed

    def check(self) -> dict[Path, int]:
        """Open every file, check its columns and the selection; {path: entries}. Nothing is read yet."""
        entries = {}
        for group in self.groups:
            for path in group.files:
                reader = open_columns(path, self.tree, self.key)
                try:
                    kinds = reader.kinds
                    for name, allowed in self._needed(group).items():
                        self._check_column(path, reader.format, kinds, name, allowed)
                    if self.selection is not None:
                        reader.check_selection(self.selection)
                    entries[path] = reader.n_entries
                finally:
                    reader.close()
        return entries

    def _check_column(self, path, file_format, kinds: dict[str, str], name: str, allowed) -> None:
        what, plural = ("branch", "branches") if file_format == "ROOT" else ("column", "columns")
        if name not in kinds:
            raise DataError(f"{path} has no {what} {name!r}; its {plural}: {list(kinds)}")
        kind = kinds[name]
        if kind in allowed:
            return
        if allowed == (FLAT,) and kind in (JAGGED, FIXED):
            raise DataError(
                f"{what} {name!r} of {path} is {kind} (several values per event), but one number per event "
                "is expected here: for constituents use data.representation=particles or image with "
                "data.constituents"
            )
        raise DataError(
            f"{what} {name!r} of {path} is {kind}; constituents need a jagged or fixed-length column "
            "(one value per particle)"
        )

    def provenance(self, entries: dict[Path, int]) -> tuple[list[dict], dict[Path, int]]:
        """(one record per file with its md5 and entries, {path: its index in that list})."""
        from hepad_cli.data.download import file_md5

        provenance, index = [], {}
        for group in self.groups:
            for path in group.files:
                index[path] = len(provenance)
                provenance.append(
                    {
                        "path": str(path),
                        "md5": file_md5(path),
                        "verified": False,
                        "sample": group.sample or "labelled",
                        "entries": entries[path],
                    }
                )
        return provenance, index

    # --- reading --------------------------------------------------------------------------------

    def iter_group(
        self,
        group: InputGroup,
        file_index: dict[Path, int],
        rows: np.ndarray | None = None,
        bar: tqdm | None = None,
    ) -> Iterator[dict[str, EventChunk]]:
        """Chunks of one group as {sample name: EventChunk}; ``rows``: kept entry numbers counted over
        the group's files in order (a seeded subsample), None for all."""
        names = list(dict.fromkeys([*self.input_columns, *self.passthrough]))
        if group.labels is not None:
            names.append(self.label_column)
        offset = 0
        for path in group.files:
            reader = open_columns(path, self.tree, self.key)
            try:
                for chunk in reader.chunks(names, self.chunk_size, self.selection):
                    if bar is not None:
                        bar.update(len(chunk))
                    if rows is not None:
                        chunk = chunk.take(_in_sorted(chunk.entries + offset, rows))
                    if len(chunk) == 0:
                        continue
                    yield self._route(group, chunk, file_index[path])
                offset += reader.n_entries
            finally:
                reader.close()
            if bar is not None:  # entries the selection dropped count as done too
                bar.update(max(offset - bar.n, 0))

    def _route(self, group: InputGroup, chunk: Chunk, file_number: int) -> dict[str, EventChunk]:
        if group.labels is None:
            return {group.sample: self.events(chunk, file_number)}
        values = np.asarray(chunk.columns[self.label_column], dtype=np.float64)
        routed = {}
        for value, name in group.labels.items():
            rows = values == value
            if rows.any():
                part = self.events(chunk.take(rows), file_number)
                if name in routed:
                    previous = routed[name]
                    part = EventChunk(
                        np.concatenate([previous.events, part.events]),
                        {
                            k: np.concatenate([previous.observables[k], v])
                            for k, v in part.observables.items()
                        },
                    )
                routed[name] = part
        return routed

    def events(self, chunk: Chunk, file_number: int) -> EventChunk:
        """Detector inputs and observables of one chunk."""
        observables = {
            "source_file": np.full(len(chunk), file_number, dtype=np.int32),
            "entry": chunk.entries.astype(np.int64),
        }
        for name in self.passthrough:
            observables[name] = np.asarray(chunk.columns[name])
        if self.representation == "features":
            events = np.empty((len(chunk), len(self.features)), np.float32)
            for i, name in enumerate(self.features):
                events[:, i] = chunk.columns[name]
            return EventChunk(events, observables)
        particles = self._particle_columns(chunk)
        if self.representation == "particles":
            events, jet_pt, jet_mass = padded_particles(particles, self.max_particles)
        else:
            events, jet_pt, jet_mass = jet_images_of(particles, self.image)
        return EventChunk(events, {"pt": jet_pt, "mass": jet_mass} | observables)

    def _particle_columns(self, chunk: Chunk) -> dict[str, Jagged]:
        """{constituent key: Jagged} with the same counts for every key (checked)."""
        columns = {}
        for key, name in self.constituents.items():
            column = chunk.columns[name]
            columns[key] = Jagged.from_fixed(column) if isinstance(column, np.ndarray) else column
        first_key, first = next(iter(columns.items()))
        for key, column in columns.items():
            if not np.array_equal(column.counts, first.counts):
                bad = int(np.flatnonzero(column.counts != first.counts)[0])
                raise DataError(
                    f"constituent columns {self.constituents[first_key]!r} and {self.constituents[key]!r} "
                    f"have different numbers of values at entry {chunk.entries[bad]}: they must describe the "
                    "same particles"
                )
        return columns


def _in_sorted(values: np.ndarray, sorted_rows: np.ndarray) -> np.ndarray:
    """Boolean mask of ``values`` that occur in ``sorted_rows``."""
    where = np.clip(np.searchsorted(sorted_rows, values), 0, max(len(sorted_rows) - 1, 0))
    return sorted_rows[where] == values if len(sorted_rows) else np.zeros(len(values), bool)


def four_vectors(particles: dict[str, Jagged]) -> np.ndarray:
    """(n_particles, 4) float64 (E, px, py, pz) of the flat particle values, in one vectorised pass."""
    if "px" in particles:
        return np.column_stack([np.asarray(particles[k].values, np.float64) for k in ("e", "px", "py", "pz")])
    pt, eta, phi = (np.asarray(particles[k].values, np.float64) for k in ("pt", "eta", "phi"))
    out = np.empty((len(pt), 4))
    np.multiply(pt, np.cos(phi), out=out[:, 1])
    np.multiply(pt, np.sin(phi), out=out[:, 2])
    np.multiply(pt, np.sinh(eta), out=out[:, 3])
    if "e" in particles:
        out[:, 0] = particles["e"].values
    else:
        momentum_sq = pt * pt + out[:, 3] * out[:, 3]
        mass = np.asarray(particles["mass"].values, np.float64) if "mass" in particles else 0.0
        out[:, 0] = np.sqrt(momentum_sq + mass * mass)
    out[pt == 0] = 0.0  # zero padding of fixed-length columns stays empty
    return out


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(jet index, position within its jet) of every flat particle value."""
    jets = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return jets, np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _jet_sums(vectors: np.ndarray, jets: np.ndarray, n_jets: int) -> tuple[np.ndarray, np.ndarray]:
    """Jet pT and mass (GeV, float32) from the summed four-vectors of their particles."""
    sums = np.zeros((n_jets, 4))
    for i in range(4):
        sums[:, i] = np.bincount(jets, weights=vectors[:, i], minlength=n_jets)
    pt = np.hypot(sums[:, 1], sums[:, 2])
    mass = np.sqrt(np.maximum(sums[:, 0] ** 2 - pt**2 - sums[:, 3] ** 2, 0.0))
    return pt.astype(np.float32), mass.astype(np.float32)


def padded_particles(particles: dict[str, Jagged], width: int) -> tuple[np.ndarray, ...]:
    """(events (n, width, k) float32 highest pT first and zero-padded, jet pT, jet mass)."""
    counts = next(iter(particles.values())).counts
    n_jets = len(counts)
    jets, position = _positions(counts)
    vectors = four_vectors(particles)
    pt = np.hypot(vectors[:, 1], vectors[:, 2])
    # Sorted by jet, then by decreasing pT: the jets keep their places and sizes, so the i-th sorted
    # particle goes to (jets[i], position[i]).
    order = np.lexsort((-pt, jets))
    keep = position < width
    source = order[keep]
    events = np.zeros((n_jets, width, len(particles)), np.float32)
    for i, column in enumerate(particles.values()):
        events[jets[keep], position[keep], i] = column.values[source]
    jet_pt, jet_mass = _jet_sums(vectors, jets, n_jets)
    return events, jet_pt, jet_mass


def jet_images_of(particles: dict[str, Jagged], image: ImageSettings) -> tuple[np.ndarray, ...]:
    """(images (n, size, size, 1) float32, jet pT, jet mass) through the fast image code."""
    from concurrent.futures import ThreadPoolExecutor

    from hepad_cli.data.images import THREADS, images_into

    counts = next(iter(particles.values())).counts
    n_jets = len(counts)
    images = np.empty((n_jets, image.size, image.size, 1), np.float32)
    jet_pt = np.empty(n_jets, np.float32)
    jet_mass = np.empty(n_jets, np.float32)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def fill(first: int) -> int:
        """Images of the jets first..first + IMAGE_BLOCK; returns how many hold NaN or infinite momenta."""
        last = min(first + IMAGE_BLOCK, n_jets)
        block_counts = counts[first:last]
        # Four-vectors block by block: float64 copies of a block stay small and in cache.
        block = {
            name: Jagged(block_counts, column.values[starts[first] : starts[last]])
            for name, column in particles.items()
        }
        padded = np.zeros((last - first, max(int(block_counts.max(initial=0)), 1), 4))
        jets, position = _positions(block_counts)
        padded[jets, position] = four_vectors(block)
        pt, mass, finite = images_into(
            padded, images[first:last, :, :, 0], image.size, image.radius, image.normalise
        )
        jet_pt[first:last], jet_mass[first:last] = pt, mass
        return int((~finite).sum())

    # NumPy's trigonometry releases the GIL: blocks side by side use every core.
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="hepad-blocks") as pool:
        not_finite = sum(pool.map(fill, range(0, n_jets, IMAGE_BLOCK)))
    if not_finite:
        raise DataError(f"{not_finite} jets hold NaN or infinite constituent momenta")
    return images, jet_pt, jet_mass


class UserFiles(Dataset):
    """The user's own files (see the module docstring); every key is documented in conf/data/files.yaml."""

    def __init__(self, *, max_events: int | None, split: dict, seed: int, scaling: str | None, **reading):
        super().__init__(split=split, seed=seed, scaling=scaling)
        self.max_events = check_int("data.max_events", max_events, allow_none=True, error=DataError)
        self.inputs = InputFiles(**reading)
        self.representation = self.inputs.representation

    def input_signature(self) -> dict:
        return self.inputs.signature()

    def read(self) -> DatasetContent:
        entries = self.inputs.check()
        provenance, file_index = self.inputs.provenance(entries)
        buffers: dict[str, _SampleBuffer] = {}
        for number, group in enumerate(self.inputs.groups):
            total = sum(entries[p] for p in group.files)
            rows = self.subsample_rows(total, self.max_events, seed_offset=number)
            capacity = total if rows is None else len(rows)
            what = group.sample or "labelled files"
            with tqdm(total=total, desc=f"reading {what}", unit="event", leave=False) as bar:
                for routed in self.inputs.iter_group(group, file_index, rows, bar):
                    for name, chunk in routed.items():
                        buffers.setdefault(name, _SampleBuffer(capacity)).add(chunk)
        samples = {name: buffer.sample() for name, buffer in buffers.items()}
        for name in self.inputs.sample_names:
            if name not in samples:
                raise DataError(
                    f"no {name} events were read: check the files, data.selection and data.labels"
                )
        background = samples.pop(BACKGROUND, None)
        if background is None:
            raise DataError(
                "no background files were given: data.background (or a label mapped to background)"
            )
        for entry in provenance:
            log.info("%s: %d entries (%s)", entry["path"], entry["entries"], entry["sample"])
        return DatasetContent(background, samples, provenance)


class _SampleBuffer:
    """Chunks copied into arrays allocated once for the most events the sample can get: pages never
    written are never touched, so memory holds the events read and one chunk, not twice the sample."""

    def __init__(self, capacity: int) -> None:
        from hepad_cli.data.jets import _empty_without_hugepages

        self.capacity = capacity
        self.empty = _empty_without_hugepages
        self.events: np.ndarray | None = None
        self.observables: dict[str, np.ndarray] = {}
        self.filled = 0

    def add(self, chunk: EventChunk) -> None:
        if self.events is None:
            self.events = self.empty((self.capacity, *chunk.events.shape[1:]), chunk.events.dtype)
            self.observables = {k: np.empty(self.capacity, v.dtype) for k, v in chunk.observables.items()}
        window = slice(self.filled, self.filled + len(chunk.events))
        self.events[window] = chunk.events
        for key, values in chunk.observables.items():
            self.observables[key][window] = values
        self.filled = window.stop

    def sample(self) -> EventSample:
        return EventSample(
            self.events[: self.filled], {k: v[: self.filled] for k, v in self.observables.items()}
        )
