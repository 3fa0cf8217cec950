"""The page's words: header, the explanation above each view, help texts, CSS."""

from __future__ import annotations

from ui.settings import CAPTURE_STRIDE, FULL_CAPTURE_HIDDEN, FULL_CAPTURE_LAYERS


HEADER = """# Visual Sink Lens
Where does a vision-language model really look? Upload an image, ask a question, press **Analyze**: the model
answers twice — as is, and with **VAR** (Visual Attention Redistribution, Kang et al., ICLR 2025), which moves
attention that *visual sink tokens* soak up back onto the rest of the image, in image-centric heads only."""


EXPLAIN = {
    "attention": "Where the chosen text token (or the mean over the answer) looks in the image, for one layer and "
                 "head. Patches that stay bright whatever the question are visual attention sinks. **Click a "
                 "patch** to see the reverse: which text tokens look at it, and in which layers and heads.",
    "explain": "Raw attention is what sinks distort. Press the button to compute three other answers to *where did "
               "the model look?* for its first answer token, with and without VAR: **relevancy** (Chefer et al. "
               "2021: attention weighted by its gradient, through every layer), **relative attention** (the "
               "question's attention divided by a generic prompt's: what every prompt looks at, sinks included, "
               "cancels) and the **activation map** (each image token read through the LM head for the answer "
               "token, the base of TAM). Each map is scaled to its own maximum.",
    "grid": "Every head of every layer (rows: layers, columns: heads). Framed tiles are image-centric heads — the "
            "ones VAR acts in; tiles lit on one or two patches only are sink-dominated.",
    "sinks": "φ(x): a token's hidden state in the model's sink dimensions, relative to its RMS. Visual tokens with "
             "φ > τ are sinks (framed); the strip counts them per layer, and φ by layer shows where the massive "
             "activation appears and that it stays.",
    "ranking": "Heads ranked by visual non-sink ratio r, the share of their image attention not spent on sinks. "
               "VAR keeps heads with r ≥ ρ and enough attention on the image (highlighted).",
    "compare": "One layer, head and token before and after redistribution on one colour scale, and the "
               "difference: a fraction p of the sink attention goes to the other image patches.",
    "experiments": "Does it matter? Quick versions (about a minute each on a CPU) of the paper's experiments on "
                   "synthetic scenes: POPE-style yes/no accuracy with and without VAR, ablations, a p × ρ sweep, "
                   "masking sinks vs random visual tokens, their contribution, and whether sinks stay put.",
    "prompts": "The paper's claim: visual sinks stay at the same patches **whatever the question**. Ask a second "
               "question about the same image: both are answered (baseline and VAR), and the sinks and the attention "
               "of each are drawn side by side at the chosen layer, with the sink patches they share.",
    "fixes": "Other training-free fixes beside VAR, on the same image, question and model: tick the methods (the "
             "baseline always runs) and press the button. Each answer is shown with the words the baseline did not "
             "say highlighted; the figure gives, per method, its first answer token's probability, the share of the "
             "answer tokens' attention on visual sinks and on the image (mean over captured layers and heads, with "
             "the change from the baseline), and its map of the layer and head chosen above beside the baseline's, "
             "on one colour scale. Parameters: JSON of method → {parameter: value}, each method's paper defaults.",
    "evidence": "**The paper's evidence** on this input: sinks draw high attention (scatter), they carry a massive "
                "activation in fixed dimensions (profile), and how attention to sinks compares per layer.",
}


CAPTURE_HELP = ("Whose attention the views keep: all, a range 0-7, a list 0,4,8 or both (0-3,8,12). Layers left out "
                "run the model's fast attention unless VAR acts there; φ and sinks are kept for every layer. Default: "
                f"all for models up to {FULL_CAPTURE_LAYERS} layers or hidden size {FULL_CAPTURE_HIDDEN} (the default "
                f"model), else every {CAPTURE_STRIDE}th layer from 0 and the last.")


CSS = ("#status {font-size: 0.9em} #model-saw, #model-info {font-size: 0.85em} "
       ".gradio-container {max-width: 1500px !important} "
       # a phone shows a view at its own size, scrolled sideways, rather than shrunk until its text is unreadable
       "@media (max-width: 700px) {.view .image-container {overflow-x: auto} "
       ".view .image-container > button {justify-content: flex-start; width: max-content; min-width: 100%} "
       ".view img {width: auto !important; max-width: none !important; height: auto !important}}")


VAR_SETTINGS_HINT = "(τ, ρ, the minimum visual mass and the VAR layers are in *VAR settings*.)"


STALE = "**This Analyze did not complete** (see its message); every view below is still of the previous analysis."

