"""Tiny random models of every supported family, built from config classes with local tokenizers and
processors: no download, seconds to build. Shared by tests/test_models_<family>.py.

Each builder returns a `ModelBundle` whose processor was assembled from local pieces (the family's image
processor class constructed directly, a `tokenizers` word-level tokenizer carrying the family's special tokens,
a chat-template string in the family's layout).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from var_core.models.bundle import ModelBundle
from var_core.models.common import image_only
from var_core.registry import Backbone

WORDS = ("what colour is the square circle red blue green yes no how many shapes are there left right "
         "top bottom where a an of in image picture describe this user assistant system USER ASSISTANT "
         ": ? . ,").split()
TINY_SINK_DIM = 5
TINY_BACKBONE = Backbone("tiny-random", 64, (TINY_SINK_DIM,), 2.0, "random test model")


def word_tokenizer(specials: list[str], **named_tokens) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: `specials` first (ids 0…), then WORDS; `named_tokens` become attributes
    (bos_token=..., extra_special_tokens={...}). Special tokens match inside words, as in real tokenizers."""
    vocab = {}
    for token in [*specials, *WORDS]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **named_tokens)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t != "<unk>"]})
    return tokenizer


def text_kwargs(vocab_size: int, **extra) -> dict:
    """The shared tiny decoder shape: 4 layers, hidden 64, 4 heads, 2 KV heads."""
    return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **extra)


def bundle(model, processor, name: str, adapter) -> ModelBundle:
    return ModelBundle(model=model.eval(), processor=processor, name=name, backbone=TINY_BACKBONE, adapter=adapter)


def noise_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8"))


# ---------------------------------------------------------------- LLaVA-NeXT
NEXT_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
NEXT_TEMPLATE = (
    "<s>{% for message in messages %}{{ message['role'] | upper }} : "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image> \n{% else %}{{ part['text'] }} "
    "{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)
NEXT_SIZE, NEXT_PATCH = 32, 8  # base view 4 × 4 patches
NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def tiny_llava_next(seed: int = 0) -> ModelBundle:
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessorPil, LlavaNextProcessor)

    from var_core.models.llava_next import LlavaNextAdapter

    tokenizer = word_tokenizer(NEXT_SPECIALS, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                               extra_special_tokens={"image_token": "<image>"})
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": NEXT_SIZE}, crop_size={"height": NEXT_SIZE, "width": NEXT_SIZE},
        image_grid_pinpoints=NEXT_PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=NEXT_PATCH,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=NEXT_TEMPLATE)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=NEXT_SIZE, patch_size=NEXT_PATCH),
        text_config=LlamaConfig(**text_kwargs(len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=NEXT_PINPOINTS,
        vision_feature_select_strategy="default", vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    return bundle(LlavaNextForConditionalGeneration(config), processor, "tiny-llava-next", LlavaNextAdapter())


# ---------------------------------------------------------------- checks shared by every family's tests
LOCAL_OUTPUTS = {"out_proj", "proj", "projection_layer", "o_proj", "fc2", "down_proj", "linear_fc2"}


def localise_vision_tower(vision: torch.nn.Module) -> int:
    """Zero the residual branches (attention output and MLP output projections) of every encoder block, so each
    visual token depends only on its own pixels: a perturbed image cell then changes only its own token(s).
    Returns how many projections were zeroed."""
    count = 0
    for name, module in vision.named_modules():
        parts = name.split(".")
        if isinstance(module, torch.nn.Linear) and parts[-1] in LOCAL_OUTPUTS and (
                "encoder" in parts or "blocks" in parts):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
            count += 1
    for name, param in vision.named_parameters():  # InternVL's layer scale
        if name.rsplit(".", 1)[-1] in ("lambda_1", "lambda_2"):
            torch.nn.init.zeros_(param)
    return count


@torch.no_grad()
def decoder_inputs(bundle: ModelBundle, inputs: dict) -> torch.Tensor:
    """[T, D] hidden states entering decoder layer 0 (token embeddings with the image features merged in)."""
    seen = {}

    def grab(module, args, kwargs):
        seen["x"] = (args[0] if args else kwargs["hidden_states"])[0].detach().clone()

    handle = bundle.adapter.decoder_layers(bundle.model)[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        bundle.model(**inputs)
    finally:
        handle.remove()
    return seen["x"]


def replaced_positions(bundle: ModelBundle, inputs: dict) -> torch.Tensor:
    """Positions whose decoder input is not the plain embedding of their token id: where image features went."""
    merged = decoder_inputs(bundle, inputs)
    plain = bundle.model.get_input_embeddings()(inputs["input_ids"])[0]
    return ((merged - plain).abs().amax(-1) > 0).nonzero().flatten()


def perturb_cell(image: Image.Image, grid: tuple[int, int], row: int, col: int) -> Image.Image:
    """A copy of `image` with the centre of grid cell (row, col) flipped to its complement; the grid is laid over
    the whole image (the grid view of every family is the whole image resized)."""
    pixels = np.array(image).copy()
    height, width = pixels.shape[:2]
    top, bottom = row * height // grid[0], (row + 1) * height // grid[0]
    left, right = col * width // grid[1], (col + 1) * width // grid[1]
    dy, dx = max((bottom - top) // 4, 1), max((right - left) // 4, 1)
    cy, cx = (top + bottom) // 2, (left + right) // 2
    pixels[cy - dy:cy + dy, cx - dx:cx + dx] = 255 - pixels[cy - dy:cy + dy, cx - dx:cx + dx]
    return Image.fromarray(pixels)


def view_cells(prepared, view: str | None = None) -> np.ndarray:
    """[rows, cols] the token index of each cell of the canvas box `view` (None: the whole canvas)."""
    from var_core.layout import view_box

    top, left, bottom, right = view_box(prepared.views, view)
    return prepared.cells[top:bottom, left:right]


def most_changed_grid_cell(bundle: ModelBundle, image: Image.Image, prompt: str, row: int, col: int,
                           view: str | None = None) -> int:
    """Perturb cell (row, col) of the image, the image divided like the cells of `view` (None: the whole canvas),
    and return the raster index, within that view, of the cell whose token changed most in the decoder's input.
    With a localised vision tower it must be row * cols + col: the view's tokens lie where they are drawn."""
    prepared = bundle.adapter.prepare(bundle, image, prompt)
    cells = view_cells(prepared, view)
    changed = bundle.adapter.prepare(bundle, perturb_cell(image, cells.shape, row, col), prompt)
    delta = (decoder_inputs(bundle, changed.inputs) - decoder_inputs(bundle, prepared.inputs)).abs().amax(-1)
    values = delta[prepared.visual_positions].numpy()
    return int(np.where(cells >= 0, values[np.maximum(cells, 0)], -np.inf).argmax())


class AttentionSpy:
    """Counts which attention modules call our registered attention function (delegating to it) while active."""

    def __init__(self):
        self.calls: dict[str, int] = {}

    def __enter__(self):
        from transformers import AttentionInterface

        from var_core.hook import ATTENTION_NAME, var_attention_forward

        def spy(module, *args, **kwargs):
            key = type(module).__name__
            self.calls[key] = self.calls.get(key, 0) + 1
            return var_attention_forward(module, *args, **kwargs)

        self._name, self._original = ATTENTION_NAME, var_attention_forward
        AttentionInterface.register(ATTENTION_NAME, spy)
        return self

    def __exit__(self, *exc):
        from transformers import AttentionInterface

        AttentionInterface.register(self._name, self._original)


def hook_state(bundle: ModelBundle, prepared, var=None, tau: float = 1.0):
    """A RunState for direct forward passes through the hook (all layers VAR'd when `var` is given)."""
    from var_core.config import VARConfig
    from var_core.hook import RunState

    visual = torch.zeros_like(prepared.inputs["input_ids"], dtype=torch.bool)
    visual[0, prepared.visual_positions] = True
    return RunState(visual_mask=visual, query_start=int(prepared.visual_positions.max()) + 1,
                    sink_dims=bundle.backbone.sink_dims, tau=tau, selection=var or VARConfig(), var=var,
                    grid_positions=prepared.visual_positions,
                    var_layers=frozenset(range(bundle.num_layers)) if var else frozenset())


@torch.no_grad()
def eager_and_hooked_logits(bundle: ModelBundle, prepared, var, tau: float = 1.0):
    """(un-hooked eager logits, hooked logits, RunState) for one prefill forward."""
    from var_core.hook import attention_hook

    bundle.model.set_attn_implementation("eager")
    reference = bundle.model(**prepared.inputs).logits
    state = hook_state(bundle, prepared, var, tau)
    with attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state):
        hooked = bundle.model(**prepared.inputs).logits
    return reference, hooked, state


@torch.no_grad()
def eager_and_hooked_generation(bundle: ModelBundle, prepared, var, tau: float = 1.0, new_tokens: int = 4):
    """`model.generate` scores (one [vocab] row per step) un-hooked eager vs hooked, plus the RunState:
    proves the hook is exact through prefill AND cached decode steps (incl. 3D rope position ids)."""
    from var_core.hook import attention_hook

    args = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, output_scores=True,
                return_dict_in_generate=True, pad_token_id=0)
    bundle.model.set_attn_implementation("eager")
    reference = bundle.model.generate(**prepared.inputs, **args)
    state = hook_state(bundle, prepared, var, tau)
    with attention_hook(bundle.model, bundle.adapter.decoder_layers(bundle.model), state):
        hooked = bundle.model.generate(**prepared.inputs, **args)
    return torch.stack(reference.scores), torch.stack(hooked.scores), reference.sequences, hooked.sequences, state


def check_p_zero_hook_equals_eager(bundle: ModelBundle, prepared, attention_class: str) -> None:
    """With p = 0 the hooked prefill equals eager, only the LM's `attention_class` goes through the hook (the
    vision tower keeps its own attention), and some visual token is a sink at τ = 1."""
    from var_core.config import VARConfig

    with AttentionSpy() as spy:
        reference, hooked, state = eager_and_hooked_logits(bundle, prepared, VARConfig(p=0.0))
    assert torch.allclose(hooked, reference, atol=1e-5)
    assert spy.calls == {attention_class: bundle.num_layers}
    assert any(mask[0, prepared.visual_positions].any() for mask in state.sink_masks.values())


def check_p_zero_hook_exact_through_generate(bundle: ModelBundle, prepared) -> None:
    """Same tokens and scores through `generate`'s cached decode steps (and 3D rope positions where used)."""
    from var_core.config import VARConfig

    reference, hooked, ref_ids, hooked_ids, _ = eager_and_hooked_generation(bundle, prepared, VARConfig(p=0.0))
    assert torch.equal(ref_ids, hooked_ids) and torch.allclose(hooked, reference, atol=1e-5)


def check_var_changes_logits_after_the_image_only(bundle: ModelBundle, prepared) -> None:
    """VAR (p = 0.9, τ = 1) leaves every position up to the last visual token alone and changes the text after."""
    from var_core.config import VARConfig

    reference, hooked, _ = eager_and_hooked_logits(bundle, prepared, VARConfig(p=0.9), tau=1.0)
    start = int(prepared.visual_positions.max()) + 1
    assert torch.allclose(hooked[:, :start], reference[:, :start], atol=1e-5)
    assert not torch.allclose(hooked[:, start:], reference[:, start:], atol=1e-4)


# ---------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL
QWEN_SPECIALS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
QWEN_PATCH, QWEN_MERGE = 4, 2  # one merged token per 8 × 8 pixels


def qwen_processor(processor_class):
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = word_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(patch_size=QWEN_PATCH, merge_size=QWEN_MERGE, temporal_patch_size=2,
                                               min_pixels=16 * 16, max_pixels=64 * 64)
    return image_only(processor_class)(image_processor=image_processor, tokenizer=tokenizer,
                                       chat_template=QWEN_TEMPLATE)


def qwen_ids(tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def qwen_text(tokenizer) -> dict:
    # head_dim 16 → 8 rotary frequencies split over (temporal, height, width)
    return text_kwargs(len(tokenizer), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                        "mrope_section": [2, 3, 3]},
                       pad_token_id=0, bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))


def tiny_qwen2_vl(seed: int = 0) -> ModelBundle:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    from var_core.models.qwen2_vl import Qwen2VLAdapter

    processor = qwen_processor(Qwen2VLProcessor)
    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=QWEN_PATCH,
                           spatial_merge_size=QWEN_MERGE, temporal_patch_size=2),
        text_config=qwen_text(processor.tokenizer), **qwen_ids(processor.tokenizer))
    torch.manual_seed(seed)
    return bundle(Qwen2VLForConditionalGeneration(config), processor, "tiny-qwen2-vl", Qwen2VLAdapter())


def tiny_qwen2_5_vl(seed: int = 0) -> ModelBundle:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    from var_core.models.qwen2_vl import Qwen2VLAdapter

    processor = qwen_processor(Qwen2_5_VLProcessor)
    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=QWEN_PATCH,
                           spatial_merge_size=QWEN_MERGE, temporal_patch_size=2, window_size=16,
                           out_hidden_size=64, fullatt_block_indexes=[1]),
        text_config=qwen_text(processor.tokenizer), **qwen_ids(processor.tokenizer))
    torch.manual_seed(seed)
    return bundle(Qwen2_5_VLForConditionalGeneration(config), processor, "tiny-qwen2.5-vl", Qwen2VLAdapter())


# ---------------------------------------------------------------- InternVL (-hf format)
INTERNVL_SPECIALS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
                     "<video>"]
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<IMG_CONTEXT> "
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
INTERNVL_TILE, INTERNVL_PATCH = 32, 4  # 8 × 8 patches per tile, pixel-shuffled to 4 × 4 = 16 tokens


def tiny_internvl(seed: int = 0, text_config_class=None, **text_extra) -> ModelBundle:
    """InternVL3-hf (a Qwen2 LM; InternVL3.5-hf passes Qwen3's or GPT-OSS's config class and its extra fields)."""
    from transformers import (GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVisionConfig, Qwen2Config)

    from var_core.models.internvl import InternVLAdapter

    tokenizer = word_tokenizer(INTERNVL_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                                     "context_image_token": "<IMG_CONTEXT>",
                                                     "video_token": "<video>"})
    image_processor = GotOcr2ImageProcessorPil(size={"height": INTERNVL_TILE, "width": INTERNVL_TILE},
                                               crop_to_patches=True, min_patches=1, max_patches=4)
    processor = image_only(InternVLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                              image_seq_length=16, chat_template=INTERNVL_TEMPLATE)
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=64, image_size=INTERNVL_TILE, patch_size=INTERNVL_PATCH),
        text_config=(text_config_class or Qwen2Config)(**text_kwargs(
            len(tokenizer), pad_token_id=0, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), **text_extra)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=16,
    )
    torch.manual_seed(seed)
    return bundle(InternVLForConditionalGeneration(config), processor, "tiny-internvl", InternVLAdapter())


# ---------------------------------------------------------------- Idefics3 / SmolVLM
IDEFICS_SPECIALS = (["<|endoftext|>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>",
                     "<end_of_utterance>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])
IDEFICS_TEMPLATE = (
    "<|endoftext|>{% for message in messages %}{{ message['role'] }} : "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }} {% endif %}{% endfor %}<end_of_utterance> {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)
IDEFICS_TILE, IDEFICS_PATCH = 32, 4  # 8 × 8 patches per frame, pixel-shuffled by 2 to 4 × 4 = 16 tokens


def idefics_tokenizer():
    return word_tokenizer(IDEFICS_SPECIALS, eos_token="<end_of_utterance>", pad_token="<|endoftext|>")


def idefics_image_processor(image_processor_class):
    """A 64-px longest edge split into 32-px tiles (Idefics3's and SmolVLM's image processors take the same)."""
    return image_processor_class(size={"longest_edge": 2 * IDEFICS_TILE}, max_image_size={"longest_edge": IDEFICS_TILE},
                                 do_image_splitting=True)


def tiny_idefics3(seed: int = 0, smolvlm: bool = False, processor=None) -> ModelBundle:
    """Idefics3 (or, with smolvlm=True, SmolVLM's model classes: same image layout): images resized to a 64-px
    longest edge, split into 2 × 2 tiles of 32 px + a 32-px global image. The processor is Idefics3's unless one
    is given (tests/tiny_families.py's SmolVLM2 passes SmolVLM's own)."""
    import transformers
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor, LlamaConfig

    from var_core.models.idefics3 import Idefics3Adapter

    prefix = "SmolVLM" if smolvlm else "Idefics3"
    processor = processor or Idefics3Processor(image_processor=idefics_image_processor(Idefics3ImageProcessorPil),
                                               tokenizer=idefics_tokenizer(), image_seq_len=16,
                                               chat_template=IDEFICS_TEMPLATE)
    tokenizer = processor.tokenizer
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=getattr(transformers, f"{prefix}VisionConfig")(hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, image_size=IDEFICS_TILE, patch_size=IDEFICS_PATCH),
        text_config=LlamaConfig(**text_kwargs(len(tokenizer), pad_token_id=0, bos_token_id=0,
                                              eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_utterance>"))),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    return bundle(model, processor, f"tiny-{prefix.lower()}", Idefics3Adapter())


# ---------------------------------------------------------------- LLaVA-1.5 with the paper's prompt words
def tiny_vicuna_llava(seed: int = 0) -> ModelBundle:
    """tests/tiny_llava.py's LLaVA (32-px CLIP processor: resize + centre-crop, 4 × 4 tokens) whose word-level
    tokenizer also knows every word of LLaVA's vicuna_v1 prompt, so the "paper" preset tokenizes without <unk>."""
    from tests.tiny_llava import tiny_llava, tiny_processor
    from var_core.models.llava import vicuna_v1_prompt

    prompt_words = [word for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(vicuna_v1_prompt(""))]
    processor = tiny_processor(extra_words=prompt_words)
    base = tiny_llava(seed)
    base.model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)  # new ids after the old ones
    return ModelBundle(model=base.model, processor=processor, name="tiny-vicuna-llava", backbone=base.backbone,
                       adapter=base.adapter)
