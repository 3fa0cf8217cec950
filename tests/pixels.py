"""Finding a rendered part inside a composed view, pixel for pixel (view tests)."""

import numpy as np

from viz.canvas import BACKGROUND


def find(image: np.ndarray, part: np.ndarray) -> tuple[int, int]:
    """(y, x) of the top-left corner where `part` appears exactly in `image`."""
    ay, ax = np.argwhere((part != BACKGROUND).any(-1))[0]
    for y, x in np.argwhere((image == part[ay, ax]).all(-1)) - (ay, ax):
        if (image[y:y + part.shape[0], x:x + part.shape[1]] == part).all():
            return int(y), int(x)
    raise AssertionError("part not found in image")
