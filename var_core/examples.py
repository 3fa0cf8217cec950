"""The example images shipped with the package (the app's Examples), by name: in a clone and in an installed wheel.

    from var_core import examples
    examples.names()                              # ['demo_three_shapes', 'scene_08', …]
    picture = examples.image("demo_three_shapes")  # an RGB PIL image; examples.path(name) is its PNG file
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from var_core.shipped import shipped

FOLDER = shipped("assets") / "examples"  # its examples.json lists the images, in the app's order


def _files() -> dict[str, str]:
    """Example name (the file's stem) → its file name in FOLDER, in examples.json's order."""
    listing = json.loads((FOLDER / "examples.json").read_text())
    return {Path(item["file"]).stem: item["file"] for item in listing}


def names() -> list[str]:
    """The shipped examples' names, in the order the app shows them."""
    return list(_files())


def path(name: str) -> Path:
    """The PNG file of example `name`; a ValueError lists the names for an unknown one."""
    files = _files()
    if name not in files:
        raise ValueError(f"unknown example {name!r}; the shipped examples are: {', '.join(files)}")
    return FOLDER / files[name]


def image(name: str) -> Image.Image:
    """Example `name` as an RGB PIL image (read in full, so no file stays open)."""
    with Image.open(path(name)) as picture:
        return picture.convert("RGB")
