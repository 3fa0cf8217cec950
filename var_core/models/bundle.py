"""The model bundle: what every model loader returns and what `var_core.run` consumes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from var_core.registry import Backbone


@dataclass
class PreparedInputs:
    """One (image, prompt) pair turned into model inputs, plus where the image went.

    inputs: keyword arguments for `model.generate` / `model(...)` (input_ids, attention_mask, pixel_values, ...).
    visual_positions: [N_vis] indices into input_ids of every visual token (VAR's I_vis).
    grid: (rows, cols) of the patch grid drawn over `image`.
    grid_positions: [rows * cols] the visual tokens that form that grid, in raster order; None = all of
        `visual_positions` (a plain single-grid model). Tiled models (extra tiles, thumbnails, row separators)
        draw one grid and keep the other visual tokens in VAR only.
    image: [H, W, 3] uint8, the image as the model sees it (after resize/crop), for overlays.
    seen: what the model saw, for the UI and `Trace.settings["seen"]` (`var_core.models.common.seen_record`):
        original_size and input_size [w, h] (the drawn view; tiled models add "tiles"), resized (bool), cropped and
        padded (None or a sentence), visual_tokens, visual_token_budget, preset ("hub" or "paper");
        `var_core.models.common.describe_seen` turns it into one sentence.
    """

    inputs: dict[str, torch.Tensor]
    visual_positions: torch.Tensor
    grid: tuple[int, int]
    image: np.ndarray
    grid_positions: torch.Tensor | None = None
    seen: dict = field(default_factory=dict)

    def __post_init__(self):
        drawn = self.visual_positions if self.grid_positions is None else self.grid_positions
        if len(drawn) != self.grid[0] * self.grid[1]:
            raise ValueError(f"grid {self.grid} needs {self.grid[0] * self.grid[1]} visual tokens, got {len(drawn)}")


class Adapter(Protocol):
    """What a model family must answer so one code path serves all families."""

    family: str

    def prepare(self, bundle: "ModelBundle", image: Image.Image, prompt: str) -> PreparedInputs: ...

    def decoder_layers(self, model: torch.nn.Module) -> torch.nn.ModuleList: ...


@dataclass
class ModelBundle:
    """A loaded model with everything needed to run and explain it."""

    model: torch.nn.Module
    processor: Any
    name: str
    backbone: Backbone
    adapter: Adapter
    extra: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one run at a time per model

    @property
    def tokenizer(self):
        """The processor's tokenizer (a processor that is itself a tokenizer is returned as is)."""
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return self.text_config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.text_config.num_attention_heads

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
