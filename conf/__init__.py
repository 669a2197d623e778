"""hepad's Hydra configs. Importing the package (Hydra does, to read it) registers the config nodes that
must be written in Python: the open keys of data=files."""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


def _register_open_keys() -> None:
    """open_keys/files (merged into data=files): the mappings whose keys are the user's names (signals,
    labels, constituents), left open so ``data.signals.zprime=[...]`` works without a leading ``+``;
    Hydra closes every other node."""
    node = OmegaConf.create({"signals": {}, "labels": {}, "constituents": {}})
    for key in node:
        OmegaConf.set_struct(node[key], False)
    ConfigStore.instance().store(group="open_keys", name="files", node=node)


_register_open_keys()
