"""docs/notebook.py, the notebook walkthrough, runs top to bottom on the default model and does what it says."""

import runpy
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_notebook_walkthrough_runs_and_writes_its_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_OUT", str(tmp_path))
    cells = runpy.run_path(str(ROOT / "docs" / "notebook.py"))
    trace, reloaded = cells["trace"], cells["reloaded"]
    assert reloaded.answer == trace.answer and np.array_equal(reloaded.attn_to_visual, trace.attn_to_visual)
    assert "<img" in cells["analysis"]._repr_html_() and "<img" in cells["explanation"]._repr_html_()
    for name in ("heatmap", "head_grid", "phi_overlay", "phi_by_layer", "head_ranking"):
        assert Image.open(tmp_path / f"{name}.png").size[0] > 200
