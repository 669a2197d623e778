"""End to end: experiment=cms_dqm_fuzzy_and through the installed console script on generated files.

Without data.trust_pickle the run stops before loading anything and says how to proceed; with it, the
pickles are converted once and the run writes the standard outputs plus the per-channel report.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
from hydra import compose, initialize_config_module

from tests.conftest import run_cli
from tests.data.test_cms_dqm import SUBSYSTEM_CHANNEL, write_cms_dqm_files
from tests.test_cli import CONTRACT, PNG_MAGIC

SMALL = [
    "model.hidden=[16]",
    "model.dropout=0.1",
    "model.l2=1e-4",
    "model.mc_passes=8",
    "data.split={train: 0.6, val: 0.1, test: 0.3}",
    "trainer.epochs=8",
    "trainer.batch_size=64",
    "trainer.optimizer=adam",
    "trainer.learning_rate=0.03",
    "trainer.progress_bar=false",
    "evaluator.n_bootstrap=0",
]


def test_experiment_composes_the_notebook_setup():
    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=cms_dqm_fuzzy_and", "data.data_dir=/somewhere"])
    assert cfg.data._target_.endswith("CMSDataQuality") and cfg.data.training == "weak"
    assert cfg.data.trust_pickle is False and cfg.data.data_dir == "/somewhere"
    assert list(cfg.data.channels) == ["muons", "photons", "PF", "calo"]
    assert cfg.model._target_.endswith("FuzzyAndDetector") and list(cfg.model.hidden) == [150, 50, 10]
    assert cfg.model.dropout == 0.25 and cfg.model.l2 == 1e-5 and cfg.model.combination == "notebook"
    assert cfg.trainer.optimizer == "adadelta" and cfg.trainer.learning_rate == 1.0
    assert cfg.trainer.batch_size == 512 and cfg.trainer.epochs == 1024
    assert cfg.trainer.early_stopping_patience == 0 and cfg.trainer.reduce_lr_patience == 0


def test_untrusted_pickles_stop_the_run_with_the_way_forward(tmp_path):
    files = tmp_path / "files"
    write_cms_dqm_files(files, n=200)
    result = run_cli("experiment=cms_dqm_fuzzy_and", f"data.data_dir={files}", cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    assert "data.trust_pickle=true" in result.stderr and "arbitrary code" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (files / "cms_dqm.h5").exists() and not list(tmp_path.glob("outputs/*/*/auc.json"))


def test_trusted_run_writes_the_contract_and_the_channel_report(tmp_path):
    files = tmp_path / "files"
    write_cms_dqm_files(files, n=900)
    result = run_cli(
        "experiment=cms_dqm_fuzzy_and",
        f"data.data_dir={files}",
        "data.trust_pickle=true",
        *SMALL,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (files / "cms_dqm.h5").is_file()
    run_dir = next(tmp_path.glob("outputs/*/*/auc.json")).parent
    for name in [*CONTRACT, "history.png", "channel_scores.png", "subsystem_channel_auc.png"]:
        assert (run_dir / name).is_file(), name
    for name in ["params.json", "state.json", "channel_muons.keras", "channel_calo.keras"]:
        assert (run_dir / "model" / name).is_file(), name
    for png in run_dir.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    report = json.loads((run_dir / "auc.json").read_text())
    assert report["score"] == "fuzzy_and_global" and set(report["signals"]) == {"bad"}
    assert report["supervision"].startswith("weak: global good/bad lumisection labels")
    assert report["global"]["deterministic"]["bad"]["auc_lumi_weighted"] > 0.9
    assert report["global"]["mc_dropout_8"]["bad"]["auc_lumi_weighted"] > 0.9
    assert set(report["channels"]) == {"muons", "photons", "PF", "calo"}
    table = report["subsystem_channel_auc"]
    rows = dict(zip(table["subsystems"], table["auc_lumi_weighted"], strict=True))
    for subsystem, channel in SUBSYSTEM_CHANNEL.items():
        assert table["channels"][int(np.argmax(rows[subsystem]))] == channel, (subsystem, rows[subsystem])
    assert rows["Pixel"] == [None, None, None, None]
    assert {"channel_scores.png", "subsystem_channel_auc.png"} <= set(report["figures"])
    with h5py.File(run_dir / "scores.h5") as f:
        assert list(f.attrs["origin_names"]) == ["background", "bad"]
        assert f["score_channel_muons"].shape == f["score"].shape == f["weight"].shape
        assert f["subsystem_Muon"].shape == f["score"].shape
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["config"]["model"]["combination"] == "notebook"
    assert any(entry["path"].endswith("cms_dqm.h5") for entry in info["data"])
    print(
        "\nCMS fuzzy AND:",
        {k: round(v["bad"]["auc_lumi_weighted"], 3) for k, v in report["global"].items()},
        {s: [None if v is None else round(v, 3) for v in row] for s, row in rows.items()},
    )
