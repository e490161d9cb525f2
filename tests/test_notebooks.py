"""The notebooks are part of the product: each runs top to bottom on the shipped sample and
draws its figures; the committed copies carry no outputs (they stay diff-friendly)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # a cluster, an S3 server or a kernel per test: make test-fast leaves them out

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
FIGURES = {"01-dedup-ratios": 4, "02-chunk-sizes": 3, "03-async-upload": 2, "04-layers": 3, "05-cache-slice": 4, "06-store-models": 2}
PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "notebooks"


def test_the_six_notebooks_are_there() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_takes_its_corpus_as_a_parameter(path: Path) -> None:
    """Papermill's convention: one cell tagged ``parameters``, here setting ``CORPUS`` among others."""
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "CORPUS = " in tagged[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_is_published_executed_on_the_slice(path: Path) -> None:
    """docs/notebooks/<name>.html: run on the slice, saying by which command at which commit."""
    page = PUBLISHED / f"{path.stem}.html"
    assert page.is_file(), f"run .venv/bin/python scripts/publish-notebooks.py {path.stem}"
    html = page.read_text()
    assert f"scripts/publish-notebooks.py {path.stem}" in html and "debian-cache" in html
    assert "<strong>Answer.</strong>" in html  # the answer cell ran and its Markdown rendered
    assert "output_error" not in html  # nbconvert's class for a cell that raised


def test_parameters_are_injected_after_the_tagged_cell() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish", Path(__file__).resolve().parent.parent / "scripts" / "publish-notebooks.py")
    assert spec and spec.loader
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("CORPUS = 'pypi-sample'\nRUNS = 5", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(CORPUS)"),
    ])  # fmt: skip
    cells = publish.inject_parameters(notebook, {"CORPUS": "../build/datasets/debian-cache"}).cells
    assert [c.source for c in cells][1:3] == ["CORPUS = 'pypi-sample'\nRUNS = 5", "# Injected parameters\nCORPUS = '../build/datasets/debian-cache'"]
    with pytest.raises(SystemExit, match="parameters"):
        publish.inject_parameters(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), {"CORPUS": "x"})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip the outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_draws(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORELAB_NOTEBOOK_WORK", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= FIGURES[path.stem], f"{path.name} drew {len(images)} figures"
    first = notebook.cells[0].source
    assert "**Question.**" in first
    answer = notebook.cells[-1].outputs[-1]["data"]["text/markdown"]
    assert "**Answer.**" in answer and "nan" not in answer.lower().split()
