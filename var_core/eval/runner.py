"""Run an experiment over samples (cached, sharded, with progress), write its outputs, merge shards."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from var_core.config import VARConfig
from var_core.eval.cache import ResultCache, model_fingerprint, settings_hash
from var_core.eval.datasets import Sample
from var_core.eval.shard import take_shard

DEFAULTS = {
    "p": 0.4,  # paper convention: fraction moved (official config keeps 0.6 → moves 0.4)
    "rho": 0.5,
    "tau": None,  # None = the backbone's registry value (20 for every current backbone)
    "layers": None,  # None = 2 … L−2 as the official code
    "ps": [0.2, 0.4, 0.6, 0.8],
    "rhos": [0.3, 0.5, 0.7],
    "taus": [None],
    "seeds": [0, 1, 2],
    "k": 4,  # top-k φ tokens (mask rule "topk", contribution / sinks comparison sets)
    "mask_rule": "tau",  # "tau": mask the visual sinks φ > τ; "topk": mask the k highest-φ visual tokens
    "max_new_tokens": 4,
}

CACHE_VERSION = 1  # bump when a compute function changes what it returns

Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass
class Experiment:
    """One sub-command. conditions(opts) → [(name, settings)]; compute(bundle, sample, settings, done) → JSON result
    (done: this sample's earlier conditions by name); summarize(records, opts) → table rows;
    plots(rows, records, opts) → {file stem: matplotlib Figure}."""

    name: str
    description: str
    conditions: Callable[[dict], list[tuple[str, dict]]]
    compute: Callable
    summarize: Callable[[list[dict], dict], list[dict]]
    plots: Callable[[list[dict], list[dict], dict], dict]
    dataset: str = "pope"  # which synthetic set it uses by default: "pope" or "multi" (several questions/image)
    defaults: dict = field(default_factory=dict)


@dataclass
class Result:
    rows: list[dict]
    records: list[dict]
    figures: dict
    meta: dict


def run_experiment(experiment: Experiment, bundle, samples: list[Sample], options: dict | None = None, out=None,
                   cache_dir=None, shard: tuple[int, int] = (0, 1), progress: Progress | None = None,
                   show_bar: bool = True) -> Result:
    """Every condition on every sample of this shard; results come from the cache when present.

    out: folder for table.csv / summary.json / records.jsonl / experiment.json / *.png (None = write nothing);
    cache_dir: default out/cache (None with out=None: memory only).
    """
    opts = {**DEFAULTS, **experiment.defaults, **(options or {})}
    opts["layers_resolved"] = list(VARConfig(layers=opts.get("layers")).resolve_layers(bundle.num_layers))
    conditions = experiment.conditions(opts)
    mine = take_shard(samples, shard)
    index_of = {s.id: i for i, s in enumerate(samples)}
    cache_dir = cache_dir if cache_dir is not None else (Path(out) / "cache" if out is not None else None)
    cache = ResultCache(cache_dir, writer=f"{experiment.name}-shard{shard[0]}of{shard[1]}")
    fingerprint = model_fingerprint(bundle)
    total, done_count, fresh, start = len(mine) * len(conditions), 0, 0, time.perf_counter()
    records = []
    bar = tqdm(total=total, desc=f"{experiment.name} {shard[0]}/{shard[1]}", disable=not show_bar, unit="run")
    for sample in mine:
        done: dict[str, dict] = {}
        for name, settings in conditions:
            identity = {"v": CACHE_VERSION, "model": fingerprint, "source": sample.source, "question": sample.question}
            key = f"{sample.id}|{settings_hash({**identity, **settings})}"
            result = cache.get(key)
            if result is None:
                result = experiment.compute(bundle, sample, settings, done)
                cache.put(key, result)
                fresh += 1
            done[name] = result
            records.append({"sample_id": sample.id, "index": index_of[sample.id], "image_id": sample.image_id,
                            "question": sample.question, "label": sample.label, "condition": name, **result})
            done_count += 1
            bar.update(1)
            if progress is not None:
                progress(done_count, total, f"{sample.id} · {name}")
    bar.close()
    meta = {"experiment": experiment.name, "model": fingerprint, "options": opts,
            "conditions": [[n, s] for n, s in conditions], "shard": list(shard), "samples": len(samples),
            "samples_in_shard": len(mine), "runs_computed": fresh, "runs_from_cache": total - fresh,
            "seconds": round(time.perf_counter() - start, 1)}
    return finish(experiment, records, opts, meta, out)


def finish(experiment: Experiment, records: list[dict], opts: dict, meta: dict, out=None) -> Result:
    """Summarize (records sorted by sample then condition, so shard order never matters), plot, write."""
    order = {name: i for i, (name, _) in enumerate(meta["conditions"])}
    records = sorted(records, key=lambda r: (r["index"], order.get(r["condition"], 0)))
    rows = experiment.summarize(records, opts)
    figures = experiment.plots(rows, records, opts)
    if out is not None:
        write_outputs(Path(out), rows, records, figures, meta)
    return Result(rows, records, figures, meta)


def _clean(value):
    """JSON-safe: nan/inf → None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_outputs(out: Path, rows, records, figures, meta) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with (out / "table.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    (out / "summary.json").write_text(json.dumps(_clean({"meta": meta, "rows": rows}), indent=1))
    (out / "experiment.json").write_text(json.dumps(_clean(meta), indent=1))
    with (out / "records.jsonl").open("w") as file:
        for record in records:
            file.write(json.dumps(_clean(record)) + "\n")
    for stem, figure in figures.items():
        figure.savefig(out / f"{stem}.png", dpi=110)


def merge(experiments: dict[str, Experiment], inputs, out=None) -> Result:
    """Combine shard folders (each with experiment.json + records.jsonl) into one table, as one run would give."""
    metas, records, seen = [], [], set()
    for folder in map(Path, inputs):
        if not (folder / "experiment.json").is_file():
            raise ValueError(f"{folder} has no experiment.json: give the --out folders of the shard runs")
        metas.append(json.loads((folder / "experiment.json").read_text()))
        for line in (folder / "records.jsonl").read_text().splitlines():
            record = json.loads(line)
            key = (record["sample_id"], record["condition"])
            if key not in seen:
                seen.add(key)
                records.append(record)
    first = metas[0]
    for meta in metas[1:]:
        for field_name in ("experiment", "model", "options", "conditions", "samples"):
            if meta[field_name] != first[field_name]:
                raise ValueError(f"cannot merge: shards differ in {field_name} ({meta[field_name]!r} vs "
                                 f"{first[field_name]!r})")
    shards = sorted(tuple(m["shard"]) for m in metas)
    meta = {**first, "shard": [0, 1], "merged_from": [list(s) for s in shards],
            "runs_computed": sum(m["runs_computed"] for m in metas),
            "runs_from_cache": sum(m["runs_from_cache"] for m in metas),
            "seconds": round(sum(m["seconds"] for m in metas), 1),
            "samples_in_shard": len({r["sample_id"] for r in records})}
    expected = {(i, first["shard"][1]) for i in range(first["shard"][1])}
    if set(shards) != expected:
        meta["warning"] = f"shards {shards} do not cover {sorted(expected)}"
    return finish(experiments[first["experiment"]], records, first["options"], meta, out)
