"""View 3: φ overlay frames exactly the sink cells; the per-layer strip counts visual sinks."""

import numpy as np
from PIL import Image

from tests.synthetic_trace import synthetic_trace
from viz.colors import OUTLINE
from viz.sinks import frame_cells, phi_overlay, sink_count_strip, visual_sink_counts


def test_frame_sits_on_the_sink_cell_of_a_non_square_grid():
    cells = np.zeros((3, 5), bool)
    cells[2, 1] = True
    image = np.asarray(frame_cells(Image.new("RGB", (500, 300), "white"), cells, (3, 5), width=2))
    ys, xs = np.nonzero((image == OUTLINE).all(-1))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (200, 299, 100, 199)


def test_overlay_frames_only_the_planted_sink():
    trace = synthetic_trace(grid=(3, 5), sink=(1, 3))
    out = np.asarray(phi_overlay(trace, 2, short_side=300))
    panel = out[-300:, :500]
    ys, xs = np.nonzero((panel == OUTLINE).all(-1))
    assert ys.min() >= 100 and ys.max() < 200 and xs.min() >= 300 and xs.max() < 400
    assert not (np.asarray(phi_overlay(trace, 0, short_side=300))[-300:, :500] == OUTLINE).all(-1).any()


def test_counts_per_layer_and_strip_bars():
    trace = synthetic_trace(layers=4)
    assert visual_sink_counts(trace).tolist() == [0, 1, 1, 1]
    figure = sink_count_strip(trace, layer=2)
    heights = [path.vertices[:, 1].max() for path in figure.axes[0].collections[0].get_paths()]
    assert heights == [0, 1, 1, 1]
