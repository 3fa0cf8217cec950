"""Tiny random models of the families added on the generic path (Qwen3-VL dense and MoE, Gemma 3, LLaVA-OneVision,
SmolVLM2, Mistral-3 and Pixtral-12B's LLaVA; InternVL3.5 is tests/tiny_models.py's InternVL with a Qwen3 LM) and of
PaliGemma, served by the generic path alone; built like tests/tiny_models.py's: config classes, local word-level
tokenizers, the family's own processor classes, no download."""

from __future__ import annotations

import torch

from tests.tiny_models import (IDEFICS_TEMPLATE, NEXT_TEMPLATE, QWEN_MERGE, QWEN_PATCH, bundle, idefics_image_processor,
                               idefics_tokenizer, qwen_ids, qwen_processor, qwen_text, text_kwargs, tiny_idefics3,
                               word_tokenizer)
from var_core.models.common import image_only


# ---------------------------------------------------------------- Qwen3-VL (dense and MoE)
def tiny_qwen3_vl(seed: int = 0, moe: bool = False):
    """Qwen3-VL: Qwen2-VL's merged-patch layout, a learned position embedding in the tower and DeepStack features
    (tower layer 0) added to the first decoder layer's visual positions; with moe=True, 4 experts (2 per token)."""
    import transformers
    from transformers import Qwen3VLProcessor

    from var_core.models.qwen2_vl import Qwen2VLAdapter

    prefix = "Qwen3VLMoe" if moe else "Qwen3VL"
    processor = qwen_processor(Qwen3VLProcessor)
    text = qwen_text(processor.tokenizer) | {"head_dim": 16}
    if moe:
        text |= {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1}
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=QWEN_PATCH,
                           spatial_merge_size=QWEN_MERGE, temporal_patch_size=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]),
        text_config=text, **qwen_ids(processor.tokenizer))
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    return bundle(model, processor, f"tiny-{prefix.lower()}", Qwen2VLAdapter())


# ---------------------------------------------------------------- Gemma 3
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                  "<end_of_image>", "<image_soft_token>", "\n\n"]
GEMMA_TEMPLATE = (
    "<bos>{% for message in messages %}<start_of_turn>{{ message['role'] }} "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<start_of_image>"
    "{% else %}{{ part['text'] }} {% endif %}{% endfor %}<end_of_turn> {% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model {% endif %}"
)
GEMMA_SIZE, GEMMA_PATCH, GEMMA_TOKENS = 32, 4, 16  # 8 × 8 patches average-pooled 2 × 2 → 4 × 4 = 16 tokens


def tiny_gemma3(seed: int = 0, sliding_window: int = 600):
    """Gemma 3: a SigLIP tower, patches average-pooled to 4 × 4 soft tokens between <start_of_image> and
    <end_of_image>; layers alternate sliding-window and full attention (the window holds a prompt and the longest
    answer, as Gemma-3-4B's 1,024 does for one image); image tokens attend bidirectionally."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor,
                              Gemma3TextConfig, SiglipVisionConfig)

    from var_core.models.gemma3 import Gemma3Adapter

    tokenizer = word_tokenizer(GEMMA_SPECIALS, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                               extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                                     "image_token": "<image_soft_token>"})
    image_processor = Gemma3ImageProcessorPil(size={"height": GEMMA_SIZE, "width": GEMMA_SIZE})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=GEMMA_TOKENS,
                                chat_template=GEMMA_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(**text_kwargs(len(tokenizer), head_dim=16, query_pre_attn_scalar=16,
                                          sliding_window=sliding_window,
                                          layer_types=["sliding_attention", "full_attention"] * 2, pad_token_id=0,
                                          eos_token_id=ids("<end_of_turn>"), bos_token_id=ids("<bos>")))
    config = Gemma3Config(
        text_config=text,
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=GEMMA_SIZE, patch_size=GEMMA_PATCH),
        mm_tokens_per_image=GEMMA_TOKENS, boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"), image_token_index=ids("<image_soft_token>"))
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight)  # zeros by its init
    return bundle(model, processor, "tiny-gemma3", Gemma3Adapter())


# ---------------------------------------------------------------- LLaVA-OneVision
ONEVISION_SPECIALS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
ONEVISION_SIZE, ONEVISION_PATCH = 32, 8  # base view 4 × 4 patches (SigLIP: no CLS token)
ONEVISION_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def tiny_llava_onevision(seed: int = 0):
    """LLaVA-OneVision: LLaVA-NeXT's anyres layout (base view, then the unpadded tiles with a newline per row) on a
    SigLIP tower and a Qwen2 LM; "full" feature strategy."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor, Qwen2Config, SiglipVisionConfig)

    from var_core.models.llava_next import LlavaOnevisionAdapter

    tokenizer = word_tokenizer(ONEVISION_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": ONEVISION_SIZE, "width": ONEVISION_SIZE},
                                                      image_grid_pinpoints=ONEVISION_PINPOINTS)
    processor = image_only(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=(ONEVISION_SIZE // ONEVISION_PATCH) ** 2,
        vision_feature_select_strategy="full", chat_template=NEXT_TEMPLATE.replace("<s>", ""))
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=ONEVISION_SIZE, patch_size=ONEVISION_PATCH),
        text_config=Qwen2Config(**text_kwargs(len(tokenizer), pad_token_id=0, eos_token_id=ids("<|im_end|>"))),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"), image_grid_pinpoints=ONEVISION_PINPOINTS,
        vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(seed)
    return bundle(LlavaOnevisionForConditionalGeneration(config), processor, "tiny-llava-onevision",
                  LlavaOnevisionAdapter())


# ---------------------------------------------------------------- SmolVLM2
def tiny_smolvlm2(seed: int = 0):
    """SmolVLM2 (`smolvlm`): SmolVLM's model classes with SmolVLM's own processor (image-only: no torchvision)."""
    from transformers import SmolVLMImageProcessorPil, SmolVLMProcessor

    processor = image_only(SmolVLMProcessor)(image_processor=idefics_image_processor(SmolVLMImageProcessorPil),
                                             tokenizer=idefics_tokenizer(), image_seq_len=16,
                                             chat_template=IDEFICS_TEMPLATE)
    return tiny_idefics3(seed, smolvlm=True, processor=processor)



# ---------------------------------------------------------------- PaliGemma: no family adapter, the generic path
PALIGEMMA_TEMPLATE = ("{% for message in messages %}{% for part in message['content'] %}"
                      "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
                      "{% endfor %}")


def tiny_paligemma(seed: int = 0):
    """PaliGemma: image tokens first (a prefix attended bidirectionally), then BOS and the prompt; a Gemma LM. No
    family adapter knows its grid: it is served by the generic path."""
    from transformers import (GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessorPil, SiglipVisionConfig)

    from var_core.models.generic import GenericAdapter

    tokenizer = word_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos_token="<bos>", eos_token="<eos>",
                               pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": GEMMA_SIZE, "width": GEMMA_SIZE})
    image_processor.image_seq_length = (GEMMA_SIZE // GEMMA_PATCH) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   chat_template=PALIGEMMA_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=GEMMA_SIZE, patch_size=GEMMA_PATCH,
                                         projection_dim=64),
        text_config=GemmaConfig(**text_kwargs(len(tokenizer), head_dim=16, pad_token_id=0, eos_token_id=1,
                                              bos_token_id=2)),
        image_token_index=ids("<image>"), projection_dim=64, hidden_size=64, vocab_size=len(tokenizer))
    torch.manual_seed(seed)
    return bundle(PaliGemmaForConditionalGeneration(config), processor, "tiny-paligemma", GenericAdapter())


# ---------------------------------------------------------------- Mistral-3 and Pixtral (LLaVA)
MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
MISTRAL_TEMPLATE = (  # Mistral's layout: [INST], the image, the question, [/INST]
    "<s>{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}[IMG] {% else %}{{ part['text'] }} "
    "{% endif %}{% endfor %}[/INST]{% else %}{{ message['content'][0]['text'] }} </s>{% endif %}{% endfor %}"
)
MISTRAL_PATCH, MISTRAL_MERGE, MISTRAL_EDGE = 4, 2, 48  # 8-px merged tokens, longest edge 48 px: at most 6 × 6


def mistral_tokenizer():
    return word_tokenizer(MISTRAL_SPECIALS, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_pixtral_processor(patch: int, merge: int, edge: int):
    """`PixtralProcessor` on the PIL image processor (`var_core.models.mistral3.pixtral_processor`: no torchvision)."""
    from transformers import PixtralImageProcessorPil

    from var_core.models.mistral3 import pixtral_processor as processor_class

    image_processor = PixtralImageProcessorPil(size={"longest_edge": edge},
                                               patch_size={"height": patch, "width": patch})
    return processor_class()(image_processor=image_processor, tokenizer=mistral_tokenizer(), patch_size=patch,
                             spatial_merge_size=merge, chat_template=MISTRAL_TEMPLATE)


def pixtral_vision(patch: int, edge: int):
    from transformers import PixtralVisionConfig

    return PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               head_dim=16, patch_size=patch, image_size=edge)


def mistral_text(tokenizer, sliding_window: int | None):
    from transformers import MistralConfig

    ids = tokenizer.convert_tokens_to_ids
    return MistralConfig(**text_kwargs(len(tokenizer), head_dim=16, sliding_window=sliding_window,
                                       pad_token_id=ids("<pad>"), bos_token_id=ids("<s>"), eos_token_id=ids("</s>")))


def tiny_mistral3(seed: int = 0, sliding_window: int | None = None, edge: int = MISTRAL_EDGE):
    """Mistral-3 (Mistral-Small-3.1's layout): a Pixtral tower (2-D rope over 4-px patches), the patch merger folding
    2 × 2 patches into one token, a Mistral LM; the image resized within `edge` px keeping its aspect ratio, one row
    of [IMG] per 8 px closed by [IMG_BREAK], the last by [IMG_END]. No sliding window, as on the hub."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    from var_core.models.mistral3 import Mistral3Adapter

    processor = tiny_pixtral_processor(MISTRAL_PATCH, MISTRAL_MERGE, edge)
    config = Mistral3Config(vision_config=pixtral_vision(MISTRAL_PATCH, edge),
                            text_config=mistral_text(processor.tokenizer, sliding_window),
                            image_token_index=processor.image_token_id, spatial_merge_size=MISTRAL_MERGE,
                            tie_word_embeddings=False)
    torch.manual_seed(seed)
    return bundle(Mistral3ForConditionalGeneration(config), processor, "tiny-mistral3", Mistral3Adapter())


PIXTRAL_PATCH, PIXTRAL_EDGE = 8, 48  # one 8-px patch per token (no merger), longest edge 48 px


def tiny_pixtral_llava(seed: int = 0):
    """Pixtral-12B (`LlavaForConditionalGeneration` with a Pixtral tower, mistral-community/pixtral-12b's layout):
    every patch a token (no merger), the "full" feature strategy (Pixtral has no CLS token), a Mistral LM."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from var_core.models.mistral3 import PixtralLlavaAdapter

    processor = tiny_pixtral_processor(PIXTRAL_PATCH, 1, PIXTRAL_EDGE)
    config = LlavaConfig(vision_config=pixtral_vision(PIXTRAL_PATCH, PIXTRAL_EDGE),
                         text_config=mistral_text(processor.tokenizer, None),
                         image_token_index=processor.image_token_id, vision_feature_select_strategy="full",
                         vision_feature_layer=-1, projector_hidden_act="gelu", tie_word_embeddings=False)
    torch.manual_seed(seed)
    return bundle(LlavaForConditionalGeneration(config), processor, "tiny-pixtral-llava", PixtralLlavaAdapter())


def localise_pixtral_tower(vision: torch.nn.Module) -> int:
    """`localise_vision_tower` for the Pixtral tower, whose blocks sit under `transformer.layers` (no "encoder" in
    their names): zero each block's attention output and MLP output projections, so every patch depends on its own
    pixels only. Returns how many projections were zeroed."""
    count = 0
    for name, module in vision.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("transformer.layers.") and \
                name.rsplit(".", 1)[-1] in ("o_proj", "down_proj"):
            torch.nn.init.zeros_(module.weight)
            count += 1
    return count
