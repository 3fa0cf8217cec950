"""LoRA adapters: a fresh adapter is a no-op, merging gives the unmerged forward, bad files fail loudly."""

import pytest
import torch
from transformers import LlamaConfig, LlamaModel

from var_core.models.lora import PREFIX, PROJECTIONS, LoRALinear, add_lora, load_lora, lora_state, merge_lora

RANK, ALPHA = 4, 8.0


def tiny_decoder(seed=0) -> LlamaModel:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaModel(config).eval()


def test_fresh_adapter_changes_nothing_and_wraps_every_projection():
    decoder, ids = tiny_decoder(), torch.randint(0, 50, (2, 7))
    before = decoder(ids).last_hidden_state
    params = add_lora(decoder, RANK, ALPHA)
    assert len(params) == 2 * 2 * len(PROJECTIONS)
    assert sum(isinstance(m, LoRALinear) for m in decoder.modules()) == 2 * len(PROJECTIONS)
    assert torch.equal(decoder(ids).last_hidden_state, before)  # B starts at zero


def test_merged_forward_equals_the_unmerged_one():
    adapted, ids = tiny_decoder(), torch.randint(0, 50, (2, 7))
    add_lora(adapted, RANK, ALPHA)
    with torch.no_grad():
        for module in adapted.modules():
            if isinstance(module, LoRALinear):
                module.B.normal_(0, 0.05)
    unmerged = adapted(ids).last_hidden_state
    state = lora_state(adapted)
    plain = tiny_decoder()
    base = plain(ids).last_hidden_state
    assert merge_lora(plain, state, ALPHA) == 2 * len(PROJECTIONS)
    merged = plain(ids).last_hidden_state
    assert (merged - base).abs().max() > 1e-2  # the adapters matter …
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)  # … and merging keeps their effect exactly


def test_merge_and_load_refuse_mismatched_files():
    decoder = tiny_decoder()
    with pytest.raises(KeyError, match="unknown projections"):
        merge_lora(decoder, {f"{PREFIX}layers.9.mlp.up_proj.A": torch.zeros(RANK, 32),
                             f"{PREFIX}layers.9.mlp.up_proj.B": torch.zeros(64, RANK)}, ALPHA)
    add_lora(decoder, RANK, ALPHA)
    with pytest.raises(KeyError):
        load_lora(decoder, {})


def test_state_round_trips_through_load():
    source, target = tiny_decoder(), tiny_decoder()
    add_lora(source, RANK, ALPHA)
    add_lora(target, RANK, ALPHA)
    with torch.no_grad():
        for module in source.modules():
            if isinstance(module, LoRALinear):
                module.B.normal_()
    load_lora(target, lora_state(source))
    assert all(torch.equal(a, b) for a, b in zip(lora_state(source).values(), lora_state(target).values()))


def test_adapting_upper_layers_leaves_the_lower_ones_bit_identical():
    """The default model adapts layers 4–29 only, so the layers that make SmolLM2's massive activation stay as
    pretrained: what enters the first adapted layer must not change at all, before or after merging."""
    adapted, plain, ids = tiny_decoder(), tiny_decoder(), torch.randint(0, 50, (2, 7))
    params = add_lora(adapted, RANK, ALPHA, layers=(1,))
    assert len(params) == 2 * len(PROJECTIONS)
    assert all(not isinstance(m, LoRALinear) for m in adapted.layers[0].modules())
    with torch.no_grad():
        for module in adapted.modules():
            if isinstance(module, LoRALinear):
                module.B.normal_(0, 0.05)
    entering = adapted(ids, output_hidden_states=True).hidden_states
    assert merge_lora(plain, lora_state(adapted), ALPHA) == len(PROJECTIONS)
    merged = plain(ids, output_hidden_states=True).hidden_states
    reference = tiny_decoder()(ids, output_hidden_states=True).hidden_states
    assert torch.equal(entering[1], reference[1]) and torch.equal(merged[1], reference[1])
    assert (merged[2] - reference[2]).abs().max() > 1e-2
