"""Every notebook in notebooks/ runs top to bottom (so they never rot), is committed clean and
shows its figures: every cell tagged "figure" produces an image/png output under a plain
Jupyter kernel (no backend forced), and `flashsim notebooks` writes them with their outputs.

The kernel is this interpreter (`flashsim.notebooks.python_kernel`: a kernelspec pointing at
sys.executable in a temporary Jupyter path), so the tests work in a fresh venv that only has
ipykernel installed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flashsim import cli
from flashsim import notebooks as nbmod

pytestmark = pytest.mark.notebook
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIGURE_TAG = "figure"
# a cell that draws: pyplot, an Axes, a plot call, or an image shown by hand
DRAWS = re.compile(r"\bplt\.(subplots|figure|plot|scatter|bar|imshow|show)\b|\bax\.|\.plot\("
                   r"|\bImage\(|\bfigure\(")
FORCED_BACKEND = re.compile(r"matplotlib\.use\(|MPLBACKEND|%matplotlib\s+(agg|Agg)\b"
                            r"|pyplot\.switch_backend|plt\.switch_backend")


@pytest.fixture(scope="module")
def kernel_name() -> str:
    with nbmod.python_kernel() as name:
        yield name


def _code(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"device_calibration.ipynb", "layout_comparison.ipynb", "validation.ipynb",
            "end_to_end.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path: Path) -> None:
    for cell in _code(path):
        assert cell.outputs == [], f"{path.name}: a code cell has outputs (strip them)"
        assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_drawing_cells_are_tagged_and_no_backend_is_forced(path: Path) -> None:
    cells = _code(path)
    untagged = [c.source.splitlines()[0] for c in cells
                if DRAWS.search(c.source) and FIGURE_TAG not in c.metadata.get("tags", [])]
    assert not untagged, f"{path.name}: tag these cells {FIGURE_TAG!r}: {untagged}"
    forced = [m.group(0) for c in cells for m in [FORCED_BACKEND.search(c.source)] if m]
    assert not forced, f"{path.name}: a backend is forced ({forced}); the inline one shows"
    assert any(FIGURE_TAG in c.metadata.get("tags", []) for c in cells), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_and_shows_its_figures(path: Path, kernel_name: str) -> None:
    nb = nbmod.execute(path, kernel_name, timeout_s=300)  # CellExecutionError names the cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    # the last cell of each notebook is a result (table or figure), not silence
    assert nb.cells[-1].cell_type != "code" or nb.cells[-1].outputs
    blank = [c.source.splitlines()[0] for c in code if FIGURE_TAG in c.metadata.get("tags", [])
             and not any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert not blank, f"{path.name}: figure cells without an image/png output: {blank}"


@pytest.mark.slow
def test_notebooks_command_writes_one_notebook_with_its_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "notebooks" / "validation.ipynb"
    out = tmp_path / "rendered"
    assert cli.main(["notebooks", str(src), "--out", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["written"] == [str(out / src.name)] and payload["failed"] == []
    assert sorted(p.name for p in out.iterdir()) == [src.name]  # no temp files left
    nb = nbformat.read(out / src.name, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2
    assert nb.metadata["kernelspec"]["name"] == "python3"  # opens in a reader's Jupyter
    assert _code(src)[0].outputs == []  # the source stays clean


def test_notebooks_command_needs_the_dev_extra(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = nbmod.importlib.util.find_spec
    monkeypatch.setattr(nbmod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nbclient" else real(name, *a))
    out = tmp_path / "rendered"
    assert cli.main(["notebooks", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nbclient" in err and "flashsim[dev]" in err
    assert not out.exists()


def test_notebooks_command_refuses_to_write_over_the_notebooks(
        capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "notebooks" / "validation.ipynb"
    assert cli.main(["notebooks", str(src), "--out", str(src.parent)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and len(err.strip().splitlines()) == 1
    assert _code(src)[0].outputs == []


def test_notebooks_command_refuses_a_file_that_is_not_a_notebook(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert cli.main(["notebooks", str(text), "--out", str(tmp_path / "o")]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
