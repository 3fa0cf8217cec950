"""Relevancy's autograd memory: attention-sized saved tensors must not grow with depth (each layer's attention is
recomputed in the backward), measured with autograd's saved-tensor hooks."""

import gc
import weakref

import torch

from tests.tiny_llava import tiny_llava
from var_core.config import VARConfig
from var_core.explain import explain, relevancy

PROMPT = "what colour is the square ?"
VAR = VARConfig(p=0.6, tau=1.0, rho=0.0, min_visual_mass=0.0, layers=(0, 1, 2, 3))


class SavedAttentionBytes:
    """Live and peak bytes of [.., T, T] tensors that autograd holds for a backward (freed when autograd drops them)."""

    def __init__(self, tokens: int):
        self.tokens, self.live, self.peak, self.count = tokens, 0, 0, 0

    def _free(self, size: int) -> None:
        self.live -= size

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() >= 2 and tensor.shape[-1] == tensor.shape[-2] == self.tokens:
            size = tensor.numel() * tensor.element_size()
            self.live, self.count = self.live + size, self.count + 1
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._free, size)
        return tensor


def peak_saved_attention(layers: int, noise_image, config=None) -> tuple[int, int]:
    bundle = tiny_llava(layers=layers)
    tokens = bundle.adapter.prepare(bundle, noise_image, PROMPT).inputs["input_ids"].shape[1]
    saved = SavedAttentionBytes(tokens)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        relevancy(bundle, noise_image, PROMPT, config)
    return saved.peak, saved.count


def test_relevancy_keeps_one_layers_attention_at_a_time(noise_image):
    for config in (None, VAR):
        shallow, counted = peak_saved_attention(4, noise_image, config)
        deep, _ = peak_saved_attention(16, noise_image, config)
        assert counted > 0  # the hooks see the recomputation's attention-sized tensors
        assert deep <= 1.5 * shallow, (shallow, deep)


def live_tensors() -> int:
    gc.collect()
    return sum(1 for item in gc.get_objects() if isinstance(item, torch.Tensor))


def test_explanations_leave_no_tensor_behind(tiny_bundle, noise_image):
    """30 explanations in a row: every one's autograd graph and run state are freed (they once formed an uncollectable cycle:
    ≈ 20 MiB kept per explanation of the default model)."""
    for config in (None, VAR):
        explain(tiny_bundle, noise_image, PROMPT, config)
        before = live_tensors()
        for _ in range(30):
            explain(tiny_bundle, noise_image, PROMPT, config)
        assert live_tensors() == before


def saved_bytes(bundle, noise_image) -> int:
    """All bytes autograd is handed to keep during one relevancy."""
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel() * tensor.element_size())
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        relevancy(bundle, noise_image, PROMPT)
    return sum(sizes)


def test_trainable_weights_are_frozen_for_the_backward_and_restored(noise_image):
    """A model a user wrapped with trainable weights (the hub loader does not freeze them) keeps no more for the
    backward than a frozen one (no vision-tower activations), and is trainable again afterwards."""
    bundle = tiny_llava()
    frozen = saved_bytes(bundle.model.requires_grad_(False) and bundle, noise_image)
    bundle.model.requires_grad_(True)
    assert saved_bytes(bundle, noise_image) == frozen
    assert all(parameter.requires_grad for parameter in bundle.model.parameters())
