"""Every config composes; the config tree ships inside the wheel; unknown options list the choices."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from tests.conftest import REPO, run_cli

CONF = REPO / "conf"
GROUP_OPTIONS = [
    (group.name, option.stem)
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))
    for option in sorted(group.glob("*.yaml"))
]


def test_every_group_has_options():
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"data", "model", "trainer", "evaluator", "experiment"} <= groups


# Options that name the user's own inputs (building checks that they exist; nothing is read).
NEEDS_INPUTS = {("data", "files"): ["data.background=[{inputs}/bkg.root]", "data.features=[mass,pt]"]}


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_config_composes_and_its_objects_build(group, option, tmp_path, tmp_path_factory):
    inputs_dir = tmp_path_factory.mktemp("inputs")
    (inputs_dir / "bkg.root").touch()
    inputs = [item.format(inputs=inputs_dir) for item in NEEDS_INPUTS.get((group, option), [])]
    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}", f"paths.data_dir={tmp_path}", *inputs])
    assert cfg.seed is not None
    # Constructors only validate and store: building them must not touch data or train anything.
    instantiate(cfg.data, _convert_="all")
    instantiate(cfg.model, _convert_="all")
    assert list(tmp_path.iterdir()) == []


def test_data_files_without_inputs_says_which_keys_to_set(tmp_path):
    from hepad_cli.errors import DataError
    from hepad_cli.experiment import instantiate_node

    with initialize_config_module("hepad_cli.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=files", f"paths.data_dir={tmp_path}"])
    with pytest.raises(DataError, match=r"data\.(features|background)"):
        instantiate_node(cfg.data)


def test_unknown_group_option_fails_with_the_list_of_choices(tmp_path):
    result = run_cli("model=no_such_model", cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert "no_such_model" in result.stderr
    assert "conv_ae" in result.stderr and "pca" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_wheel_ships_the_config_tree_and_an_installed_copy_finds_it(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("hepad-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {name.removeprefix("hepad_cli/conf/") for name in names if name.endswith(".yaml")}
    expected = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")}
    assert expected and expected <= shipped
    # Install the wheel alone into a target directory and run it from elsewhere: the configs must come
    # from the wheel, not from this checkout.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "import hepad_cli.run as r; print(r.__file__); r.main()", "--cfg", "job"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))
    assert "_target_: hepad_cli.data.pythia.PythiaJets" in result.stdout


def test_help_lists_groups_without_importing_tensorflow(tmp_path):
    code = (
        "import sys; sys.argv=['hepad-run','--help']\nimport hepad_cli.run as r\ntry:\n    r.main()\n"
        "except SystemExit:\n    pass\nprint('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    data_line = next(line for line in result.stdout.splitlines() if line.startswith("data: "))
    assert "jetnet" in data_line and "pythia" in data_line
    assert "TF_NOT_LOADED" in result.stdout
