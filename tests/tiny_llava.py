"""A tiny random LLaVA built from configs, with a local word-level tokenizer: no download needed."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from var_core.models.bundle import ModelBundle
from var_core.models.llava import LlavaAdapter
from var_core.registry import Backbone

WORDS = ("what colour is the square circle red blue green yes no how many shapes are there left right "
         "top bottom where a an of in image picture describe this USER ASSISTANT : ? . ,").split()
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
CHAT_TEMPLATE = (
    "<s>{% for message in messages %}{{ message['role'] | upper }} : "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image> {% else %}{{ part['text'] }} "
    "{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)
IMAGE_SIZE, PATCH = 32, 8
TINY_SINK_DIM = 5


def tiny_processor(image_size: int = IMAGE_SIZE, patch: int = PATCH, extra_words=()) -> LlavaProcessor:
    """The word-level LLaVA processor; `extra_words` get ids after the standard ones (which stay as they are)."""
    vocab = {}
    for token in [*SPECIALS, *WORDS, *extra_words]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def tiny_llava(seed: int = 0, image_size: int = IMAGE_SIZE, patch: int = PATCH, layers: int = 4) -> ModelBundle:
    """2-layer vision tower, `layers`-layer LLaMA (hidden 64, 4 heads, 2 KV heads); (image_size/patch)² visual
    tokens (default 4×4)."""
    processor = tiny_processor(image_size, patch)
    vocab_size = len(processor.tokenizer)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=image_size, patch_size=patch),
        text_config=LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    backbone = Backbone("tiny-llama", 64, (TINY_SINK_DIM,), 2.0, "random test model")
    return ModelBundle(model=model, processor=processor, name="tiny-llava", backbone=backbone,
                       adapter=LlavaAdapter())
