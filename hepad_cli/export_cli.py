"""hepad-export: the Hydra entry point of the export (conf/export.yaml). Thin on purpose: compose, then hand
over to exporting.export.

The output directory is ``<run_dir>/export/<date>_<time>_<tag>/``, beside the run it exports. When
run_dir is not a finished run, Hydra is given a directory in the system's temporary folder instead, so
that a refused export creates nothing under the user's paths; a refusal removes the directory it got.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("hepad_cli")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_PROCESS_TAG = secrets.token_hex(3)
# A fixed-point type as a shell passes it (ap_fixed<16,6>) is not valid Hydra override syntax ('<' and
# the comma): main() quotes each one that is not quoted yet.
_UNQUOTED_FIXED_TYPE = re.compile(r"(?<!['\"])(ap_u?fixed<[^<>]*>)(?!['\"])")


def export_directory(run_dir: object) -> str:
    from hepad_cli.runs import run_status

    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if run_dir is not None and run_status(Path(str(run_dir))) == "complete":
        return str(Path(str(run_dir)) / "export" / f"{stamp}_{_PROCESS_TAG}")
    return str(Path(tempfile.gettempdir()) / f"hepad-export-refused-{stamp}_{_PROCESS_TAG}")


OmegaConf.register_new_resolver("export_dir", export_directory, use_cache=True, replace=True)


def quote_fixed_point_types(arguments: list[str]) -> list[str]:
    """precision=ap_fixed<16,6> → precision='ap_fixed<16,6>' (and inside lists), for Hydra's parser."""
    return [
        _UNQUOTED_FIXED_TYPE.sub(r"'\1'", argument)
        if "=" in argument and not argument.startswith("-")
        else argument
        for argument in arguments
    ]


@hydra.main(version_base="1.3", config_path="pkg://hepad_cli.conf", config_name="export")
def app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from hepad_cli.errors import user_errors
    from hepad_cli.export import ExportError
    from hepad_cli.exporting import export

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        report = export(cfg, out_dir, list(hydra_cfg.overrides.task))
    except Exception as error:
        known = (
            isinstance(error, (*user_errors(), ExportError)) or getattr(error, "errno", None) == errno.ENOSPC
        )
        started = (out_dir / "status.json").is_file()
        if not started:
            _discard(out_dir)
        if not known:
            raise
        log.error("%s", error)
        print(f"hepad-export: error: {error}", file=sys.stderr)
        if started:
            print(f"hepad-export: the export is marked failed in {out_dir / 'status.json'}", file=sys.stderr)
        raise SystemExit(1) from None
    for name, entry in report.get("precisions", {}).items():
        for warning in entry.get("warnings", []):
            print(f"hepad-export: warning: {name}: {warning}", file=sys.stderr)
        comparison = entry.get("comparison")
        if comparison:
            aucs = ", ".join(
                f"{signal} AUC {r['auc_float']:.3f} → {r['auc_fixed']:.3f}"
                for signal, r in comparison["signals"].items()
            )
            print(f"hepad-export: {name}: {aucs}", file=sys.stderr)
    if "comparison" in report:
        aucs = ", ".join(
            f"{signal} AUC {r['auc_float']:.3f} → {r['auc_numpy']:.3f}"
            for signal, r in report["comparison"]["signals"].items()
        )
        print(f"hepad-export: numpy: {aucs}", file=sys.stderr)
    print(f"hepad-export: results in {out_dir.resolve()}", file=sys.stderr)


def _discard(out_dir: Path) -> None:
    """Remove the directory of an export refused before it wrote anything (only Hydra's own files)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    parent = out_dir.parent
    if parent.name == "export":
        try:
            parent.rmdir()  # only if no earlier export lives there
        except OSError:
            pass


def main() -> None:
    sys.argv[1:] = quote_fixed_point_types(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
