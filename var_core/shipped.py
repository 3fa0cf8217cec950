"""Where the shipped data is: `assets/` (default-model weights, examples) and `results/` (committed full runs).

In a clone they sit at the repository root; a wheel carries them inside the package, as `var_core/_assets` and
`var_core/_results` (pyproject.toml maps them), so an installed package finds them without a clone.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped(folder: str) -> Path:
    """The folder `assets` or `results`: the installed copy inside the package if there is one, else the clone's."""
    installed = PACKAGE / f"_{folder}"
    return installed if installed.is_dir() else PACKAGE.parent / folder
