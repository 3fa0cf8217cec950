"""A second decoding branch for contrastive / guided decoding (VCD, PAI's text-only guidance).

`ContrastBranch` holds the branch's own model inputs (the same prompt with a noised image, or the prompt without
the image) and its own KV cache. On the first call it runs its prefill; on every later call it feeds the tokens the
main branch generated since (one per step under greedy decoding) and returns the branch's next-token logits.
`ContrastProcessor` is the transformers `LogitsProcessor` around it: `combine(scores, branch_logits)` is the method's
formula (the main branch's scores in, the scores generate chooses from out).

The branch runs OUTSIDE the hook's run state (`var_core.hook.outside_run`): no capture, no VAR, no masking and no
intervention act in it, and its attention is transformers' sdpa; the main branch's Trace is untouched by it. Batch 1,
greedy, one `generate` per processor (the run builds a fresh one per request).

Cost: every decoding step runs a second forward pass, so a contrastive run takes about twice the forward passes of
a plain one (two prefills, two passes per new token) and holds a second KV cache of the branch's prompt plus the new
tokens. Before its prefill the branch checks that its own prefill fits in the device's free memory
(`var_core.memory`: its cache and one layer's activations; the main run's estimate does not include the branch) and
refuses with `InsufficientMemory` otherwise.

Models that keep decoding state on the module between calls (Qwen2-VL family: `rope_deltas`, the offset of its
multimodal rotary positions, stored at prefill and read at every decode step) get that state swapped per branch, so
the two branches never read each other's positions.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from transformers import LogitsProcessor

from var_core import memory
from var_core.hook import outside_run

MODULE_STATE = ("rope_deltas",)  # attributes a model keeps between forward calls of one generation


class ContrastBranch:
    """The branch's own prefill and KV cache over `inputs` (model kwargs of batch 1: input_ids, attention_mask,
    pixel_values …); `next_logits(input_ids)` follows the main branch's sequence and returns [1, V] float32 logits
    of the branch's next token. Doubles the forward passes of a run (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, inputs: dict):
        input_ids = inputs["input_ids"]
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"a contrast branch decodes one request at a time: input_ids of shape "
                             f"{tuple(input_ids.shape)}, expected [1, T]")
        self.model = model
        device = next(model.parameters()).device
        self.inputs = {name: value.to(device) if torch.is_tensor(value) else value for name, value in inputs.items()}
        self.prompt_tokens = input_ids.shape[1]
        self.ids = self.inputs["input_ids"]  # the branch's sequence: its prompt, then the main branch's new tokens
        self.main_prompt: int | None = None  # the main branch's prompt length, seen at the first call
        self.kwargs: dict | None = None  # the branch's generation kwargs (cache, mask, positions …) between steps
        self.calls = 0  # forward passes run (prefill included)
        self._state: dict[int, dict[str, object]] = {}  # id(module) → this branch's MODULE_STATE values
        parameters = inspect.signature(model.forward).parameters
        self._keep_one = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self._positions = "position_ids" in parameters and hasattr(model, "_prepare_position_ids_for_generation")

    @property
    def fed(self) -> int:
        """Generated tokens fed to the branch so far."""
        return self.ids.shape[1] - self.prompt_tokens

    def _check_fits(self) -> None:
        shape = memory.model_shape(self.model)
        needs = dataclasses.replace(memory.estimate(shape, self.prompt_tokens, 0), scores=0)  # sdpa: no [T, T]
        memory.check_fits(needs, next(self.model.parameters()).device)

    def _stateful(self):
        return [module for module in self.model.modules() if any(hasattr(module, name) for name in MODULE_STATE)]

    def _step(self, first: bool) -> torch.Tensor:
        """One forward pass of the branch as transformers' generate runs one (its `prepare_inputs_for_generation`
        and `_update_model_kwargs_for_generation`, the code's `prepare_inputs_for_generation_cd` route), with this
        branch's module state swapped in and outside the run state; the new last-token logits [1, V] float32."""
        model, modules = self.model, self._stateful()
        main = {id(m): {n: getattr(m, n) for n in MODULE_STATE if hasattr(m, n)} for m in modules}
        for module in modules:  # this branch's decoding state in, the main branch's out
            for name, value in self._state.get(id(module), {}).items():
                setattr(module, name, value)
        try:
            with outside_run(), torch.no_grad():
                if first:
                    kwargs = {name: value for name, value in self.inputs.items() if name != "input_ids"}
                    kwargs.setdefault("attention_mask", torch.ones_like(self.ids))
                    kwargs["use_cache"] = True
                    if self._positions:
                        kwargs["position_ids"] = model._prepare_position_ids_for_generation(self.ids, dict(kwargs))
                    inputs = model.prepare_inputs_for_generation(self.ids, is_first_iteration=True, **kwargs)
                else:
                    kwargs = self.kwargs
                    inputs = model.prepare_inputs_for_generation(self.ids, next_sequence_length=1, **kwargs)
                output = model(**inputs, return_dict=True, **self._keep_one)
                self.kwargs = model._update_model_kwargs_for_generation(output, kwargs)
        finally:
            for module in modules:
                self._state[id(module)] = {n: getattr(module, n) for n in MODULE_STATE if hasattr(module, n)}
                for name, value in main[id(module)].items():
                    setattr(module, name, value)
        self.calls += 1
        return output.logits[:, -1, :].float()

    def next_logits(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """The branch's next-token logits [1, V] float32 after the main branch's `input_ids` [1, T_main + t]."""
        if input_ids.shape[0] != 1:
            raise ValueError(f"a contrast branch decodes one request at a time, got a batch of {input_ids.shape[0]}")
        if self.kwargs is None:
            self._check_fits()
            self.main_prompt = input_ids.shape[1]
            return self._step(first=True)
        new = input_ids[:, self.main_prompt + self.fed:].to(self.ids.device)
        if new.shape[1] == 0:
            raise ValueError("the main sequence did not grow since the last step: a contrast branch follows one "
                             "generate call (build a new processor per run)")
        for token in new.split(1, dim=1):
            self.ids = torch.cat([self.ids, token], dim=1)
            logits = self._step(first=False)
        return logits


class ContrastProcessor(LogitsProcessor):
    """A `LogitsProcessor` that runs a `ContrastBranch` over `inputs` next to the main branch and returns
    `combine(scores, branch_logits)` (a method's formula, both [1, V]). Doubles the forward passes of a run."""

    def __init__(self, model: torch.nn.Module, inputs: dict, combine):
        self.branch = ContrastBranch(model, inputs)
        self.combine = combine

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        branch = self.branch.next_logits(input_ids).to(scores.device)
        return self.combine(scores.float(), branch).to(scores.dtype)


def without_image(inputs: dict, visual_positions: torch.Tensor) -> dict:
    """The same chat prompt without the image: input_ids (and attention_mask) with the span from the first to the
    last image token removed — every image token and whatever the processor put between them (tile separators,
    row breaks) —, and no image inputs (pixel values, sizes, grids). Markers a family puts around the image
    (Qwen2-VL's vision start/end) stay. As PAI's released code, which splits the prompt at the image placeholder and
    joins the text before and after it (`model_loader.init_cfg_processor`)."""
    ids = inputs["input_ids"]
    first, last = int(visual_positions.min()), int(visual_positions.max())
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[first:last + 1] = False
    text = {"input_ids": ids[:, keep.to(ids.device)]}
    if "attention_mask" in inputs:
        text["attention_mask"] = inputs["attention_mask"][:, keep.to(inputs["attention_mask"].device)]
    return text
