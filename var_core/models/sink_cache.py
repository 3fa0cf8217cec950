"""Sink dimensions of backbones the registry does not know: found by `discover_sink_dims` on one calibration
forward and cached as JSON under `${VAR_CACHE_DIR:-~/.cache/visual-sink-lens}/sink_dims`.

The cache is keyed by the weights themselves (`weights_key`: the config and every parameter's sum and norm), not by
the model's name or folder, so new weights saved where old ones were are measured again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from var_core.config import VARConfig
from var_core.models.bundle import ModelBundle
from var_core.registry import Backbone, default_tau

CALIBRATION_PROMPT = "Describe the image in detail."
FINGERPRINT_DIGITS = 6  # significant digits of each parameter's sum and norm in the cache key
VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash"})
KEY_CHARS = 16  # hex digits of the key in the file name


def cache_dir() -> Path:
    """$VAR_CACHE_DIR, else ~/.cache/visual-sink-lens (shared with the default model's cache)."""
    return Path(os.environ.get("VAR_CACHE_DIR") or Path.home() / ".cache" / "visual-sink-lens")


def calibration_image(size: int = 448) -> Image.Image:
    """A plain scene — flat background, two shapes — of the kind whose background patches become sinks."""
    pixels = np.full((size, size, 3), 200, dtype=np.uint8)
    pixels[size // 6: size // 2, size // 6: size // 2] = (200, 30, 30)
    yy, xx = np.mgrid[:size, :size]
    pixels[(yy - 2 * size // 3) ** 2 + (xx - 2 * size // 3) ** 2 < (size // 6) ** 2] = (30, 60, 200)
    return Image.fromarray(pixels)


def _stable(value):
    """A config dict without what changes when the same weights are loaded elsewhere (path, dtype, version)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE_CONFIG_KEYS}
    return value


def _fingerprint(tensor: torch.Tensor) -> str:
    """Sum and L2 norm of `tensor` to FINGERPRINT_DIGITS significant digits (a reduction on its own device, no
    float32 copy); only its shape when it is not materialised (offloaded to the meta device)."""
    if tensor.is_meta:
        return str(tuple(tensor.shape))
    values = tensor.detach() if tensor.is_floating_point() else tensor.detach().float()  # quantised storage
    total, norm = values.sum(dtype=torch.float32), torch.linalg.vector_norm(values, dtype=torch.float32)
    return f"{tuple(tensor.shape)}:{float(total):.{FINGERPRINT_DIGITS}g}:{float(norm):.{FINGERPRINT_DIGITS}g}"


def weights_key(model: torch.nn.Module) -> str:
    """Hex digest of `model`'s config (less path, dtype, version) and a fingerprint of every parameter: the identity
    of the weights, whatever name or folder they were loaded from. It reads every weight once, far less work than
    the calibration forward it saves."""
    digest = hashlib.sha256(json.dumps(_stable(model.config.to_dict()), sort_keys=True, default=str).encode())
    for name, parameter in model.named_parameters():
        digest.update(f"{name}={_fingerprint(parameter)};".encode())
    return digest.hexdigest()


def sink_cache_path(model_id: str, key: str) -> Path:
    """The cache file of weights `key` (`weights_key`); the name leads the file name so a person can find it."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip("-.")
    return cache_dir() / "sink_dims" / f"{slug}--{key[:KEY_CHARS]}.json"


def calibration_warning(record: dict, tau: float) -> str | None:
    """A warning when the calibration image had no visual sink at `tau` in the default VAR layers (VAR would do
    nothing on images like it), from the per-layer largest visual φ the cache record keeps; None otherwise."""
    peaks = record.get("calibration_visual_phi")
    if not peaks:
        return None
    layers = list(VARConfig().resolve_layers(len(peaks))) or list(range(len(peaks)))
    largest = max(peaks[layer] for layer in layers)
    if largest > tau:
        return None
    return (f"no visual sink at τ = {tau:g} on the calibration image in layers {layers[0]}–{layers[-1]} (largest "
            f"visual φ there: {largest:.2f}, sink dims {record['sink_dims']}): VAR will do nothing on images like it; "
            f"pass a τ below {largest:.2f} (wrap(..., tau=…) or VARConfig(tau=…))")


def _calibrate(bundle: ModelBundle) -> tuple[list[int], list[float]]:
    """(sink dims, [L] largest φ of a visual token entering each layer) from one calibration forward."""
    from var_core.sink import discover_sink_dims, phi

    prepared = bundle.adapter.prepare(bundle, calibration_image(), CALIBRATION_PROMPT)
    inputs = {k: v.to(bundle.device) for k, v in prepared.inputs.items()}
    hidden = bundle.model(**inputs, output_hidden_states=True).hidden_states
    dims = [int(d) for d in discover_sink_dims(hidden)]
    visual = prepared.visual_positions
    peaks = [float(phi(state[0, visual.to(state.device)], dims).max()) for state in hidden[:bundle.num_layers]]
    return dims, peaks


@torch.no_grad()
def discover_backbone(bundle: ModelBundle, backbone_name: str) -> tuple[Backbone, Path, bool, dict]:
    """Sink dims of an unregistered backbone: the cache's for these weights if there, else `discover_sink_dims` on
    one calibration forward (output_hidden_states), written to the cache. Returns (backbone, cache path, from_cache,
    cache record)."""
    from var_core.sink import MAX_SINK_DIMS

    hidden_size = bundle.text_config.hidden_size
    key = weights_key(bundle.model)
    path = sink_cache_path(bundle.name, key)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("weights_key") == key and cached.get("hidden_size") == hidden_size and cached.get("sink_dims"):
            return Backbone(backbone_name, hidden_size, tuple(cached["sink_dims"]), float(cached["tau"]),
                            cached["source"]), path, True, cached
    dims, peaks = _calibrate(bundle)
    tau = default_tau(hidden_size)
    source = (f"discovered at first load of {bundle.name}: var_core.sink.discover_sink_dims ({len(dims)} dim(s): those "
              f"before the largest drop in score among the strongest {MAX_SINK_DIMS + 1}) on one calibration forward "
              f"(synthetic two-shape image, prompt {CALIBRATION_PROMPT!r}); "
              f"τ = min(20, 0.8·√{hidden_size}) by the registry rule; cached in {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"model_id": bundle.name, "backbone": backbone_name, "hidden_size": hidden_size, "sink_dims": dims,
              "tau": tau, "source": source, "weights_key": key, "calibration_visual_phi": peaks,
              "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    staging = path.with_suffix(f".tmp-{os.getpid()}")
    staging.write_text(json.dumps(record, indent=1))
    staging.replace(path)
    return Backbone(backbone_name, hidden_size, tuple(dims), tau, source), path, False, record
