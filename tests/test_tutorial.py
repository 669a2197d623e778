"""docs/tutorial.ipynb runs top to bottom (nbclient, a real kernel) on tiny settings, so it cannot rot."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, TINY_PYTHIA

NOTEBOOK = REPO / "docs" / "tutorial.ipynb"


def test_the_committed_tutorial_has_no_outputs():
    # Outputs hold machine paths, timings and images that go stale with any change: the executed copy
    # is what the test below writes, never the committed file.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.slow
def test_the_tutorial_runs_top_to_bottom(tmp_path, pythia_data_dir, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    # Like papermill: tiny sizes (the samples this test run cached) in a cell right after the parameters.
    tiny = (
        f"EVENTS = {json.dumps(TINY_PYTHIA)}\n"
        'TRAINING = ["trainer.epochs=2", "trainer.batch_size=64", "trainer.progress_bar=false", '
        '"evaluator.n_bootstrap=40"]\n'
    )
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(tiny))
    monkeypatch.setenv("HEPAD_DATA_DIR", str(pythia_data_dir))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    nbformat.write(notebook, tmp_path / "tutorial.executed.ipynb")

    outputs = "\n".join(
        output.get("text", "") + json.dumps(output.get("data", {}))
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "top AUC from scores.h5" in outputs
    assert "sweep " in outputs and ": 2 child runs" in outputs
    # One run and a sweep of two jobs, each in a directory of its own under the notebook's outputs/.
    assert len(list((tmp_path / "outputs").glob("*-*-*/*/auc.json"))) == 1
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*/job*/auc.json"))) == 2
    assert (tmp_path / "outputs" / "mlruns" / "mlflow.db").is_file()
