"""docs/notebook.py run as a Jupyter notebook in a headless kernel, with no `%matplotlib inline`: every cell that
ends on a view displays it as an image."""

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
VIEWS = {"heatmap", "grid", "phi_layers", "ranking"}  # PIL images and matplotlib Figures: image/png
SUMMARIES = {"analysis", "explanation"}  # their _repr_html_ holds an inline <img>


def notebook(script: Path) -> nbformat.NotebookNode:
    """The `# %%` cells of a script as a notebook (markdown cells without their leading '# ')."""
    cells = []
    for chunk in re.split(r"^# %%", script.read_text(), flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        if header.strip() == "[markdown]":
            cells.append(nbformat.v4.new_markdown_cell(re.sub(r"^# ?", "", body, flags=re.M).strip()))
        else:
            cells.append(nbformat.v4.new_code_cell(body.strip()))
    return nbformat.v4.new_notebook(cells=cells)


def shown(book: nbformat.NotebookNode) -> dict[str, dict]:
    """The last line of every cell that displays a result → that result's data by MIME type."""
    return {cell.source.splitlines()[-1]: output["data"] for cell in book.cells if cell.cell_type == "code"
            for output in cell.outputs if output["output_type"] == "execute_result"}


def test_every_view_in_the_walkthrough_displays_as_an_image(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_OUT", str(tmp_path))  # the kernel inherits it
    book = notebook(ROOT / "docs" / "notebook.py")
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    results = shown(book)
    assert set(results) == VIEWS | SUMMARIES
    for name in VIEWS:
        assert "image/png" in results[name], f"{name} displays only as {results[name]['text/plain']}"
    for name in SUMMARIES:
        assert "<img" in results[name]["text/html"]
