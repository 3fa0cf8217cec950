"""The "report" download: one self-contained HTML file of an analysis (prompt, both answers, model, every setting,
what the model saw, the selection, every figure as inline PNG) that opens offline and reads on a phone."""

from __future__ import annotations

import html

from matplotlib.figure import Figure
from PIL import Image

from viz.figures import figure_image
from viz.notebook import facts, image_tag
from viz.queries import head_label, layer_spans, query_label

SEEN_WIDTH = 256  # the model input is drawn at least this wide (a default-model input is 128 px)
STYLE = """
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #141414; margin: 0 auto;
       max-width: 72rem; padding: 0.75rem; overflow-wrap: break-word; }
h1 { font-size: 1.5rem; margin: 0.5rem 0 0.25rem; } h2 { font-size: 1.2rem; margin: 1.5rem 0 0.5rem; }
img { max-width: 100%; height: auto; display: block; }
.answers { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 0.75rem; }
.answers div, .note { background: #f3f3f3; border-radius: 6px; padding: 0.5rem 0.75rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; } td { text-align: left; vertical-align: top; padding: 0.2rem 0.6rem;
       border-bottom: 1px solid #ddd; } td:first-child { white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }
figure { margin: 1rem 0; min-width: 0; } figcaption { font-weight: 600; margin-bottom: 0.25rem; }
small, .facts { color: #555; font-size: 0.9rem; } .user { white-space: pre-wrap; }
"""


def analysis_report(analysis, figures: dict[str, Figure | Image.Image], selection: dict, seen: str = "") -> str:
    """The whole report as one HTML string. `analysis`: baseline and VAR Traces (a `var_core.analysis.Analysis`);
    `figures`: title (or a snake_case name) → matplotlib Figure or PIL image, in the order shown; `selection`: the
    app's {layer, head, query, run, log_scale}; `seen`: the sentence on what the model saw (`describe_seen`)."""
    baseline, var = analysis.baseline, analysis.var
    gallery = "".join(_figure(title, figure) for title, figure in figures.items())
    sections = {"Question and answers": _answers(baseline, var), "What the model saw": _seen(baseline, var, seen),
                "Selection": _table(_selection_rows(analysis, selection)),
                "Settings": _table(_settings_rows(baseline, var)),
                "Figures": f"<div class=figures>{gallery}</div>"}
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections.items())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Visual Sink Lens: {_text(var.prompt[:80])}</title><style>{STYLE}</style></head><body>"
            f"<h1>Visual Sink Lens report</h1><p>Model <code>{_text(var.model_name)}</code></p>{body}</body></html>")


def _answers(baseline, var) -> str:
    """The prompt, both answers side by side (stacked on a phone), and a note when VAR changed nothing."""
    same = "<p class=note>VAR did not change the answer.</p>" if baseline.answer == var.answer else ""
    return (f"<p><b>Prompt</b><br>{_user(var.prompt)}</p><div class=answers><div><b>Baseline</b><br>"
            f"{_user(baseline.answer)}</div><div><b>With VAR</b><br>{_user(var.answer)}</div></div>{same}")


def _seen(baseline, var, seen: str) -> str:
    """The sentence on the model's input, the input image itself, and each run's facts line."""
    picture = image_tag(Image.fromarray(var.image), max(SEEN_WIDTH, var.image.shape[1]), "the model input")
    return (f"{f'<p>{_text(seen)}</p>' if seen else ''}{picture}<p class=facts>Baseline: {_text(facts(baseline))}"
            f"<br>With VAR: {_text(facts(var))}</p>")


def _text(value) -> str:
    """`value` as escaped HTML text."""
    return html.escape(str(value))


def _user(text: str) -> str:
    """A user's or the model's text, escaped, its line breaks kept."""
    return f"<span class=user>{_text(text)}</span>"


def _value(value, key: str = "") -> str:
    """A setting as short text: None as —, dicts as key = value, a list of layers or positions as spans (2–28)."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "; ".join(f"{name} = {_value(item, name)}" for name, item in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        whole = all(isinstance(item, int) and not isinstance(item, bool) for item in value)
        spans = whole and key.endswith(("layers", "positions"))
        return layer_spans(value) if spans else ", ".join(map(_value, value)) or "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(rows: list[list]) -> str:
    """A table in a horizontally scrolling box, every cell escaped."""
    cells = "".join("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<div class=scroll><table>{cells}</table></div>"


def _selection_rows(analysis, selection: dict) -> list[list]:
    """Layer, head, query, run and log scale as the views title them, then any other saved key."""
    trace = analysis.baseline if selection.get("run") == "baseline" else analysis.var
    named = {"layer": selection.get("layer"), "head": head_label(selection.get("head")),
             "query": query_label(trace, selection.get("query", "all")),
             "run": "baseline" if selection.get("run") == "baseline" else "with VAR",
             "log scale": "yes" if selection.get("log_scale") else "no"}
    rest = {key: value for key, value in selection.items() if key not in {"layer", "head", "query", "run", "log_scale"}}
    return [[key, _value(value, key)] for key, value in {**named, **rest}.items()]


def _settings_rows(baseline, var) -> list[list]:
    """Every key of either run's settings with its value, or both runs' values where they differ."""
    rows = []
    for key in dict.fromkeys([*baseline.settings, *var.settings]):
        before, after = _value(baseline.settings.get(key), key), _value(var.settings.get(key), key)
        rows.append([key, before if before == after else f"baseline: {before} · with VAR: {after}"])
    return rows


def _figure(title: str, figure: Figure | Image.Image) -> str:
    """One figure as an inline PNG with its caption (a snake_case name becomes words)."""
    caption = title if " " in title else title.replace("_", " ").capitalize()
    image = figure if isinstance(figure, Image.Image) else figure_image(figure)
    return f"<figure><figcaption>{_text(caption)}</figcaption>{image_tag(image, alt=caption)}</figure>"
