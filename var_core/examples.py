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


def _listing() -> dict[str, dict]:
    """Example name (the file's stem) → its examples.json entry (file, prompt), in that file's order."""
    listing = json.loads((FOLDER / "examples.json").read_text())
    return {Path(item["file"]).stem: item for item in listing}


def names() -> list[str]:
    """The shipped examples' names, in the order the app shows them."""
    return list(_listing())


def path(name: str) -> Path:
    """The PNG file of example `name`; a ValueError lists the names for an unknown one."""
    return FOLDER / _entry(name)["file"]


def prompt(name: str) -> str:
    """The question the app pairs with example `name`."""
    return _entry(name)["prompt"]


def _entry(name: str) -> dict:
    listing = _listing()
    if name not in listing:
        raise ValueError(f"unknown example {name!r}; the shipped examples are: {', '.join(listing)}")
    return listing[name]


def image(name: str) -> Image.Image:
    """Example `name` as an RGB PIL image (read in full, so no file stays open)."""
    with Image.open(path(name)) as picture:
        return picture.convert("RGB")
