"""Shared benchmark helpers: the device, machine description, peak memory, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from var_core.gpu import device_choice

RESULTS = Path(__file__).parent / "results"
# random weights have no massive activations: at τ = 2 some tokens of every layer are sinks, so VAR acts
RANDOM_TAU = 2.0
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "demo_three_shapes.png"


def bench_device() -> tuple[torch.device, torch.dtype, str]:
    """(device, dtype for hub-like models, one-line description): CUDA where there is one (var_core.gpu's choice,
    so VAR_DEVICE / VAR_DTYPE apply), else the CPU."""
    device, dtype, _ = device_choice()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return device, dtype, f"{device.type} ({name}), {str(dtype).removeprefix('torch.')}"


def cpu_name() -> str:
    """The CPU model and core count, e.g. "Intel(R) Xeon(R) ... × 2"."""
    info = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                  if line.startswith("model name")), "") if info.exists() else ""
    return f"{model or platform.processor() or 'CPU'} × {os.cpu_count()}"


def machine() -> dict:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": bench_device()[2],
            "loadavg_at_start": os.getloadavg()}


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of
    a big parent (bench.run_all) would report the parent's size."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is the best there is (kB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if platform.system() == "Darwin" else 1024)
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1))
    return path


def plain_generate(bundle, inputs: dict, new_tokens: int, implementation: str = "sdpa", **kwargs):
    """`model.generate` without our hook (transformers' own `implementation`), greedy, `new_tokens` at most: the
    user's alternative to running the model through us."""
    bundle.model.set_attn_implementation(implementation)
    with torch.no_grad():
        return bundle.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, **kwargs)


def changed_rows(trace) -> int:
    """(layer, head, query) rows whose attention to the image VAR changed in a captured run: a benchmark of "VAR on"
    checks this is > 0, so a mode in which VAR does nothing cannot pass as a measurement."""
    return int((trace.attn_to_visual != trace.attn_to_visual_raw).any(-1).sum())


def qwen2_vl_7b_shaped(layers: int = 28, dtype: torch.dtype = torch.float32, device: str = "cpu",
                       vision_depth: int = 32, vision_width: int = 1280, intermediate: int = 18944,
                       vocab: int = 152064, bias: float = 0.0):
    """A random model of Qwen2-VL-7B's shape (text 3584 wide, 28 heads, 4 KV heads, q/k/v biases, M-RoPE; vision
    1280 wide, 14-px patches merged 2 × 2), built on `device` in `dtype`, with the processor's real pixel limits and
    a local word-level tokenizer; `layers`, `vision_depth`, `vision_width`, `intermediate` and `vocab` shrink it for a
    CPU.
    `bias` > 0 plants q/k biases of that size, which overflow QKᵀ formed in float16 (METHOD.md §5)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    from tests.tiny_models import QWEN_SPECIALS, QWEN_TEMPLATE, qwen_ids, word_tokenizer
    from var_core.models.bundle import ModelBundle
    from var_core.models.common import image_only
    from var_core.models.qwen2_vl import Qwen2VLAdapter
    from var_core.registry import Backbone

    tokenizer = word_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                               min_pixels=3136, max_pixels=12845056)
    processor = image_only(Qwen2VLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                             chat_template=QWEN_TEMPLATE)
    config = Qwen2VLConfig(
        vision_config=dict(depth=vision_depth, embed_dim=vision_width, hidden_size=3584, num_heads=16, mlp_ratio=4,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(vocab_size=max(vocab, len(tokenizer)), hidden_size=3584, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=28, num_key_value_heads=4,
                         rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                                          "mrope_section": [16, 24, 24]},
                         pad_token_id=0, bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         tie_word_embeddings=False),
        tie_word_embeddings=False, **qwen_ids(tokenizer))
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    if bias:
        plant_qk_biases(model.model.language_model.layers, bias)
    backbone = Backbone("qwen2-7b-shaped", 3584, (458, 2570), RANDOM_TAU, "random weights, Qwen2-7B's sink dims")
    return ModelBundle(model=model.eval().requires_grad_(False), processor=processor, name="qwen2-vl-7b-shaped",
                       backbone=backbone, adapter=Qwen2VLAdapter())


def plant_qk_biases(layers, bias: float) -> None:
    """q and k biases of `bias` on each head's lowest-frequency RoPE pair, whose k weights are zeroed (as
    tests/planted.py does): the product, ≈ 2·bias², is nearly the same for every key, so softmax ignores it, but
    formed in float16 it overflows (Qwen2-family LMs carry biases in the hundreds)."""
    with torch.no_grad():
        for layer in layers:
            attention = layer.self_attn
            head_dim = attention.head_dim
            for projection in (attention.q_proj, attention.k_proj):
                rows = [head * head_dim + dim for head in range(projection.out_features // head_dim)
                        for dim in (head_dim // 2 - 1, head_dim - 1)]
                projection.bias[rows] = bias
            attention.k_proj.weight[rows] = 0.0


def llava_7b_shaped(layers: int = 32, dtype: torch.dtype = torch.float32, device: str = "cpu",
                    vision_depth: int = 24, intermediate: int = 11008, vocab: int = 32064):
    """A random model of LLaVA-1.5-7B's shape (LLaMA-2-7B text: 4096 wide, 32 layers, 32 heads; CLIP ViT-L/14 at
    336 px: 576 visual tokens), built on `device` in `dtype`, with a local CLIP processor and word-level tokenizer;
    `layers`, `vision_depth`, `intermediate` and `vocab` shrink it for a CPU."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from tests.tiny_llava import tiny_processor
    from var_core.models.bundle import ModelBundle
    from var_core.models.llava import LlavaAdapter
    from var_core.registry import Backbone

    processor = tiny_processor(336, 14)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=vision_depth,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=max(vocab, len(processor.tokenizer)), hidden_size=4096,
                                intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=32,
                                num_key_value_heads=32, max_position_embeddings=4096, pad_token_id=0,
                                bos_token_id=1, eos_token_id=2),
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default")
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    backbone = Backbone("llama-2-7b-shaped", 4096, (2533, 1415), RANDOM_TAU, "random weights, LLaMA-2-7B's sink dims")
    return ModelBundle(model=model.eval().requires_grad_(False), processor=processor, name="llava-1.5-7b-shaped",
                       backbone=backbone, adapter=LlavaAdapter())


@contextmanager
def live_server(env: dict | None = None, start_timeout_s: float = 180):
    """`python app.py` on a free loopback port (with `env` added to the environment), until it serves its page:
    yields (url, process); the server is stopped on exit."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                                               **(env or {})})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start (exit code {process.poll()})")
            time.sleep(1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
