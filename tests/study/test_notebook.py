"""``notebooks/walkthrough.ipynb`` runs from top to bottom on phantoms, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "clear the outputs before committing"


@pytest.mark.notebook
@pytest.mark.slow
def test_walkthrough_runs(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel is a new process: one intra-op thread, as conftest gives the other tests (two threads
    # spin-waiting for each other on a busy 2-core machine made the tiny training 15x slower).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Runs in tmp_path: the notebook writes its walkthrough-output/ folder where it is run.
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = tmp_path / "walkthrough-output"
    assert (out / "explore" / "explore.html").is_file()
    assert list((out / "runs").glob("*/eval_test/report.html"))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("test per-patient Dice" in o.get("text", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
