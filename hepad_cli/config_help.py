"""`hepad-run --help`: every config group, its options, and each key of the chosen options with a one-line
description, all read from the YAML files of ``conf/`` and their comments (nothing here lists a key).

A key is described by its trailing comment, else by the comment lines right above it; the comment lines
at the top of a file describe the option. A key whose value is an interpolation alone (``seed: ${seed}``)
follows the key it names. A mapping whose children carry no comments is one key (shown in flow style).
Runs without importing TensorFlow or any of hepad's heavy modules.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

# Groups whose options set keys of other groups (``# @package _global_``) are listed as presets.
_GROUP_ORDER = ("data", "model", "trainer", "evaluator", "logger", "experiment", "hparams_search")
_HIDDEN_GROUPS = ("open_keys",)
_SKIPPED_KEYS = ("_target_", "defaults", "hydra")
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.-]*)\s*:(.*)$")
_INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")
WIDTH = 110


@dataclass
class Key:
    """One key of a config file: dotted name, its description, whether a mapping below it is described."""

    name: str
    description: str
    value_text: str
    children: list[Key] = field(default_factory=list)


@dataclass
class ConfigFile:
    """A config file's description (its top comment) and its keys in file order."""

    header: list[str]
    keys: list[Key]
    defaults: list[str]
    is_global: bool

    def summary(self) -> str:
        """The first sentence of the header."""
        text = " ".join(self.header)
        match = re.match(r"(.+?\.)(\s|$)", text)
        return match.group(1) if match else text


def _split_comment(text: str) -> tuple[str, str]:
    """(value, comment) of the text after a key's colon; a ``#`` inside quotes is part of the value."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def parse_config_file(text: str) -> ConfigFile:
    """Keys, descriptions, header and defaults of one YAML config file, from its lines and comments."""
    header: list[str] = []
    pending: list[str] = []
    roots: list[Key] = []
    stack: list[tuple[int, Key]] = []
    seen_key = False
    is_global = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if comment.startswith("@package"):
                is_global = "_global_" in comment
            elif not seen_key:
                header.append(comment)
            else:
                pending.append(comment)
            continue
        match = _KEY_LINE.match(line)
        if stripped.startswith("-") or not match:
            pending = []
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3)
        seen_key = True
        value_text, comment = _split_comment(rest)
        key = Key(name, comment or " ".join(pending), value_text)
        pending = []
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            parent = stack[-1][1]
            key.name = f"{parent.name}.{name}"
            parent.children.append(key)
        else:
            roots.append(key)
        stack.append((indent, key))
    defaults = []
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        loaded = {}
    for entry in loaded.get("defaults", []) if isinstance(loaded, dict) else []:
        if isinstance(entry, str) and entry != "_self_":
            defaults.append(entry)
    return ConfigFile(header, roots, defaults, is_global)


def listed_keys(keys: list[Key]) -> list[Key]:
    """The keys shown: leaves, and mappings whose children carry no description (as one key)."""
    shown = []
    for key in keys:
        if key.name.rsplit(".", 1)[-1] in _SKIPPED_KEYS:
            continue
        if key.children and any(_described(child) for child in key.children):
            shown += listed_keys(key.children)
        else:
            shown.append(key)
    return shown


def _described(key: Key) -> bool:
    return bool(key.description or key.children and any(_described(c) for c in key.children))


def description(key: Key) -> str:
    """The key's own comment, or for ``key: ${other}`` where the value comes from."""
    if key.description:
        return key.description
    match = _INTERPOLATION.match(key.value_text)
    if match:
        target = match.group(1)
        return f"the {target} group's settings" if target in _GROUP_ORDER else f"follows {target}"
    return ""


# --- reading conf/ ----------------------------------------------------------------------------------------


def _conf_root():
    return resources.files("hepad_cli.conf")


def group_options() -> dict[str, list[str]]:
    """Each config group of conf/ and its options, in the order of ``_GROUP_ORDER``."""
    root = _conf_root()
    groups = {
        entry.name: sorted(f.name.removesuffix(".yaml") for f in entry.iterdir() if f.name.endswith(".yaml"))
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith("_") and entry.name not in _HIDDEN_GROUPS
    }
    order = [g for g in _GROUP_ORDER if g in groups] + sorted(set(groups) - set(_GROUP_ORDER))
    return {group: groups[group] for group in order if groups[group]}


def read_config_file(group: str | None, option: str) -> ConfigFile | None:
    path = _conf_root() / group / f"{option}.yaml" if group else _conf_root() / f"{option}.yaml"
    return parse_config_file(path.read_text()) if path.is_file() else None


def option_keys(group: str, option: str) -> list[Key]:
    """The keys of an option with their descriptions, including those of the options it builds on (its
    defaults list); the option's own comments win."""
    config = read_config_file(group, option)
    if config is None:
        return []
    merged: dict[str, Key] = {}
    for base in config.defaults:
        if "/" not in base and " " not in base and ":" not in base:
            merged |= {key.name: key for key in listed_keys(option_keys_tree(group, base))}
    for key in listed_keys(config.keys):
        if key.name in merged and not key.description:
            key.description = merged[key.name].description
        merged[key.name] = key
    return list(merged.values())


def option_keys_tree(group: str, option: str) -> list[Key]:
    config = read_config_file(group, option)
    return config.keys if config is not None else []


# --- rendering ------------------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _key_lines(prefix: str, keys: list[Key], values: Any) -> list[str]:
    lines = []
    for key in keys:
        value = _lookup(values, key.name) if values is not None else None
        value_text = _value_text(value) if value is not None else key.value_text or "null"
        shown = f"  {prefix}{key.name}={value_text}"
        text = description(key) or "(no description)"
        if len(shown) <= 44:
            first, indent = shown.ljust(46), " " * 46
        else:
            lines.append(shown)
            first = indent = " " * 8
        wrapped = textwrap.wrap(text, WIDTH - len(indent)) or [""]
        lines.append(first + wrapped[0])
        lines += [indent + more for more in wrapped[1:]]
    return lines


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def render_help(root: DictConfig | None = None) -> str:
    """The help page for the composed config ``root`` (its ``hydra.runtime.choices`` say which options
    are chosen; without it, the defaults of conf/config.yaml)."""
    composed = OmegaConf.to_container(root, resolve=False) if root is not None else {}
    choices = dict(_lookup(composed, "hydra.runtime.choices") or {})
    groups = group_options()
    top = read_config_file(None, "config")
    lines = [
        "hepad-run trains an anomaly detector on background events only, scores the signal samples and",
        "writes auc.json, figures and scores.h5 into a run directory of its own.",
        "",
        "  hepad-run [group=option ...] [key=value ...]   e.g. hepad-run model=vae model.latent_dim=4",
        "  hepad-run -m key=a,b [...]                     a sweep: one run per value, then a summary",
        "  hepad-run [choices] --help                     this page for the options you chose",
        "  hepad-run [choices] --cfg job                  the composed config; nothing runs",
        '  eval "$(hepad-run -sc install=bash)"           tab completion of groups and keys (bash)',
        "",
        "== Config groups (group=option; * = chosen) ==",
    ]
    presets = []
    # A group chosen as a list (logger=[mlflow,tensorboard]) has no single choice: its options are keys.
    loggers = list(composed.get("logger") or {})
    for group, options in groups.items():
        chosen = loggers if group == "logger" else [choices.get(group)]
        files = {option: read_config_file(group, option) for option in options}
        if all(f is not None and f.is_global for f in files.values()):
            presets.append((group, files))
        names = ", ".join(f"*{o}" if o in chosen else o for o in options)
        note = ""
        if group == "logger":
            note = "  (none by default; several at once: logger=[mlflow,tensorboard])"
        elif chosen == [None]:
            note = "  (none chosen)"
        lines.append(f"{group}: {names}{note}")
    for group, options in groups.items():
        if any(group == g for g, _ in presets):
            continue
        logger_group = group == "logger"
        shown = options if logger_group else [choices.get(group)]
        for option in shown:
            if option is None:
                continue
            lines += ["", f"== {group}={option} ==" if not logger_group else f"== logger={option} =="]
            config = read_config_file(group, option)
            if config is None:
                lines.append(f"  (from another config directory: hepad-run {group}={option} --cfg job)")
                continue
            lines += config.header
            if logger_group:
                values = (
                    composed["logger"]
                    if option in loggers
                    else yaml.safe_load((_conf_root() / group / f"{option}.yaml").read_text())
                )
                lines += _key_lines("logger.", option_keys(group, option), values)
            elif config.is_global:
                # An option that also sets keys of other groups names every key in full.
                lines += _key_lines("", option_keys(group, option), composed)
            else:
                lines += _key_lines(f"{group}.", option_keys(group, option), composed.get(group))
    for group, files in presets:
        lines += ["", f"== {group} (presets; each sets keys of the groups above): {group}=<name> =="]
        for option, config in files.items():
            lines += _wrap(f"{option}: {config.summary()}", "  ")
    if top is not None:
        lines += ["", "== Top-level keys =="]
        lines += _key_lines("", listed_keys(top.keys), composed)
    lines += ["", "Hydra's own flags and groups (launchers, sweepers): hepad-run --hydra-help"]
    # The page goes through string.Template (Hydra's help); a literal $ is written $$.
    return "\n".join(lines).replace("$", "$$") + "\n"
