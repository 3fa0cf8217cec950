"""A tiny LLaVA whose text model is Qwen2 with the large q/k biases Qwen2-family LMs carry (Qwen2-VL, InternVL3,
llava-interleave-qwen): built from configs, no download, for half-precision tests.

The bias sits on each head's lowest-frequency RoPE pair (as in the real models, where the constant part that
softmax ignores is large): q·k reaches ~ 2·BIAS² before scaling, past float16's 65,504 and far past what
bfloat16's 8-bit mantissa resolves, while the part that differs between keys stays small.
"""

from __future__ import annotations

import copy

import torch
from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, Qwen2Config

from tests.tiny_llava import IMAGE_SIZE, PATCH, TINY_SINK_DIM, tiny_processor
from var_core.models.bundle import ModelBundle
from var_core.models.llava import LlavaAdapter
from var_core.registry import Backbone

BIAS = 300.0
HEAD_DIM = 64
SHARPNESS = 4.0  # q/k weights scaled up so attention is peaked: a path that loses the key-to-key differences shows


def _plant_biases(model: LlavaForConditionalGeneration) -> None:
    """q and k biases of BIAS on each head's last RoPE pair (dims HEAD_DIM/2 − 1 and HEAD_DIM − 1), where the keys
    carry nothing else (their k_proj rows are zeroed), so the huge product is the same for every key; the other
    q/k weights × SHARPNESS."""
    dims = [HEAD_DIM // 2 - 1, HEAD_DIM - 1]
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            attention = layer.self_attn
            attention.q_proj.weight.mul_(SHARPNESS)
            attention.k_proj.weight.mul_(SHARPNESS)
            for projection in (attention.q_proj, attention.k_proj):
                heads = projection.out_features // HEAD_DIM
                rows = [head * HEAD_DIM + dim for head in range(heads) for dim in dims]
                projection.bias[rows] = BIAS
            attention.k_proj.weight[rows] = 0.0


def planted_bias_llava(dtype: torch.dtype = torch.float32, seed: int = 0, layers: int = 2) -> ModelBundle:
    """The planted-bias model in `dtype` (the same weights for every dtype and seed)."""
    processor = tiny_processor()
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=Qwen2Config(vocab_size=len(processor.tokenizer), hidden_size=2 * HEAD_DIM, intermediate_size=256,
                                num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                                max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _plant_biases(model)
    model = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    backbone = Backbone("tiny-qwen2-planted", 2 * HEAD_DIM, (TINY_SINK_DIM,), 2.0, "random test model, planted q/k biases")
    return ModelBundle(model=model, processor=processor, name=f"tiny-qwen2-llava-{str(dtype)[6:]}",
                       backbone=backbone, adapter=LlavaAdapter())
