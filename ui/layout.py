"""The page: inputs on the left, answers and views on the right, then the events that wire them."""

from __future__ import annotations

import gradio as gr

from var_core.eval.quick import NAMES as EXPERIMENTS, QUICK
from var_core.layout import WHOLE
from var_core.models.catalog import CATALOG, DEFAULT_MODEL_ID
from var_core.run import MAX_PROMPT_CHARS
from viz.diff import DIFF_COLORS
from viz.fixes import TABLE_HEADERS as FIX_HEADERS
from viz.ranking import TABLE_HEADERS

from ui import state
from ui.analyze import (MEAN_HEADS, QUERY_MODES, analyze_request, make_downloads, pick_patch, pick_token, render_all,
                        render_reverse, render_selection, reopen_request, stale_status)
from ui.comparison import compare_request, render_comparison
from ui.experiments import full_results, run_experiment
from ui.explanations import cleared_explanation, explain_request, render_explanation
from ui.fixes import RUNS, compare_fixes_request, default_choices, default_params_text, method_choices, render_fixes, title_of
from ui.fields import CheckboxField, ChoiceField, NumberField, SliderField, UploadedImage, view_image, view_plot
from ui.settings import (DEFAULTS, MAX_CAPTURE_CHARS, MAX_NEW_TOKENS_UI, SAMPLES_RANGE, capture_layers, captured_text,
                         default_capture, examples, model_info, model_settings, page_settings, typed_model)
from ui.state import SESSION_TTL_S, stop_session
from ui.texts import CAPTURE_HELP, EXPLAIN, HEADER


def build_demo() -> gr.Blocks:
    """The page: inputs on the left, answers and views on the right; then the events."""
    bundle = state.slot.current
    last = bundle.num_layers - 1
    captured = capture_layers(default_capture(bundle), bundle.num_layers) or list(range(bundle.num_layers))
    with gr.Blocks(title="Visual Sink Lens") as demo:
        # tickets for this session's results, which live in `store` under one memory cap for all sessions
        result = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=state.store.release)
        explanations = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=state.store.release)
        comparison = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=state.store.release)
        fixes = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=state.store.release)
        gr.Markdown(HEADER)
        with gr.Row():
            with gr.Column(scale=4, min_width=300):
                image = UploadedImage(type="filepath", label="Image", sources=["upload", "clipboard", "webcam"],
                                      elem_id="input-image", height=280)
                pad = gr.Checkbox(False, label="Pad to a square first (nothing is cropped away)", elem_id="pad-square",
                                  info="Processors that centre-crop (e.g. LLaVA-1.5's CLIP) cut the long side of a "
                                       "non-square image; padding keeps all of it, as the VAR authors ran LLaVA.")
                seen = gr.Markdown(elem_id="model-saw")
                model_input = gr.Image(label="What the model saw (its input, after the processor)", height=160,
                                       interactive=False, elem_id="model-input", type="numpy", format="png",
                                       show_label=False, buttons=["fullscreen"],  # the sentence above names it
                                       visible=False)  # until there is an analysis
                prompt = gr.Textbox(label="Prompt", placeholder="Ask about the image", lines=2, elem_id="prompt",
                                    max_length=MAX_PROMPT_CHARS)
                model_id = ChoiceField(list(CATALOG), value=state.slot.current_id or DEFAULT_MODEL_ID, label="Model",
                                       elem_id="model", allow_custom_value=state.slot.allow_any)
                info = gr.Markdown(model_info(bundle), elem_id="model-info")
                with gr.Accordion("VAR settings", open=False):
                    p = SliderField(0, 1, DEFAULTS["p"], step=0.05, label="p — fraction of sink attention moved",
                                  info="paper convention; the official config's 'p: 0.6' (kept) is p = 0.4 here")
                    rho = SliderField(0, 1, DEFAULTS["rho"], step=0.05, label="ρ — min visual non-sink ratio")
                    tau = NumberField(None, label="τ — sink threshold on φ", elem_id="tau")
                    min_mass = SliderField(0, 1, DEFAULTS["min_visual_mass"], step=0.05,
                                         label="min visual mass of a head")
                    max_new_tokens = SliderField(1, MAX_NEW_TOKENS_UI, DEFAULTS["max_new_tokens"], step=1,
                                               label="max new tokens")
                    with gr.Row():
                        first_layer = NumberField(2, precision=0, label="VAR from layer", minimum=0)
                        last_layer = NumberField(None, precision=0, label="to layer", minimum=0)
                    recycle = gr.Checkbox(True, label="recycle text sinks (BOS) too — official behaviour")
                    capture = gr.Textbox(default_capture(bundle), label=f"Layers to capture (this model: 0 … {last})",
                                         info=CAPTURE_HELP, elem_id="capture-layers", max_lines=1,
                                         max_length=MAX_CAPTURE_CHARS)
                with gr.Row():
                    run = gr.Button("Analyze", variant="primary", elem_id="run", scale=3)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                gr.Examples(examples(), inputs=[image, prompt], label="Examples: click one, then Analyze",
                            examples_per_page=4)
            with gr.Column(scale=8):
                with gr.Row():
                    baseline_answer = gr.HighlightedText(label="Baseline answer", elem_id="baseline-answer",
                                                         color_map=DIFF_COLORS, show_legend=False)
                    var_answer = gr.HighlightedText(label="Answer with VAR", elem_id="var-answer",
                                                    color_map=DIFF_COLORS, show_legend=False)
                with gr.Accordion("What VAR changed", open=True, elem_id="var-changes"):
                    with gr.Row():  # side by side on a laptop, stacked on a phone
                        with gr.Column(min_width=320):
                            changes_text = gr.Markdown(elem_id="changes-text")
                        with gr.Column(min_width=320):
                            changes_plot = view_plot("Attention on visual sinks before and after VAR", "changes-plot")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    source = gr.Radio(["VAR", "baseline"], value="VAR", label="Show run", min_width=160)
                    layer = ChoiceField([(str(captured_layer), captured_layer) for captured_layer in captured],
                                        value=min(captured, key=lambda captured_layer: abs(captured_layer - 5)),
                                        label=f"Layer (captured: {captured_text(captured, bundle.num_layers)})",
                                        elem_id="layer", min_width=200)
                    head = ChoiceField([("mean over heads", MEAN_HEADS)], value=MEAN_HEADS, label="Head",
                                       min_width=200)
                    query = ChoiceField(QUERY_MODES, value="answer", label="Text token (query)", min_width=260)
                    log_scale = gr.Checkbox(False, label="log scale", min_width=120)
                    picture = ChoiceField([WHOLE], value=WHOLE, label="Picture (tiled models: the whole or one view)",
                                          elem_id="picture", min_width=240, visible=False)
                tokens = gr.HighlightedText(label="Tokens, coloured by attention to the image — click one to "
                                                  "see where it looks", elem_id="tokens", show_legend=False)
                with gr.Tabs(overflow_behavior="wrap"):  # every tab in sight, on a phone too
                    with gr.Tab("Attention"):
                        gr.Markdown(EXPLAIN["attention"])
                        heatmap = view_image("Attention heatmap", "heatmap")
                        patch = NumberField(None, precision=0, minimum=0, elem_id="patch",
                                          label="Patch (visual token number) — or click the heatmap")
                        reverse_tokens = gr.HighlightedText(
                            label="Which text tokens look at this patch (this layer and head; scaled to the largest)",
                            elem_id="reverse-tokens", show_legend=False)
                        patch_tile = view_image("Attention this patch receives, every layer × head", "patch-tile")
                    with gr.Tab("Where did it look?"):
                        gr.Markdown(EXPLAIN["explain"])
                        with gr.Row():
                            explain_answer = gr.Textbox(label="Answer to explain (empty: the model's own)",
                                                        placeholder="e.g. red", elem_id="explain-answer", scale=2)
                            map_first = NumberField(0, precision=0, minimum=0, maximum=last, scale=1,
                                                    label="attention maps from layer", elem_id="map-first")
                            map_last = NumberField(last, precision=0, minimum=0, maximum=last, scale=1,
                                                   label="to layer (default: the last)", elem_id="map-last")
                        explain_button = gr.Button("Explain the first answer token (baseline and VAR)",
                                                   elem_id="explain")
                        explain_status = gr.Markdown(elem_id="explain-status")
                        methods_grid = view_image("Method × run", "methods-grid")
                        sink_shares = gr.Dataframe(headers=["method", "baseline", "VAR"], elem_id="sink-shares",
                                                   label="Share of each map on visual sink patches")
                        explain_files = gr.File(label="The grid (PNG) and every map (.npz)", file_count="multiple",
                                                elem_id="explain-downloads")
                        with gr.Accordion("What the explain API returns (JSON)", open=False):
                            explain_json = gr.JSON(label="explain", elem_id="explain-json")
                    with gr.Tab("Heads"):
                        gr.Markdown(EXPLAIN["grid"])
                        grid = view_image("All heads", "grid")
                        gr.Markdown(EXPLAIN["ranking"])
                        ranking = view_plot("Heads by visual non-sink ratio", "ranking")
                        ranking_table = gr.Dataframe(headers=TABLE_HEADERS, label="Top heads",
                                                     elem_id="ranking-table")
                    with gr.Tab("Sinks"):
                        gr.Markdown(EXPLAIN["sinks"])
                        phi_map = view_image("φ(x) over the image", "phi")
                        sink_strip = view_plot("Visual sinks per layer", "sink-strip")
                        phi_layers = view_plot("φ by layer", "phi-by-layer")
                        gr.Markdown(EXPLAIN["evidence"])
                        scatter = view_plot("φ vs attention", "scatter")
                        profile = view_plot("Massive activations", "profile")
                        sink_share = view_plot("Attention to sinks per layer", "sink-share")
                    with gr.Tab("Before / after"):
                        gr.Markdown(EXPLAIN["compare"])
                        compare = view_image("Before / after / difference", "compare")
                    with gr.Tab("Compare prompts"):
                        gr.Markdown(EXPLAIN["prompts"])
                        with gr.Row():
                            prompt_b = gr.Textbox(label="Second question about the same image", lines=1, scale=3,
                                                  elem_id="prompt-b", max_length=MAX_PROMPT_CHARS,
                                                  placeholder="e.g. How many shapes are there?")
                            compare_button = gr.Button("Compare", elem_id="compare", scale=1)
                        comparison_note = gr.Markdown(elem_id="comparison-note")
                        comparison_view = view_image("Prompt A vs prompt B", "comparison")
                        overlap_plot = view_plot("Shared visual sinks per layer", "overlap")
                    with gr.Tab("Compare fixes"):
                        gr.Markdown(EXPLAIN["fixes"])
                        with gr.Row():
                            fix_methods = CheckboxField(method_choices(), value=default_choices(),
                                                        label="Methods and probes (the baseline always runs)", scale=3,
                                                        elem_id="fix-methods")
                            with gr.Column(scale=1, min_width=160):
                                fix_explain = gr.Checkbox(False, label="Where did each look? (explain every answer)",
                                                          elem_id="fix-explain")
                                fix_button = gr.Button("Compare fixes", elem_id="compare-fixes")
                        with gr.Accordion("Method parameters (JSON: method → {parameter: value}; paper defaults)",
                                          open=False):
                            fix_params = gr.Code(default_params_text(), language="json", interactive=True,
                                                 label="method parameters", elem_id="fix-params", max_lines=14)
                        fix_status = gr.Markdown(elem_id="fix-status")
                        with gr.Row(elem_id="fix-answers"):  # side by side, wrapping on a phone
                            fix_answers = [gr.HighlightedText(label=f"{title_of(name)} answer", elem_id=f"fix-answer-{name}",
                                                              color_map=DIFF_COLORS, show_legend=False, min_width=160,
                                                              visible=False)
                                           for name in RUNS]
                        fix_view = view_image("Methods vs the baseline", "fixes")
                        fix_table = gr.Dataframe(headers=FIX_HEADERS, elem_id="fix-table", wrap=True,
                                                 label="Per method: first answer token, its probability p (and the "
                                                       "baseline's token's), share of attention on visual sinks and "
                                                       "on the image (Δ from the baseline)")
                        fix_looked = view_image("Where did each look? (each run's own first answer token)",
                                                "fixes-looked")
                        fix_file = gr.File(label="Export: every run's settings, answer, probabilities and masses (JSON)",
                                           elem_id="fix-downloads")
                        with gr.Accordion("What the compare API returns (JSON)", open=False):
                            fix_json = gr.JSON(label="compare", elem_id="fix-json")
                    with gr.Tab("Experiments"):
                        gr.Markdown(EXPLAIN["experiments"])
                        with gr.Row():
                            experiment = ChoiceField(list(EXPERIMENTS), value=EXPERIMENTS[0], label="Experiment")
                            n_samples = SliderField(*SAMPLES_RANGE, QUICK[EXPERIMENTS[0]][0], step=1, label="samples")
                            run_experiment_button = gr.Button("Run quick version", elem_id="run-experiment")
                        experiment_table = gr.Dataframe(label="Quick run", elem_id="experiment-table", visible=False)
                        experiment_plots = gr.Gallery(label="Plots", columns=2, height="auto", object_fit="contain")
                        full_note = gr.Markdown()
                        full_table = gr.Dataframe(label="Full run (committed under results/)", elem_id="full-table")
                        full_plots = gr.Gallery(label="Full-run plots", columns=2, height="auto", object_fit="contain")
                    with gr.Tab("Save / reopen"):
                        summary = gr.JSON(label="Summary (what the API returns)", elem_id="summary")
                        prepare = gr.Button("Prepare downloads", elem_id="prepare-downloads")
                        files = gr.File(label="Report (one HTML file), figures (PNG), Traces (.npz), settings + "
                                              "answers + selection (JSON)", file_count="multiple", elem_id="downloads")
                        saved_files = gr.File(label="Reopen a saved analysis: upload its trace_baseline.npz and "
                                                    "trace_var.npz (and analysis.json for the saved selection)",
                                              file_count="multiple", file_types=[".npz", ".json"],
                                              elem_id="reopen-files")
                        reopen_button = gr.Button("Reopen", elem_id="reopen")

        # ------------------------------------------------------------ events
        var_settings = [p, rho, tau, min_mass]
        settings = [image, prompt, model_id, *var_settings, max_new_tokens, first_layer, last_layer, recycle, capture,
                    pad]
        selection = [result, layer, head, query, source, log_scale, patch, picture]
        selection_outputs = [heatmap, grid, compare, tokens, scatter, phi_map, sink_strip]  # as SELECTION_VIEWS
        reverse = [result, patch, layer, head, source]
        reverse_outputs = [reverse_tokens, patch_tile]
        all_outputs = [baseline_answer, var_answer, changes_text, changes_plot, status, seen, model_input, layer, head,
                       query, phi_layers, ranking,
                       ranking_table, profile, sink_share, *selection_outputs, patch,
                       *reverse_outputs, picture]
        private = {"api_visibility": "private"}
        analysis = run.click(analyze_request, settings, [summary, result], api_name="analyze",
                             concurrency_id="model", concurrency_limit=1,
                             show_progress_on=[baseline_answer, var_answer])  # the outputs themselves are hidden
        analysis.success(render_all, selection, all_outputs, **private)
        explanation_outputs = [explain_status, methods_grid, sink_shares, explain_files, explain_json]
        analysis.success(cleared_explanation, None, explanation_outputs, **private)
        analysis.failure(stale_status, status, status, **private)
        for control in (layer, head, query, source, log_scale, patch, picture):
            control.input(render_selection, selection, selection_outputs, trigger_mode="always_last", **private)
        for control in (patch, layer, head, source):
            control.input(render_reverse, reverse, reverse_outputs, trigger_mode="always_last", **private)
        heatmap.select(pick_patch, [result, layer, head, source, picture], [patch, *reverse_outputs], **private).success(
            render_selection, selection, selection_outputs, **private)  # the new patch framed
        explain_settings = [image, prompt, model_id, *var_settings, first_layer, last_layer, recycle, explain_answer,
                            map_first, map_last, pad]
        explained = explain_button.click(explain_request, explain_settings, [explain_json, explanations],
                                         api_name="explain", concurrency_id="model", concurrency_limit=1,
                                         show_progress_on=[methods_grid])
        explained.success(render_explanation, [explanations, prompt],
                          [explain_status, methods_grid, sink_shares, explain_files], **private)
        tokens.select(pick_token, [result], [query], **private).success(
            render_selection, selection, selection_outputs, **private)
        model_outputs = [tau, first_layer, last_layer, model_id, info, map_first, map_last, capture]
        model_id.select(model_settings, [model_id], model_outputs, concurrency_id="model", concurrency_limit=1,
                        **private)  # not .input: the dropdown sends that twice for one pick
        if state.slot.allow_any:  # a typed id selects no option: it loads when the field is left
            model_id.blur(typed_model, [model_id], model_outputs, concurrency_id="model", concurrency_limit=1,
                          **private)
        demo.load(page_settings, [model_id, capture], model_outputs, concurrency_id="model", concurrency_limit=1,
                  **private)
        prepare.click(make_downloads, selection, [files], **private)
        reopened = reopen_button.click(reopen_request, saved_files, [summary, result, layer, head, query, source,
                                                                     log_scale], **private)
        reopened.success(render_all, selection, all_outputs, **private)
        comparison_outputs = [comparison_view, overlap_plot, comparison_note]
        compared = compare_button.click(compare_request, [image, prompt, prompt_b, model_id, *var_settings,
                                                          max_new_tokens, first_layer, last_layer, recycle, capture,
                                                          pad],
                                        comparison, concurrency_id="model", concurrency_limit=1,
                                        show_progress_on=[comparison_view], **private)
        compared.success(render_comparison, [comparison, layer], comparison_outputs, **private)
        layer.input(render_comparison, [comparison, layer], comparison_outputs, trigger_mode="always_last", **private)
        fix_outputs = [*fix_answers, fix_view, fix_table, fix_looked, fix_status, fix_file, head]
        fixed = fix_button.click(compare_fixes_request, [image, prompt, model_id, fix_methods, fix_params,
                                                         max_new_tokens, capture, pad, fix_explain],
                                 [fix_json, fixes], api_name="compare", concurrency_id="model",
                                 concurrency_limit=1, show_progress_on=[fix_view])
        fixed.success(render_fixes, [fixes, layer, head], fix_outputs, **private)
        for control in (layer, head):
            control.input(render_fixes, [fixes, layer, head], fix_outputs, trigger_mode="always_last", **private)
        # not queued behind the model's group: a second experiment is refused at once instead of waiting minutes
        experiment_run = run_experiment_button.click(run_experiment, [experiment, n_samples],
                                                     [experiment_table, experiment_plots],
                                                     concurrency_id="experiment", concurrency_limit=None, **private)
        stop.click(stop_session, None, None, cancels=[analysis, explained, experiment_run, compared, fixed], queue=False,
                   **private)
        demo.unload(stop_session)
        experiment.change(full_results, [experiment], [full_table, full_plots, full_note, n_samples], **private)
        demo.load(full_results, [experiment], [full_table, full_plots, full_note, n_samples], **private)
    return demo
