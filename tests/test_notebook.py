"""notebooks/explore.ipynb: committed without outputs, and runs top to bottom on a small set.

The run uses the notebook's own defaults path (synthetic set written by the notebook, tiny model
trained inside it), with smaller parameters injected after the tagged parameters cell, the way
papermill does. The kernel is this interpreter, through a kernelspec written into ``tmp_path``,
so it sees exactly the packages of the environment running the tests.
"""

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"
KERNEL_NAME = "nail-segformer-test"
# About half a minute of kernel time on 2 CPU cores; 16 photos leave 2 for validation and 2 for
# test with the default split fractions.
TEST_PARAMETERS = {"N_SYNTHETIC": 16, "SEED": 0, "DEMO_EPOCHS": 2, "DEMO_IMAGE_SIZE": 64}


def _read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def _parameters_index(notebook) -> int:
    tagged = [
        i
        for i, cell in enumerate(notebook.cells)
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(tagged) == 1, "explore.ipynb needs exactly one cell tagged 'parameters'"
    return tagged[0]


def test_committed_notebook_is_valid_and_has_no_outputs():
    notebook = _read_notebook()
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] for cell in code_cells), "strip outputs (nbstripout)"
    assert all(cell.execution_count is None for cell in code_cells), "strip execution counts"


def test_parameters_cell_is_the_first_code_cell():
    notebook = _read_notebook()
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    assert _parameters_index(notebook) == first_code


def _write_kernelspec(jupyter_path: Path) -> None:
    spec_dir = jupyter_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nail_segformer tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def test_notebook_runs_on_synthetic_data(tmp_path, monkeypatch):
    notebook = _read_notebook()
    output_dir = tmp_path / "output"
    overrides = {"OUTPUT_DIR": str(output_dir), **TEST_PARAMETERS}
    injected = nbformat.v4.new_code_cell(
        "\n".join(f"{name} = {value!r}" for name, value in overrides.items()),
        metadata={"tags": ["injected-parameters"]},
    )
    notebook.cells.insert(_parameters_index(notebook) + 1, injected)

    _write_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    kernel_cwd = tmp_path / "cwd"
    kernel_cwd.mkdir()
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=300,
        resources={"metadata": {"path": str(kernel_cwd)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell

    images = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert images >= 8, f"expected a figure per plotting cell, got {images}"
    [curve_cell] = [c for c in notebook.cells if "threshold_curve(" in c.source]
    assert any("image/png" in o.get("data", {}) for o in curve_cell.outputs)  # the threshold plot
    assert (output_dir / "demo-run" / "model.safetensors").is_file()
    assert list(kernel_cwd.iterdir()) == [], "the notebook must write only under OUTPUT_DIR"
