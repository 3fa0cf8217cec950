"""The sub-commands by name, their default options, and how samples are chosen for them."""

from __future__ import annotations

from var_core.eval.answers import ABLATE, MASK, POPE, SWEEP
from var_core.eval.compare import COMPARE, COMPARE_FAMILIES, compare_samples
from var_core.eval.datasets import image_folder, load_pope, synthetic_multi_question, synthetic_pope
from var_core.eval.probes import CONTRIBUTION, SINKS
from var_core.eval.runner import DEFAULTS  # noqa: F401  (re-exported)

EXPERIMENTS = {e.name: e for e in (POPE, ABLATE, SWEEP, MASK, CONTRIBUTION, SINKS, COMPARE)}


def make_samples(experiment: str, n: int, seed: int = 0, pope_file=None, image_dir=None, images=None,
                 per_kind: int | None = None, families=None):
    """The experiment's samples: a user POPE file, an image folder, or the synthetic scenes (n images); `compare`:
    n yes/no questions + per_kind held-out questions of each kind from each scene family in `families` (default:
    the committed comparison's)."""
    if EXPERIMENTS[experiment].dataset == "compare":
        if images is not None:
            raise ValueError("compare scores answers: give --pope-file (with --image-dir), not --images")
        return compare_samples(n, seed, COMPARE.defaults["per_kind"] if per_kind is None else per_kind, pope_file,
                               image_dir, families=families or COMPARE_FAMILIES)
    if pope_file is not None:
        if image_dir is None:
            raise ValueError("--pope-file needs --image-dir (the folder its 'image' names are in)")
        return load_pope(pope_file, image_dir, limit=n)
    if images is not None:
        return image_folder(images, limit=n)
    if EXPERIMENTS[experiment].dataset == "multi":
        return synthetic_multi_question(n, seed)
    return synthetic_pope(n, seed)
