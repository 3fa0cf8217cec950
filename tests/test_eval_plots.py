"""Result plots: every one the same 4:3 size (a gallery shows each whole, at one scale) with all its text inside."""

import json

import pytest

from var_core.eval.experiments import EXPERIMENTS
from var_core.eval.plots import SIZE
from var_core.eval.runner import finish
from var_core.shipped import shipped
from viz.figures import figure_image

SAMPLES = 6  # the committed full runs' first samples: every plot drawn from real records, in a second


def replotted(name: str) -> dict:
    """The plots of the committed full run of `name`, from the records of its first SAMPLES samples."""
    folder = shipped("results") / name
    meta = json.loads((folder / "experiment.json").read_text())
    with (folder / "records.jsonl").open() as file:
        records = [record for record in map(json.loads, file) if record["index"] < SAMPLES]
    return finish(EXPERIMENTS[name], records, meta["options"], meta).figures


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_plot_is_4_by_3_with_its_text_inside(name):
    for stem, figure in replotted(name).items():
        image = figure_image(figure)
        assert image.size == (round(SIZE[0] * 100), round(SIZE[1] * 100)), stem
        drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches, around everything drawn
        assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= SIZE[0] and drawn.y1 <= SIZE[1], (stem, drawn)
