"""`hepad-run --help`: every group's keys with a description taken from the YAML comments; completion."""

from __future__ import annotations

import os

import pytest

from hepad_cli import config_help
from tests.conftest import run_cli


def chosen_keys(group: str, option: str) -> list[tuple[str, str]]:
    # An option that also sets keys of other groups (``@package _global_``) names its keys in full.
    prefix = "" if config_help.read_config_file(group, option).is_global else f"{group}."
    return [
        (f"{prefix}{key.name}", config_help.description(key))
        for key in config_help.option_keys(group, option)
    ]


def test_every_key_of_every_option_has_a_description():
    undescribed = []
    for group, options in config_help.group_options().items():
        for option in options:
            if config_help.read_config_file(group, option).is_global and group not in ("data", "model"):
                continue  # presets: described as a whole, their keys belong to other groups
            keys = chosen_keys(group, option)
            undescribed += [f"{group}={option}: {key}" for key, text in keys if not text]
    top = config_help.read_config_file(None, "config")
    undescribed += [k.name for k in config_help.listed_keys(top.keys) if not config_help.description(k)]
    assert not undescribed, "add a comment to each of these keys in conf/: " + ", ".join(undescribed)


@pytest.mark.parametrize(
    ("overrides", "chosen"),
    [
        ((), {"data": "pythia", "model": "conv_ae", "trainer": "default", "evaluator": "default"}),
        (("model=vae", "data=hls4ml", "logger=[mlflow,tensorboard]"), {"model": "vae", "data": "hls4ml"}),
    ],
)
def test_help_lists_the_chosen_options_keys_with_their_yaml_comments(tmp_path, overrides, chosen):
    result = run_cli(*overrides, "--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    page = result.stdout
    for group, option in chosen.items():
        assert f"== {group}={option} ==" in page
        assert f"*{option}" in next(line for line in page.splitlines() if line.startswith(f"{group}: "))
        # The option's own section: a key may also appear under an option that sets it (model=conv_ae).
        section = page[page.index(f"== {group}={option} ==") :]
        section = section[: section.find("\n== ")]
        for key, text in chosen_keys(group, option):
            line = next(line for line in section.splitlines() if line.startswith(f"  {key}="))
            following = section[section.index(line) :][: len(line) + 400]
            assert text.split()[0] in following, (key, text)
    for option in ("mlflow", "tensorboard"):
        for key, _ in chosen_keys("logger", option):
            assert f"  {key}=" in page, key
    assert "experiment: adc2021_dense_ae, cms_dqm_fuzzy_and, hls4ml_vae, toptag_conv_ae" in page
    assert "  seed=42" in page and "$" not in page.replace("${", "").replace('"$(', "")


def test_comments_become_descriptions():
    parsed = config_help.parse_config_file(
        "# The option: what it is.\n"
        "# More about it.\n"
        "_target_: some.Class\n"
        "size: 16            # pixels per side\n"
        "# Above a key, a block describes it\n"
        "# over two lines.\n"
        "split: {train: 0.6, val: 0.2}\n"
        "\n"
        "# After a blank line a block still describes the key below it.\n"
        "url: 'https://host/a#b'  # where from\n"
        "image:\n"
        "  size: 8           # of the image\n"
        "  radius: 0.8\n"
        "record:             # a mapping described as one key\n"
        "  file: f.h5\n"
        "  checksum: zenodo\n"
        "seed: ${seed}\n"
        "trainer: ${trainer}\n"
    )
    assert parsed.header == ["The option: what it is.", "More about it."]
    assert parsed.summary() == "The option: what it is."
    shown = {key.name: config_help.description(key) for key in config_help.listed_keys(parsed.keys)}
    assert shown == {
        "size": "pixels per side",
        "split": "Above a key, a block describes it over two lines.",
        "url": "where from",
        "image.size": "of the image",
        "image.radius": "",
        "record": "a mapping described as one key",
        "seed": "follows seed",
        "trainer": "the trainer group's settings",
    }


def test_bash_completion_installs_and_completes_groups_and_options(tmp_path):
    installed = run_cli("-sc", "install=bash", cwd=tmp_path, timeout=60)
    assert installed.returncode == 0
    assert "complete -o nospace -o default -F hydra_bash_completion hepad-run" in installed.stdout
    for line, expected in (("hepad-run mod", "model="), ("hepad-run model=va", "model=vae")):
        env = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
        query = run_cli("-sc", "query=bash", cwd=tmp_path, timeout=60, env={**os.environ, **env})
        assert query.returncode == 0
        assert expected in query.stdout.split(), (line, query.stdout)
