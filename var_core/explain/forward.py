"""One forward pass over the prompt, traced for the row that predicts the first answer token."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from var_core.config import VARConfig
from var_core.explain.rules import head_mean_product, relevancy_row
from var_core.hook import attention_hook
from var_core.images import prepare_image
from var_core.interventions.base import Intervention
from var_core.limits import Deadline
from var_core.models.bundle import ModelBundle
from var_core.run import clean_prompt, prepare_run


@dataclass
class AnswerForward:
    """What one forward pass gives for the answer row (the last prompt token, whose logits give the first answer
    token), over every visual token [N_grid] in token order. All tensors on the CPU, float32.

    attention: [L, N_grid] that row's attention to the grid, mean over heads, as the model used it (after VAR).
    logits: [N_grid] the answer token's logit read from each grid token's final hidden state (after the final
    norm, through the LM head). relevancy: [N_grid] the Chefer row, or None when gradients were not taken.
    sink_patches: [N_grid] bool, grid tokens that are visual sinks (φ > τ) in any layer VAR may act on.
    """

    answer_id: int
    answer_token: str
    attention: torch.Tensor
    logits: torch.Tensor
    relevancy: torch.Tensor | None
    sink_patches: torch.Tensor
    grid: tuple[int, int]
    image: np.ndarray
    cells: np.ndarray  # [rows, cols] index into the visual tokens drawn at each grid cell (`var_core.layout`)


def answer_id(bundle: ModelBundle, logits: torch.Tensor, answer: str | None) -> int:
    """The first answer token: the greedy choice from `logits` [V], or the first token of `answer` (control
    characters dropped, as from prompts)."""
    if answer is None:
        return int(logits.argmax())
    ids = bundle.tokenizer(clean_prompt(answer).strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the answer is empty: give the answer text to explain, or None for the model's own")
    return int(ids[0])


@contextmanager
def _weights_frozen(model: torch.nn.Module):
    """No weight requires grad for the duration (restored after): the backward then keeps and computes only what
    the attention gradients need, not the vision tower's activations or any weight gradient."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            if not parameter.is_inference():  # accelerate's offload swaps weights in and out under inference mode
                parameter.requires_grad_(True)


@contextmanager
def _gradient_leaf(first_layer: torch.nn.Module, leaves: list):
    """Make the hidden states entering the first decoder layer a leaf that requires grad, so every attention map
    above it joins the autograd graph (also when the weights are frozen); the leaf goes into `leaves`."""
    def hook(module, args, kwargs):
        if args:
            leaves.append(args[0].detach().requires_grad_())
            return (leaves[-1], *args[1:]), kwargs
        leaves.append(kwargs["hidden_states"].detach().requires_grad_())
        return args, {**kwargs, "hidden_states": leaves[-1]}
    handle = first_layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.enable_grad():
            yield
    finally:
        handle.remove()


def _token_logits(bundle: ModelBundle, hidden: torch.Tensor, grid: torch.Tensor, token: int) -> torch.Tensor:
    """[N_grid] float32: `token`'s logit read from each grid token's final hidden state [T, D] through the LM head's
    row for that token (the LM head as a plain linear map, as in every supported family)."""
    head = bundle.model.get_output_embeddings()
    with torch.no_grad():
        values = hidden[grid.to(hidden.device)].float() @ head.weight[token].to(hidden.device).float()
        if head.bias is not None:
            values = values + head.bias[token].to(hidden.device).float()
    return values.cpu()


def answer_forward(bundle: ModelBundle, image, prompt: str, config: VARConfig | None = None,
                   answer: str | None = None, gradients: bool = False, deadline: Deadline | None = None,
                   intervention: Intervention | None = None) -> AnswerForward:
    """Run the prompt once (VAR active when `config` is given, another method's attention changes when
    `intervention` is, `var_core.interventions`) and read the answer row's attention and logits.
    `image`: anything `var_core.images.prepare_image` accepts (a path, PIL image or array).

    gradients=True also takes the gradient of the answer token's logit with respect to every layer's attention
    (one backward pass); `deadline` (`var_core.limits`) ends either pass within one layer. No layer's attention is kept for it: the hook saves q, k, v and recomputes each layer's
    attention in the backward, one layer at a time, where its gradient is reduced at once to Chefer's Ā [T, T].
    Memory beyond a plain forward: what autograd keeps for the other ops (≈ L·T·D·c activations), L·T² float32 for
    the Ā, and one layer's recomputation (≈ 16·H·T² bytes: float32 scores, softmax, VAR's copy, their gradient),
    whatever the depth (`tests/test_explain_memory.py`).
    """
    prepared, state = prepare_run(bundle, prepare_image(image), prompt, config, capture=False, explanation=gradients,
                                  deadline=deadline, intervention=intervention)
    grid = state.grid_positions
    attention: dict[int, torch.Tensor] = {}
    products: dict[int, torch.Tensor] = {}

    def observe(layer: int, weights: torch.Tensor) -> None:
        attention[layer] = weights[0, :, -1].detach().index_select(-1, grid.to(weights.device)).float().mean(0).cpu()

    def attention_gradient(layer: int, weights: torch.Tensor, gradient: torch.Tensor) -> None:
        products[layer] = head_mean_product(gradient, weights)

    state.observe = observe
    if gradients:
        state.attention_gradient = attention_gradient
    layers = bundle.adapter.decoder_layers(bundle.model)
    inputs = {k: v.to(bundle.device) for k, v in prepared.inputs.items()}
    leaves: list[torch.Tensor] = []
    grad_mode = _gradient_leaf(layers[0], leaves) if gradients else torch.inference_mode()
    final: list[torch.Tensor] = []  # the decoder's final (normed) hidden states [1, T, D]
    norm = bundle.model.get_decoder().norm.register_forward_hook(lambda module, args, output: final.append(output))
    try:
        with bundle.lock, _weights_frozen(bundle.model), attention_hook(bundle.model, layers, state), grad_mode:
            logits = bundle.model(**inputs, logits_to_keep=1).logits[0, -1]  # the answer row only: not T × V logits
            token = answer_id(bundle, logits.detach(), answer)
            if gradients:
                torch.autograd.grad(logits[token], leaves)
    finally:
        norm.remove()
    grid = grid.cpu()
    relevancy = None
    if gradients:  # layers may sit on several devices: Ā products meet on the first one
        device = products[0].device
        relevancy = relevancy_row([products[layer].to(device) for layer in range(len(layers))], -1).cpu()[grid]
    var_layers = state.selection.resolve_layers(bundle.num_layers)  # the run's VAR layers, or the default ones
    sinks = torch.stack([state.sink_masks[layer][0].cpu() for layer in var_layers]).any(0) if var_layers else None
    return AnswerForward(
        answer_id=token, answer_token=bundle.tokenizer.decode([token]),
        attention=torch.stack([attention[layer] for layer in range(len(layers))]),
        logits=_token_logits(bundle, final[0][0].detach(), grid, token), relevancy=relevancy,
        sink_patches=(sinks[grid] if sinks is not None else torch.zeros(len(grid), dtype=torch.bool)).cpu(),
        grid=tuple(prepared.grid), image=prepared.image, cells=prepared.cells)
