"""Per-channel anomaly scores: weighted AUCs, score histograms, and the subsystem × channel AUC heat map.

A detector with one score per channel (the fuzzy AND) reports here how each channel separates good from
bad test events, and how each channel's score ranks the events that a subsystem's experts flagged bad
(``subsystem_<name>`` observables, 1 = good, 0 = bad). Event weights come from the ``weight``
observable (luminosity weights for CMS lumisections). A subsystem whose test events are all of one
class has no ROC curve: its cells are undefined (null in auc.json, hatched grey "n/a" in the figure),
never 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hepad_cli.data.samples import EVENT_WEIGHT, SUBSYSTEM_FLAG_PREFIX
from hepad_cli.evaluation import metrics


def _weights(samples, name: str, n: int) -> np.ndarray:
    weights = samples.observables.get(name, {}).get(EVENT_WEIGHT)
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def separation(samples, scores: Mapping[str, np.ndarray], settings) -> dict:
    """Weighted and unweighted AUC of one score: each signal (bad) sample against the background."""
    background = scores["background"]
    background_weights = _weights(samples, "background", len(background))
    level = round(settings.confidence_level * 100)
    result = {}
    for name, values in scores.items():
        if name == "background":
            continue
        auc, interval = metrics.auc_with_interval(
            background,
            values,
            settings.n_bootstrap,
            settings.seed,
            settings.confidence_level,
            background_weights=background_weights,
            signal_weights=_weights(samples, name, len(values)),
        )
        unweighted, _ = metrics.auc_with_interval(background, values, 0)
        result[name] = {
            "auc_lumi_weighted": auc,
            f"auc_lumi_weighted_interval_{level}": list(interval),
            "auc_unweighted": unweighted,
            "n_good": int(len(background)),
            "n_bad": int(len(values)),
        }
    return result


def subsystem_channel_auc(samples, channel_scores: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """ROC AUC of every channel score against every subsystem's bad flag, over all test events.

    ``channel_scores``: {channel: {sample: scores}}. Returns subsystems, channels, the AUC matrix
    (rows = subsystems; None where the subsystem has only good or only bad test events) and counts.
    """
    names = list(samples.named_test_samples())
    keys = sorted(
        key
        for key in samples.observables.get(names[0], {})
        if key.startswith(SUBSYSTEM_FLAG_PREFIX) and all(key in samples.observables.get(n, {}) for n in names)
    )
    weights = np.concatenate([_weights(samples, n, len(x)) for n, x in samples.named_test_samples().items()])
    channels = list(channel_scores)
    matrix, n_bad, n_good = [], [], []
    for key in keys:
        good = np.concatenate([np.asarray(samples.observables[n][key]) for n in names]) == 1
        n_bad.append(int((~good).sum()))
        n_good.append(int(good.sum()))
        row = []
        for channel in channels:
            values = np.concatenate([channel_scores[channel][n] for n in names])
            if good.all() or not good.any():
                row.append(None)
                continue
            auc, _ = metrics.auc_with_interval(
                values[good],
                values[~good],
                0,
                background_weights=weights[good],
                signal_weights=weights[~good],
            )
            row.append(float(auc))
        matrix.append(row)
    return {
        "subsystems": [key[len(SUBSYSTEM_FLAG_PREFIX) :] for key in keys],
        "channels": channels,
        "auc_lumi_weighted": matrix,
        "n_bad": n_bad,
        "n_good": n_good,
        "positive_class": "lumisections the subsystem's experts flagged bad (label 0)",
        "undefined": "null where the subsystem has only good or only bad test lumisections",
    }


def plot_channel_histograms(
    scores: Mapping[str, Mapping[str, np.ndarray]], aucs: Mapping[str, float], path: Path, title: str
) -> None:
    """One panel per score (global, then each channel): good and bad test events, density, log y."""
    from hepad_cli.evaluation.plots import BACKGROUND_COLOUR, density_histogram, save_figure, styled_pyplot

    plt = styled_pyplot()
    n = len(scores)
    columns = min(n, 3)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.5 * rows), squeeze=False)
    bins = np.linspace(0.0, 1.0, 41)
    for ax, (name, by_sample) in zip(axes.flat, scores.items(), strict=False):
        for sample, values in by_sample.items():
            is_good = sample == "background"
            density_histogram(
                ax,
                values,
                bins,
                filled=is_good,
                colour=BACKGROUND_COLOUR if is_good else "tab:red",
                label=f"{'good' if is_good else sample} ({len(values):,})",
            )
        ax.set_yscale("log")
        ax.set_title(f"{name}: AUC {aucs[name]:.3f} (lumi-weighted)", fontsize=12)
        ax.set_xlabel("anomaly score (1 − P(good))", fontsize=11)
        ax.set_ylabel("density", fontsize=11)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    save_figure(fig, path)


def plot_subsystem_heatmap(table: dict, path: Path, title: str) -> None:
    """Rows = subsystems, columns = channels, colour = AUC; undefined cells hatched grey with "n/a"."""
    from matplotlib.patches import Rectangle

    from hepad_cli.evaluation.plots import save_figure, styled_pyplot

    plt = styled_pyplot()
    subsystems, channels = table["subsystems"], table["channels"]
    values = np.array(
        [[np.nan if v is None else v for v in row] for row in table["auc_lumi_weighted"]], dtype=float
    ).reshape(len(subsystems), len(channels))
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(channels), 1.5 + 0.55 * max(len(subsystems), 1)))
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="coolwarm", vmin=0.0, vmax=1.0, aspect="auto", origin="upper"
    )
    for i in range(len(subsystems)):
        for j in range(len(channels)):
            if np.isnan(values[i, j]):
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.85", edgecolor="0.5", hatch="///", lw=0)
                )
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=11, color="0.2")
            else:
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=11)
    ax.set_xticks(range(len(channels)), channels, fontsize=11)
    ax.set_yticks(
        range(len(subsystems)),
        [f"{s} ({b} bad)" for s, b in zip(subsystems, table["n_bad"], strict=True)],
        fontsize=10,
    )
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("channel score", fontsize=12)
    ax.set_ylabel("subsystem flag", fontsize=12)
    colourbar = fig.colorbar(image, ax=ax)
    colourbar.set_label("ROC AUC (lumi-weighted); n/a = one class only", fontsize=10)
    ax.set_title(title, fontsize=12)
    save_figure(fig, path)


def channel_report(
    samples,
    scores_by_name: Mapping[str, Mapping[str, np.ndarray]],
    global_scores: Mapping[str, str],
    channel_scores: Mapping[str, str],
    out_dir: Path,
    settings,
    title: str,
) -> dict:
    """auc.json entries and figures for a per-channel detector.

    ``global_scores`` / ``channel_scores`` map a label ("deterministic", "mc_dropout" / a channel name)
    to a score name in ``scores_by_name``.
    """
    report = {
        "global": {
            label: separation(samples, scores_by_name[name], settings)
            for label, name in global_scores.items()
        },
        "channels": {
            channel: separation(samples, scores_by_name[name], settings)
            for channel, name in channel_scores.items()
        },
    }
    report["subsystem_channel_auc"] = subsystem_channel_auc(
        samples, {channel: scores_by_name[name] for channel, name in channel_scores.items()}
    )
    figures = []
    if settings.plots:
        panels = {f"global ({label})": scores_by_name[name] for label, name in global_scores.items()}
        panels |= {channel: scores_by_name[name] for channel, name in channel_scores.items()}
        aucs = {f"global ({label})": report["global"][label] for label in global_scores}
        aucs |= {channel: report["channels"][channel] for channel in channel_scores}
        first_signal = {name: next(iter(entry.values()))["auc_lumi_weighted"] for name, entry in aucs.items()}
        plot_channel_histograms(panels, first_signal, out_dir / "channel_scores.png", title)
        figures.append("channel_scores.png")
        if report["subsystem_channel_auc"]["subsystems"]:
            plot_subsystem_heatmap(
                report["subsystem_channel_auc"],
                out_dir / "subsystem_channel_auc.png",
                f"{title}: channel vs subsystem",
            )
            figures.append("subsystem_channel_auc.png")
    report["figures"] = figures
    return report
