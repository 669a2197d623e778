"""The figures of a run: score histograms, ROC curves, training history, latent space, reconstructions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hepad_cli.io import atomic_path

BACKGROUND_COLOUR = "0.35"


def styled_pyplot():
    """matplotlib.pyplot on the file-only Agg backend with the ROOT style of mplhep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    plt.rcParams.update({"figure.figsize": (8, 6), "font.size": 16, "legend.fontsize": 13})
    return plt


def save_figure(fig, path: Path) -> None:
    """Write the figure as PNG atomically (never a half-written file) and close it."""
    with atomic_path(path, suffix=".partial.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


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
        ax.hist(
            np.clip(values, low, high),
            bins=bins,
            density=True,
            histtype="stepfilled" if is_background else "step",
            color=BACKGROUND_COLOUR if is_background else colours[name],
            alpha=0.35 if is_background else 1.0,
            linewidth=2,
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
