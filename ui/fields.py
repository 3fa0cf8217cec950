"""Input and output components whose behaviour the app needs changed: values checked by our validators,
bounded refusals, views without label badges."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from var_core.images import MAX_PIXELS
from var_core.inputs import shown

from ui.state import Refused


class UploadedImage(gr.Image):
    """gr.Image that hands our code the uploaded file untouched (var_core.images validates and converts it), and
    turns a file PIL cannot even open into a clear message instead of a generic error."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError:  # PIL refuses it before decoding: say why
            raise Refused(f"The image is too large to open safely; the limit is {MAX_PIXELS:,} pixels.") from None
        except Exception:  # noqa: BLE001 — any other decoding failure is the user's file, not our bug
            raise Refused("This file could not be read as an image. Upload a PNG, JPEG, WebP or GIF.") from None


class NumberField(gr.Number):
    """gr.Number whose value reaches the handler exactly as sent, to be checked there by `var_core.inputs.number`:
    one rule and one clear message for every bad value (Gradio's own parsing fails on ±Infinity, text or null
    with no message at all)."""

    is_template = True

    def preprocess(self, payload):
        return payload


class SliderField(gr.Slider):
    """gr.Slider whose value reaches the handler as sent, for `var_core.inputs.number` (see NumberField)."""

    is_template = True

    def preprocess(self, payload):
        return payload


class ChoiceField(gr.Dropdown):
    """gr.Dropdown whose refusal of a value outside its choices names the field and echoes at most a few characters
    of what was sent (Gradio's own message repeats the whole value and every choice)."""

    is_template = True

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise Refused(f"{self.label}: {shown(payload)} is not one of the choices.") from None


class CheckboxField(gr.CheckboxGroup):
    """gr.CheckboxGroup whose value reaches the handler as sent, checked there against the choices with a bounded
    message (Gradio's own repeats the whole value and every choice)."""

    is_template = True

    def preprocess(self, payload):
        return payload


def view_image(label: str, elem_id: str) -> gr.Image:
    """An output image for a view; the view draws its own title, so Gradio's label badge is hidden, and only the
    fullscreen button is drawn over it."""
    return gr.Image(label=label, elem_id=elem_id, type="pil", format="png", show_label=False, elem_classes=["view"],
                    buttons=["fullscreen"])  # one icon over the title's corner, not three (downloads: Save tab)


def view_plot(label: str, elem_id: str) -> gr.Plot:
    """An output plot for a view: its figure draws its own title, which Gradio's label badge would cover."""
    return gr.Plot(label=label, elem_id=elem_id, show_label=False)
