"""The figures of a run: score histograms, ROC curves, training history, latent space, reconstructions.

Every figure goes through ``styled_pyplot`` and ``save_figure``: the look (an mplhep experiment style),
the experiment label and the file formats are set here once, for the figures of the run in progress, by
``figure_style`` (the evaluator's ``style``, ``label``, ``energy`` and ``formats``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_path
from hepad_cli.validation import check_choice

BACKGROUND_COLOUR = "0.35"
# mplhep style and label helper of each experiment; ROOT is the plain look without an experiment.
STYLES = ("ROOT", "CMS", "ATLAS", "LHCb", "ALICE")
FORMATS = ("png", "pdf", "svg")
_PNG_DPI = 110


@dataclass(frozen=True)
class FigureStyle:
    """How figures look and which files they become: ``style`` (an mplhep experiment style), ``label``
    (the experiment label's text, e.g. "Simulation"; null = none, the figure keeps its title),
    ``energy`` (text at the right above the plot, e.g. "14 TeV") and ``formats`` (png always first)."""

    style: str = "ROOT"
    label: str | None = None
    energy: str | None = None
    formats: tuple[str, ...] = ("png",)

    def __post_init__(self) -> None:
        check_choice("evaluator.style", self.style, STYLES)
        for key, value in (("evaluator.label", self.label), ("evaluator.energy", self.energy)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{key} must be text or null, got {value!r}")
        formats = list(self.formats) if isinstance(self.formats, list | tuple) else [self.formats]
        for value in formats:
            check_choice("evaluator.formats", value, FORMATS, hint="a list, e.g. [png,pdf]")
        if "png" not in formats or len(set(formats)) != len(formats):
            raise ConfigError(
                f"evaluator.formats must list png once (the run's browsers, MLflow and TensorBoard show "
                f"the PNG) plus any of pdf, svg, got {formats!r}; e.g. evaluator.formats=[png,pdf]"
            )
        object.__setattr__(self, "formats", ("png", *(f for f in formats if f != "png")))


_CURRENT_STYLE: ContextVar[FigureStyle | None] = ContextVar("figure_style", default=None)


def current_style() -> FigureStyle:
    """The style figures are made in now: the run's, or the default look outside a run."""
    return _CURRENT_STYLE.get() or FigureStyle()


@contextmanager
def figure_style(style: FigureStyle) -> Iterator[None]:
    """Figures made inside use ``style`` (the evaluator's settings of the run in progress)."""
    token = _CURRENT_STYLE.set(style)
    try:
        yield
    finally:
        _CURRENT_STYLE.reset(token)


def styled_pyplot():
    """matplotlib.pyplot on the file-only Agg backend in the current style (ROOT of mplhep by default)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    style = current_style().style
    plt.rcdefaults()
    plt.style.use(getattr(mplhep.style, "LHCb2" if style == "LHCb" else style))
    if style == "ROOT":
        plt.rcParams.update({"figure.figsize": (8, 6), "font.size": 16, "legend.fontsize": 13})
    return plt


def add_experiment_label(fig) -> list:
    """The experiment label (e.g. "CMS Simulation", energy at the right) above a single-panel figure's
    axes, in place of its title (a paper's caption says what the figure shows); multi-panel figures keep
    their titles. Returns the text artists drawn."""
    import mplhep

    current = current_style()
    if current.label is None or not fig.axes:
        return []
    ax = fig.axes[0]
    spec = ax.get_subplotspec()
    if spec is None or spec.get_topmost_subplotspec().get_gridspec().get_geometry() != (1, 1):
        return []
    ax.set_title("")
    experiment = "" if current.style == "ROOT" else current.style
    texts = mplhep.label.exp_label(
        exp=experiment,
        text=current.label,
        data=True,  # the label text says what the events are; no automatic "Simulation"
        rlabel=current.energy or "",
        loc=0,
        ax=ax,
    )
    return [text for text in texts if text is not None]


def save_figure(fig, path: Path) -> None:
    """Write the figure atomically in every format of the current style (``path`` is the PNG; the others
    get its name with their suffix) and close it."""
    import matplotlib.pyplot as plt

    add_experiment_label(fig)
    path = Path(path)
    try:
        for extension in current_style().formats:
            target = path.with_suffix(f".{extension}")
            with atomic_path(target, suffix=f".partial.{extension}") as tmp:
                fig.savefig(tmp, format=extension, dpi=_PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)


def figure_files(names: list[str]) -> list[str]:
    """Every file the figures ``names`` (PNG names) were written to in the current style's formats."""
    formats = current_style().formats
    return [str(Path(name).with_suffix(f".{extension}")) for name in names for extension in formats]


def density_histogram(ax, values: np.ndarray, bins: np.ndarray, *, filled: bool, colour, label: str) -> None:
    """A normalised histogram through mplhep.histplot: the background filled, signals as lines; values
    outside the bins are counted in the first or last bin."""
    import mplhep

    counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins, density=True)
    mplhep.histplot(
        counts,
        bins,
        ax=ax,
        histtype="fill" if filled else "step",
        color=colour,
        alpha=0.35 if filled else 1.0,
        linewidth=2,
        label=label,
        flow="none",
    )


def _signal_colours(names):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i) for i, name in enumerate(names)}


def plot_score_histograms(scores: Mapping[str, np.ndarray], score_label: str, path: Path, title: str) -> None:
    """Density of the anomaly score for background and each signal, log y, shared bins."""
    plt = styled_pyplot()
    everything = np.concatenate(list(scores.values()))
    low, high = np.quantile(everything, [0.0, 0.999])
    if high <= low:
        high = low + 1.0
    bins = np.linspace(low, high, 60)
    colours = _signal_colours([n for n in scores if n != "background"])
    fig, ax = plt.subplots()
    for name, values in scores.items():
        is_background = name == "background"
        density_histogram(
            ax,
            values,
            bins,
            filled=is_background,
            colour=BACKGROUND_COLOUR if is_background else colours[name],
            label=f"{name} ({len(values):,} events)",
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"{score_label} (last bin includes overflow)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=14)
    ax.legend()
    save_figure(fig, path)


#: Line styles of the reference observables on roc.png, in the order they come.
REFERENCE_STYLES = ("--", ":", "-.")


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    aucs: Mapping[str, float],
    path: Path,
    title: str,
    references: list | None = None,
) -> None:
    """Background rejection 1/FPR against signal efficiency, as trigger and tagging people read ROCs.

    ``references``: one observable's ROC per signal (``ReferenceCurve``), thin and dashed in the signal's
    colour, labelled as references: a cut on one observable, not a detector.
    """
    plt = styled_pyplot()
    colours = _signal_colours(list(curves))
    fig, ax = plt.subplots()
    for name, (fpr, tpr) in curves.items():
        keep = fpr > 0
        ax.plot(
            tpr[keep],
            1.0 / fpr[keep],
            color=colours[name],
            linewidth=2,
            label=f"{name}: AUC = {aucs[name]:.3f}",
        )
    styles = {}
    for curve in references or []:
        if curve.signal not in colours:
            continue
        style = styles.setdefault(curve.observable, REFERENCE_STYLES[len(styles) % len(REFERENCE_STYLES)])
        keep = curve.fpr > 0
        ax.plot(
            curve.tpr[keep],
            1.0 / curve.fpr[keep],
            color=colours[curve.signal],
            linewidth=1.2,
            linestyle=style,
            label=f"{curve.signal}: {curve.label} cut, reference (AUC {curve.auc:.3f})",
        )
    grid = np.linspace(1e-3, 1, 200)
    ax.plot(grid, 1.0 / grid, color="0.5", linestyle=(0, (1, 4)), label="random guess")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("signal efficiency (true positive rate)")
    ax.set_ylabel("background rejection 1 / (false positive rate)")
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=10 if references else None)
    save_figure(fig, path)


def plot_history(history: Mapping[str, list[float]], path: Path, title: str) -> None:
    """Training and validation loss per epoch (log y), with the learning rate on a second axis."""
    plt = styled_pyplot()
    fig, ax = plt.subplots()
    epochs = np.arange(1, len(history["loss"]) + 1)
    for key, values in history.items():
        if key in ("learning_rate", "lr", "epoch_seconds"):
            continue
        ax.plot(
            epochs,
            values,
            marker="o",
            markersize=3,
            linewidth=2,
            linestyle="--" if key.startswith("val_") else "-",
            label=key.replace("val_", "validation "),
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    rates = history.get("learning_rate") or history.get("lr")
    handles, labels = ax.get_legend_handles_labels()
    if rates:
        twin = ax.twinx()
        (line,) = twin.step(epochs, rates, where="mid", color="0.6", linewidth=1)
        twin.set_yscale("log")
        twin.set_ylabel("learning rate", color="0.4")
        handles, labels = [*handles, line], [*labels, "learning rate (right axis)"]
    ax.set_title(title, fontsize=14)
    ax.legend(handles, labels, loc="best", fontsize=11)
    save_figure(fig, path)


def plot_latent(
    latent: Mapping[str, np.ndarray],
    axis_labels: tuple[str, str],
    path: Path,
    title: str,
    max_points: int = 4000,
    seed: int = 0,
) -> None:
    """2-D latent coordinates of background and each signal (a random subset of each, same size)."""
    plt = styled_pyplot()
    rng = np.random.default_rng(seed)
    colours = _signal_colours([n for n in latent if n != "background"])
    fig, ax = plt.subplots()
    # Signals first, background on top: the question is where signal leaves the background's region.
    for name in sorted(latent, key=lambda n: n == "background"):
        points = latent[name]
        if len(points) > max_points:
            points = points[rng.choice(len(points), max_points, replace=False)]
        is_background = name == "background"
        ax.scatter(
            points[:, 0],
            points[:, 1],
            s=4,
            alpha=0.3 if is_background else 0.5,
            color=BACKGROUND_COLOUR if is_background else colours[name],
            label=name,
            rasterized=True,
        )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=14)
    ax.legend(markerscale=4)
    save_figure(fig, path)


def plot_reconstructions(
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    path: Path,
    radius: float,
    n_examples: int = 2,
) -> None:
    """Per sample: the average input and reconstructed image, then single jets, input above output."""
    plt = styled_pyplot()
    from matplotlib.colors import LogNorm

    names = list(inputs)
    n_columns = 1 + n_examples
    fig, axes = plt.subplots(
        2 * len(names), n_columns, figsize=(3.2 * n_columns, 3.0 * 2 * len(names)), squeeze=False
    )
    extent = (-radius, radius, -radius, radius)
    for row, name in enumerate(names):
        x_in = inputs[name].reshape(len(inputs[name]), *inputs[name].shape[1:3])
        x_out = outputs[name].reshape(len(outputs[name]), *outputs[name].shape[1:3])
        panels = [("average", x_in.mean(0), x_out.mean(0))]
        panels += [(f"jet {i}", x_in[i], x_out[i]) for i in range(min(n_examples, len(x_in)))]
        for column, (label, image_in, image_out) in enumerate(panels):
            for k, (image, kind) in enumerate(((image_in, "input"), (image_out, "reconstructed"))):
                ax = axes[2 * row + k, column]
                positive = image[image > 0]
                norm = LogNorm(vmin=max(positive.min(), 1e-5), vmax=image.max()) if positive.size else None
                # imshow rows are Δη, columns Δφ; transpose so Δη runs along x.
                ax.imshow(
                    np.where(image > 0, image, np.nan).T,
                    origin="lower",
                    extent=extent,
                    norm=norm,
                    cmap="viridis",
                )
                ax.set_title(f"{name} {label}\n{kind}", fontsize=10)
                ax.set_xlabel("Δη", fontsize=9)
                ax.set_ylabel("Δφ", fontsize=9)
                ax.tick_params(labelsize=8)
    fig.suptitle("pT fraction per pixel (log colour scale); empty pixels white", fontsize=12)
    fig.tight_layout()
    save_figure(fig, path)
