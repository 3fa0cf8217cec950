"""The model bundle: what every model loader returns and what `var_core.run` consumes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from var_core.layout import TokenLayout, check_every_token_once, raster, whole_view
from var_core.registry import Backbone


@dataclass
class PreparedInputs:
    """One (image, prompt) pair turned into model inputs, plus where every visual token lies on the picture.

    inputs: keyword arguments for `model.generate` / `model(...)` (input_ids, attention_mask, pixel_values, ...).
    visual_positions: [N_vis] indices into input_ids of every visual token (VAR's I_vis), token order.
    grid: (rows, cols) of the canvas of token cells drawn over `image`.
    image: [H, W, 3] uint8: the image as the model sees it (after resize/crop), or for tiled models the canvas of
        `var_core.layout` (tiles in place, the global view beside them).
    cells: [rows, cols] index into `visual_positions` of the token drawn at each cell, `var_core.layout.HOLE` where
        none; None = a single view in raster order. Every visual token is drawn exactly once (checked).
    views: the named boxes of the canvas (`var_core.layout.TokenLayout.views`); None = the whole image only.
    seen: what the model saw, for the UI and `Trace.settings["seen"]` (`var_core.models.common.seen_record`):
        original_size and input_size [w, h] (the global view; tiled models add "tiles"), resized (bool), cropped and
        padded (None or a sentence), visual_tokens, visual_token_budget, preset ("hub" or "paper");
        `var_core.models.common.describe_seen` turns it into one sentence.
    """

    inputs: dict[str, torch.Tensor]
    visual_positions: torch.Tensor
    grid: tuple[int, int]
    image: np.ndarray
    seen: dict = field(default_factory=dict)
    cells: np.ndarray | None = None
    views: list[dict] | None = None

    def __post_init__(self):
        rows, cols = self.grid
        if self.cells is None:
            if len(self.visual_positions) != rows * cols:
                raise ValueError(f"grid {self.grid} needs {rows * cols} visual tokens, got {len(self.visual_positions)}")
            self.cells = raster(rows * cols, rows, cols)
        if tuple(self.cells.shape) != tuple(self.grid):
            raise ValueError(f"cells {self.cells.shape} do not match grid {self.grid}")
        check_every_token_once(self.cells, len(self.visual_positions))
        self.views = self.views or [whole_view(rows, cols)]

    @classmethod
    def laid_out(cls, inputs: dict, visual_positions: torch.Tensor, layout: TokenLayout, seen: dict) -> "PreparedInputs":
        """Inputs whose visual tokens are drawn on `layout`'s canvas (`var_core.layout.compose`)."""
        return cls(inputs=inputs, visual_positions=visual_positions, grid=tuple(layout.cells.shape), image=layout.image,
                   seen=seen, cells=layout.cells, views=layout.views)


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
