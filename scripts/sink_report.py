"""Sink report for the default model: φ over SmolLM2's sink dimension at the visual tokens, every layer, and
how many image-centric heads VAR selects at the app's defaults; both held-out scene families.

φ comes from plain forwards with `output_hidden_states=True` (hidden_states[ℓ] = residual stream entering decoder
layer ℓ), three different questions per image; head counts from `var_core.run.generate` with the default
VARConfig (registry τ, ρ 0.5, visual mass 0.2, p 0.4). Writes assets/sink_report.json.

    python -m scripts.sink_report [--scenes 200] [--var-scenes 50]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from var_core.config import VARConfig
from var_core.eval.heldout import FAMILIES
from var_core.models.default import ASSETS, PATCH_SIZE, load_default_model
from var_core.run import generate
from var_core.scenes import HELDOUT_SEED_BASE, SIZE, ask, object_coverage, render, shape_patches
from var_core.sink import discover_sink_dims, phi

GRID = SIZE // PATCH_SIZE


def scene_questions(scene) -> list[str]:
    """Three questions of different kinds: count, yes/no, caption (the image precedes all of them)."""
    yes_no = ask(scene, "yesno", random.Random(scene.seed)).question
    return ["How many shapes are there?", yes_no, "Describe the image."]


@torch.no_grad()
def measure(bundle, family: str, n_scenes: int, var_scenes: int) -> dict:
    """Per (image, question): φ of every visual token at every layer, φ of position 0, and patch labels; on the
    first var_scenes images, the image-centric (layer, head) pairs a default VAR run selects."""
    dims, tau = bundle.backbone.sink_dims, bundle.backbone.tau
    phis, bos, on_shape, coverage, discovered, selected = [], [], [], [], Counter(), []
    for i in tqdm(range(n_scenes), desc=f"sink report ({family})", mininterval=10):
        scene = FAMILIES[family](HELDOUT_SEED_BASE + i)
        image = render(scene)
        if i < var_scenes:
            trace = generate(bundle, image, scene_questions(scene)[1], config=VARConfig(), max_new_tokens=1)
            selected.append(int(trace.selected.any(-1).sum()))
        per_question = []
        for question in scene_questions(scene):
            prepared = bundle.adapter.prepare(bundle, image, question)
            hidden = bundle.model(**prepared.inputs, output_hidden_states=True).hidden_states[:bundle.num_layers]
            stacked = torch.stack(hidden)[:, 0]  # [L, T, D]
            if i < 20:
                discovered.update(discover_sink_dims(stacked[:, None], top_k=2))
            per_question.append(phi(stacked[:, prepared.visual_positions], dims).numpy())  # [L, 64]
            bos.append(phi(stacked[:, 0], dims).numpy())
        phis.append(np.stack(per_question))  # [Q, L, 64]
        on_shape.append(shape_patches(scene, GRID))
        coverage.append(object_coverage(scene, GRID))
    return {"phi": np.stack(phis), "bos": np.stack(bos), "on_shape": np.stack(on_shape), "tau": tau,
            "coverage": np.stack(coverage),
            "discovered": discovered, "selected_pairs": selected}


def sink_counts(phi_vis: np.ndarray, on_shape: np.ndarray, coverage: np.ndarray, tau: float) -> dict:
    """At threshold τ: how many images have visual sinks (layers 2 … L−2), how many per image, on shapes or on the
    background (strictly: the patch touches no shape's bounding disc; by pixels: shapes paint under half of it),
    and whether each image's sink set is the same for all its questions."""
    n, q, layers, _ = phi_vis.shape
    sinks = phi_vis > tau  # [N, Q, L, 64]
    official = sinks[:, 0, 2:layers - 1].any(1)  # [N, 64]: a sink at some layer 2 … L−2 (the official range)
    on, total = int((official & on_shape).sum()), int(official.sum())
    same = [(sinks[i, 0] == sinks[i, j]).all() for i in range(n) for j in range(1, q)]
    return {
        "tau": tau,
        "images_with_any_visual_sink": int(official.any(-1).sum()),
        "share_of_images_with_a_visual_sink": round(float(official.any(-1).mean()), 3),
        "share_of_sinks_on_background": round((total - on) / max(1, total), 3),
        "share_of_sinks_on_mostly_background_patches": round(int((official & (coverage < 0.5)).sum()) / max(1, total), 3),
        "share_of_sinks_on_patches_without_object_pixels": round(int((official & (coverage == 0)).sum()) / max(1, total), 3),
        "share_of_sinks_at_first_cell": round(int(official[:, 0].sum()) / max(1, total), 3),
        "visual_sinks_per_image": {"mean": round(float(official.sum(-1).mean()), 2),
                                   "max": int(official.sum(-1).max())},
        "layers_with_visual_sinks": [layer for layer in range(layers) if sinks[:, 0, layer].any()],
        "sink_tokens_on_shape_patches": on, "sink_tokens_on_background": total - on,
        "sink_sets_identical_across_questions": f"{sum(same)}/{len(same)}",
        "sink_count_by_grid_position": official.sum(0).reshape(GRID, GRID).tolist(),
    }


def summarise(m: dict, taus: list[float]) -> dict:
    """Numbers for the model card: the φ distribution per layer, then sink counts at each threshold."""
    phi_vis, on_shape = m["phi"], m["on_shape"]  # [N, Q, L, 64], [N, 64]
    n, q, layers, _ = phi_vis.shape
    per_layer = [{
        "layer": layer,
        "visual_phi_max": round(float(phi_vis[:, :, layer].max()), 2),
        "visual_phi_p99": round(float(np.percentile(phi_vis[:, :, layer], 99)), 2),
        "visual_phi_median": round(float(np.median(phi_vis[:, :, layer])), 2),
        "bos_phi_mean": round(float(m["bos"][:, layer].mean()), 2),
    } for layer in range(layers)]
    pairs = np.array(m["selected_pairs"])
    return {
        "scenes": n, "questions_per_image": q, "registry_tau": m["tau"],
        "selected_head_pairs_at_defaults": {"scenes": len(pairs), "median": float(np.median(pairs)),
                                            "min": int(pairs.min()), "max": int(pairs.max()),
                                            "share_with_at_least_5": round(float((pairs >= 5).mean()), 3)},
        "discovered_sink_dims_top2_votes": dict(m["discovered"].most_common()),
        "shape_patch_base_rate": round(float(on_shape.mean()), 3),
        "max_phi_difference_across_questions": float(np.abs(phi_vis - phi_vis[:, :1]).max()),
        "at_tau": [sink_counts(phi_vis, on_shape, m["coverage"], tau) for tau in taus],
        "per_layer": per_layer,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=200, help="held-out scenes per family")
    parser.add_argument("--var-scenes", type=int, default=50, help="of those, how many get a default VAR run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--taus", default="registry",
                        help="thresholds to count sinks at, comma-separated; 'registry' is the model's τ (20)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_default_model()
    taus = [bundle.backbone.tau if t == "registry" else float(t) for t in args.taus.split(",")]
    summary = {family: summarise(measure(bundle, family, args.scenes, args.var_scenes), taus) for family in FAMILIES}
    (ASSETS / "sink_report.json").write_text(json.dumps(summary, indent=1) + "\n")
    for family, numbers in summary.items():
        print(family, json.dumps({k: v for k, v in numbers.items() if k != "per_layer"}, indent=1))
        print("layer  vis_phi_max    p99  median  bos_phi")
        for row in numbers["per_layer"]:
            print(f"{row['layer']:5d}  {row['visual_phi_max']:11.2f} {row['visual_phi_p99']:6.2f} "
                  f"{row['visual_phi_median']:7.2f}  {row['bos_phi_mean']:.2f}")


if __name__ == "__main__":
    main()
