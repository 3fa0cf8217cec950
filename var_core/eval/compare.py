"""`compare`: every registered training-free method (var_core.interventions.registry.METHODS) on the same samples,
with the same greedy decoding and the same scorer, against the baseline.

Samples: POPE-style yes/no existence questions (`synthetic_pope`, or a real POPE file with --pope-file) and, on the
default model's scenes, its held-out question kinds (colour, shape, count, position; `heldout.heldout_questions`,
both scene families). Scorers: yes/no questions by `parse_yes_no` against the label (POPE's accuracy and F1);
the held-out kinds by exact match after `heldout.normalise`, as the held-out evaluation scores them.

Per method (one row each): accuracies (yes/no, held-out, all), the paired bootstrap 95 % interval of each change
vs the baseline (the same questions resampled for both), the share of answers whose text changed vs the baseline,
and the wall-time ratio vs the baseline (total generation seconds of the method / of the baseline, same samples).
Every method is built and checked against the model before the first sample, so a method whose layers do not
fit (VAF's 9–14 on a 4-layer model) fails with its ValueError, not mid-run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from var_core import redistribute
from var_core.config import VARConfig
from var_core.eval.datasets import Sample, load_pope, synthetic_pope
from var_core.eval.heldout import FAMILIES, heldout_questions, normalise
from var_core.eval.metrics import binary_metrics, bootstrap_interval, parse_yes_no, wilson_interval
from var_core.eval.runner import Experiment
from var_core.interventions.base import Intervention
from var_core.interventions.registry import METHODS, build, method, run_method
from var_core.scenes import render

HELDOUT_KINDS = ("colour", "shape", "count", "position")
REFERENCE = "baseline"
DEFAULT_PER_KIND = 10


@dataclass(frozen=True)
class SceneSample(Sample):
    """A held-out question about a scene of one of `heldout.FAMILIES` (source "<family>:<seed>"); label: the
    expected answer; kind: the question kind."""

    kind: str = ""

    def image(self):
        family, seed = self.source.rsplit(":", 1)
        return render(FAMILIES[family](int(seed)))


COMPARE_FAMILIES = ("training-like", "shifted")  # the committed comparison's families (results/compare/)


def heldout_samples(per_kind: int, kinds=HELDOUT_KINDS, families=COMPARE_FAMILIES) -> list[SceneSample]:
    """per_kind questions of every kind from each of `families`' held-out seeds (deterministic)."""
    samples = []
    for family in families:
        tag = family.replace("-", "")
        for scene, qa in heldout_questions(family, per_kind, tuple(kinds)):
            samples.append(SceneSample(f"{tag}{scene.seed}-{qa.kind}", f"{tag}{scene.seed}", f"{family}:{scene.seed}",
                                       qa.question, qa.answer, qa.kind))
    return samples


def compare_samples(n: int, seed: int = 0, per_kind: int = DEFAULT_PER_KIND, pope_file=None, image_dir=None,
                    kinds=HELDOUT_KINDS, families=COMPARE_FAMILIES) -> list[Sample]:
    """n yes/no questions (synthetic scenes, or the first n of a POPE file) + per_kind held-out questions of every
    kind from each of `families` (none with a POPE file: its images have no held-out questions, or with
    per_kind = 0)."""
    if pope_file is not None:
        if image_dir is None:
            raise ValueError("--pope-file needs --image-dir (the folder its 'image' names are in)")
        return load_pope(pope_file, image_dir, limit=n)
    return synthetic_pope(n, seed) + (heldout_samples(per_kind, kinds, families) if per_kind > 0 and kinds else [])


# --- methods and their parameters ---------------------------------------------------------------------------------

def parse_methods(text: str | None) -> list[str]:
    """"baseline,var,pai" → the names, baseline first (added when missing: every change is measured against it);
    None or "all" → every registered method. A ValueError names an unknown one."""
    names = list(METHODS) if text in (None, "", "all") else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        method(name)  # ValueError listing the known ones
    if len(set(names)) != len(names):
        raise ValueError(f"--methods lists a method twice: {text}")
    return [REFERENCE] + [name for name in names if name != REFERENCE]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items, methods: list[str]) -> dict[str, dict]:
    """["pai.alpha=0.5", "vaf.enh_para=1.2,vaf.sup_para=0.9"] → {"pai": {"alpha": 0.5}, "vaf": {...}}; values are
    JSON (0.5, 3, null, true), else strings. A ValueError for a malformed item or one naming a method not compared."""
    params: dict[str, dict] = {}
    for item in (part.strip() for chunk in (items or []) for part in chunk.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        name, dot, param = key.strip().partition(".")
        if not (sep and dot and name and param.strip() and raw.strip()):
            raise ValueError(f"--params {item!r} must look like method.parameter=value, e.g. pai.alpha=0.5")
        method(name)
        if name not in methods:
            raise ValueError(f"--params {item!r}: {name} is not among the compared methods ({', '.join(methods)})")
        params.setdefault(name, {})[param.strip()] = _value(raw.strip())
    return params


def resolved_params(name: str, overrides: dict | None) -> dict:
    """The method's registry defaults with `overrides` on top (what it runs with, and what the cache keys on)."""
    return {**METHODS[name].defaults, **(overrides or {})}


def check_methods(methods: list[str], params: dict[str, dict], num_layers: int | None = None) -> None:
    """Build every method with its parameters (ValueError: unknown parameter, out of range) and, given the model's
    layer count, check it fits (ValueError: e.g. VAF's start_layer past a 4-layer model); the message names the
    method. Run before any sample, so nothing fails mid-run."""
    for name in methods:
        try:
            built = build(name, **params.get(name, {}))
            if num_layers is not None:
                if isinstance(built, Intervention):
                    built.check(num_layers)
                elif isinstance(built, VARConfig):
                    layers = list(built.resolve_layers(num_layers))
                    if not layers or not all(0 <= i < num_layers for i in layers):
                        raise ValueError(f"layers {layers} do not fit a model of {num_layers} layers")
        except (TypeError, ValueError) as error:
            fits = f" (the model has {num_layers} layers)" if num_layers is not None else ""
            raise ValueError(f"method {name!r} ({METHODS[name].title}): {error}{fits}; override with "
                             f"--params {name}.<parameter>=<value>") from None


# --- the experiment -----------------------------------------------------------------------------------------------

def code_version(name: str) -> str | None:
    """A hash of the source of the module that implements the method (None: the baseline), part of each
    condition's cache key: a method whose code changed (e.g. PAI's γ step added) is recomputed, not read back."""
    built = build(name, **resolved_params(name, None))
    if built is None:
        return None
    module = sys.modules[type(built).__module__] if isinstance(built, Intervention) else redistribute
    return hashlib.sha1(inspect.getsource(module).encode()).hexdigest()[:12]


def compare_conditions(opts: dict) -> list[tuple[str, dict]]:
    methods = opts.get("methods") or parse_methods(None)
    params = opts.get("params") or {}
    return [(name, {"method": name, "params": resolved_params(name, params.get(name)), "code": code_version(name),
                    "max_new_tokens": opts["max_new_tokens"]}) for name in methods]


def _kind(sample: Sample) -> str:
    return getattr(sample, "kind", "") or ("yesno" if sample.label in ("yes", "no") else "open")


def compute(bundle, sample: Sample, settings: dict, done: dict) -> dict:
    """One greedy generation with the method; its answer scored (yes/no parsed, or exact match) and timed."""
    image = sample.image()
    start = time.perf_counter()
    trace = run_method(bundle, image, sample.question, settings["method"], settings["params"], capture=False,
                       max_new_tokens=settings["max_new_tokens"])
    seconds = time.perf_counter() - start
    kind = _kind(sample)
    pred = parse_yes_no(trace.answer) if kind == "yesno" else normalise(trace.answer)
    # yes/no as POPE scores it (an unparsed answer counts as "no"); the held-out kinds by exact match
    correct = None if sample.label is None else (("yes" if pred == "yes" else "no") == sample.label if kind == "yesno"
                                                 else pred == normalise(sample.label))
    steps = 0 if trace.top_probs is None else len(trace.top_probs)
    return {"kind": kind, "answer": trace.answer, "pred": pred, "correct": correct, "seconds": seconds,
            "steps": steps, "first_top_prob": float(trace.top_probs[0][0]) if steps else None}


def _paired_difference(pairs, statistic) -> list[float]:
    """Paired bootstrap 95 % interval of statistic(method's) − statistic(baseline's) over the same questions."""
    def difference(idx):
        picked = [pairs[i] for i in idx]
        return statistic([m for m, _ in picked]) - statistic([b for _, b in picked])
    return list(bootstrap_interval(difference, len(pairs)))


def _accuracy(records) -> float:
    return float(np.mean([bool(r["correct"]) for r in records])) if records else float("nan")


def _pope(records) -> dict:
    return binary_metrics([r["label"] for r in records], [r["pred"] for r in records])


def compare_rows(records: list[dict], opts: dict) -> list[dict]:
    """One row per method: accuracies, paired intervals of the changes vs the baseline, answers changed, time."""
    names = [name for name, _ in compare_conditions(opts)]
    by_method = {name: {r["sample_id"]: r for r in records if r["condition"] == name} for name in names}
    base = by_method[REFERENCE]
    base_seconds = sum(r["seconds"] for r in base.values())
    base_steps = sum(r["steps"] for r in base.values())
    kinds = list(dict.fromkeys(r["kind"] for r in base.values()))
    rows = []
    for name in names:
        mine = by_method[name]
        paired = [(mine[i], base[i]) for i in mine if i in base]  # both answered (all, after a complete run)
        scored = [(m, b) for m, b in paired if m["correct"] is not None]
        row = {"condition": name, "method": METHODS[name].title if name in METHODS else name,
               "params": json.dumps(resolved_params(name, (opts.get("params") or {}).get(name)) if name in METHODS
                                    else {}, sort_keys=True), "n": len(paired)}
        yesno = [(m, b) for m, b in scored if m["kind"] == "yesno"]
        if yesno:
            pope = _pope([m for m, _ in yesno])
            row.update({"pope_n": pope["n"], "pope_accuracy": pope["accuracy"],
                        "pope_accuracy_ci95": list(wilson_interval(pope["tp"] + pope["tn"], pope["n"])),
                        "pope_f1": pope["f1"], "yes_ratio": pope["yes_ratio"], "unparsed": pope["unparsed"],
                        "pope_accuracy_minus_baseline": pope["accuracy"] - _pope([b for _, b in yesno])["accuracy"],
                        "pope_accuracy_minus_baseline_ci95": _paired_difference(yesno, _accuracy),
                        "pope_f1_minus_baseline_ci95": _paired_difference(yesno, lambda rs: _pope(rs)["f1"])})
        heldout = [(m, b) for m, b in scored if m["kind"] != "yesno"]
        if heldout:
            hits = sum(bool(m["correct"]) for m, _ in heldout)
            row.update({"heldout_n": len(heldout), "heldout_accuracy": hits / len(heldout),
                        "heldout_accuracy_ci95": list(wilson_interval(hits, len(heldout))),
                        "heldout_accuracy_minus_baseline": hits / len(heldout) - _accuracy([b for _, b in heldout]),
                        "heldout_accuracy_minus_baseline_ci95": _paired_difference(heldout, _accuracy)})
            for kind in kinds:
                group = [m for m, _ in heldout if m["kind"] == kind]
                if group:
                    row[f"{kind}_accuracy"] = _accuracy(group)
        if scored:
            overall = _accuracy([m for m, _ in scored])
            row.update({"accuracy": overall, "accuracy_minus_baseline": overall - _accuracy([b for _, b in scored]),
                        "accuracy_minus_baseline_ci95": _paired_difference(scored, _accuracy)})
        row["changed_vs_baseline"] = (float(np.mean([m["answer"] != b["answer"] for m, b in paired]))
                                      if paired else 0.0)
        row["answers_changed"] = int(sum(m["answer"] != b["answer"] for m, b in paired))
        seconds, steps = sum(m["seconds"] for m, _ in paired), sum(m["steps"] for m, _ in paired)
        row["seconds"] = seconds
        row["time_ratio_vs_baseline"] = seconds / base_seconds if base_seconds else float("nan")
        row["time_per_token_ratio_vs_baseline"] = ((seconds / steps) / (base_seconds / base_steps)
                                                   if steps and base_steps and base_seconds else float("nan"))
        rows.append(row)
    return rows


def compare_plots(rows: list[dict], records: list[dict], opts: dict) -> dict:
    """Each method's change in accuracy vs the baseline with its paired 95 % interval (yes/no, held-out, all)."""
    from var_core.eval.plots import result_figure

    measures = [m for m in ("pope_accuracy", "heldout_accuracy", "accuracy") if any(m in row for row in rows)]
    figure = result_figure()
    axes = figure.add_subplot()
    width = 0.8 / max(len(measures), 1)
    x = np.arange(len(rows))
    for k, measure in enumerate(measures):
        deltas = [row.get(f"{measure}_minus_baseline", np.nan) for row in rows]
        lows = [row.get(f"{measure}_minus_baseline_ci95", [np.nan, np.nan])[0] for row in rows]
        highs = [row.get(f"{measure}_minus_baseline_ci95", [np.nan, np.nan])[1] for row in rows]
        errors = [np.maximum(0, np.subtract(deltas, lows)), np.maximum(0, np.subtract(highs, deltas))]
        axes.bar(x + (k - (len(measures) - 1) / 2) * width, deltas, width, yerr=errors, capsize=3,
                 label=measure.replace("_", " "))
    axes.axhline(0, color="black", lw=1)
    axes.set_xticks(x, [row["condition"] for row in rows])
    axes.set_ylabel("Δ accuracy vs baseline (paired 95 % CI)")
    axes.set_title(f"methods vs baseline, n={rows[0]['n'] if rows else 0}")
    axes.legend(fontsize=9)
    return {"compare_delta": figure}


COMPARE = Experiment("compare", "every training-free method on the same samples vs the baseline: accuracy, paired "
                     "95-percent interval of the change, answers changed, wall-time ratio", compare_conditions, compute,
                     compare_rows, compare_plots, dataset="compare",
                     defaults={"methods": None, "params": {}, "per_kind": DEFAULT_PER_KIND})


def run_compare(bundle, samples: list[Sample], methods=None, params=None, max_new_tokens: int = 4, out=None,
                cache_dir=None, shard=(0, 1), show_bar: bool = False, options: dict | None = None):
    """The comparison as a function: methods (names or a comma list; default every registered method) and params
    ({method: {parameter: value}}) are checked against the model before the first sample."""
    from var_core.eval.runner import run_experiment

    methods = parse_methods(methods if methods is None or isinstance(methods, str) else ",".join(methods))
    params = params or {}
    for name in params:
        if name not in methods:
            raise ValueError(f"params for {name!r}, which is not among the compared methods ({', '.join(methods)})")
    check_methods(methods, params, bundle.num_layers)
    opts = {**(options or {}), "methods": methods, "params": params, "max_new_tokens": max_new_tokens}
    return run_experiment(COMPARE, bundle, samples, opts, out=out, cache_dir=cache_dir, shard=shard,
                          show_bar=show_bar)
