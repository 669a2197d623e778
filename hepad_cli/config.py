"""The composed config of a run, from Python: the same config tree and overrides as ``hepad-run``."""

from __future__ import annotations

from omegaconf import DictConfig


def compose(*overrides: str) -> DictConfig:
    """The config ``hepad-run <overrides>`` would run with (Hydra's compose API; no run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))
