"""The layering docs/design.md describes, checked on the source: imports point down, capabilities are
declared (never sniffed), and the repository explains itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hepad_cli"
REPO = PACKAGE.parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("data", ("hepad_cli.evaluation", "hepad_cli.models", "hepad_cli.experiment")),
        ("models", ("hepad_cli.experiment",)),
        ("evaluation", ("hepad_cli.experiment",)),
    ],
)
def test_imports_point_down(layer, forbidden):
    offending = {
        str(path.relative_to(REPO)): sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        for path in (PACKAGE / layer).glob("*.py")
    }
    assert not {k: v for k, v in offending.items() if v}


def test_pipeline_and_evaluator_ask_declared_capabilities_not_hasattr():
    for path in [PACKAGE / "experiment.py", *(PACKAGE / "evaluation").glob("*.py")]:
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr")
        ]
        assert not [c for c in calls if "detector" in ast.unparse(c)], path


def test_no_file_sends_the_reader_outside_the_repository():
    tracked = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".toml")]
    skipped = {".venv", "build", ".git", "outputs", "data", ".pytest_cache"}
    tracked = [p for p in tracked if p.relative_to(REPO).parts[0] not in skipped]
    assert tracked
    mentions = [str(p.relative_to(REPO)) for p in tracked if "DESIGN" + ".md" in p.read_text(errors="ignore")]
    assert mentions == []
    assert (REPO / "docs" / "design.md").is_file()
