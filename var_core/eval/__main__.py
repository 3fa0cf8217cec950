"""`python -m var_core.eval <subcommand>`: run an experiment (or merge shards) and write table + plots to --out.

Examples (the exact commands behind results/ are in results/README.md):
  python -m var_core.eval pope --n 200 --out results/pope
  python -m var_core.eval sweep --n 60 --ps 0.2,0.5,0.8 --rhos 0.3,0.5,0.7 --taus registry,15 --out results/sweep
  python -m var_core.eval pope --pope-file coco_pope_random.jsonl --image-dir val2014 --model llava-hf/llava-1.5-7b-hf
  python -m var_core.eval pope --n 1000 --shard 0/4 --out runs/s0   (… 1/4, 2/4, 3/4), then
  python -m var_core.eval merge --out runs/all runs/s0 runs/s1 runs/s2 runs/s3
  accelerate launch --num_processes 4 -m var_core.eval pope --n 1000 --shard auto --out runs/s   (RANK → own folder)
  python -m var_core.eval compare --methods baseline,var,pai,vaf --params pai.alpha=0.5 --n 200 --per-kind 25 \
      --out results/compare   (every registered method without --methods; the baseline always)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from var_core import __version__
from var_core.eval.runner import DEFAULTS, merge, run_experiment
from var_core.eval.shard import parse_shard

# The sub-commands' names and descriptions (EXPERIMENTS'), kept here so that the parser needs no torch: the modules
# that define the experiments import it. tests/test_cli_fast.py checks that the two agree.
COMMANDS = {
    "pope": "yes/no object existence, VAR off vs on",
    "ablate": "VAR with/without head selection (Table 4), budget to visual/text (Table 5)",
    "sweep": "grid over p, ρ (and τ): F1 heatmaps",
    "mask": "masking visual sinks vs as many random visual tokens (Fig. 3b)",
    "contribution": "attention contribution of sink vs random visual tokens (Fig. 3c)",
    "sinks": "sink positions across questions on the same image, and across images",
    "compare": "every training-free method on the same samples vs the baseline: accuracy, paired 95-percent interval "
               "of the change, answers changed, wall-time ratio",
}


ALLOW_ANY_HINT = "add --allow-any-model to this command to load other models of a supported architecture"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _taus(text: str) -> list[float | None]:
    return [None if v.strip() in ("registry", "none", "") else float(v) for v in text.split(",")]


def _tau(text: str) -> float | None:
    return _taus(text)[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m var_core.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"visual-sink-lens-eval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, description in COMMANDS.items():
        p = sub.add_parser(name, help=description, description=description)
        p.add_argument("--out", required=True, help="output folder (table.csv, summary.json, records.jsonl, *.png)")
        p.add_argument("--n", type=int, default=40, help="samples (images for `sinks`); a limit for --pope-file")
        p.add_argument("--seed", type=int, default=0, help="which synthetic scenes (different seed, other scenes)")
        p.add_argument("--pope-file", help="POPE-format jsonl (image, text, label) instead of the synthetic scenes")
        p.add_argument("--image-dir", help="folder of the POPE file's images")
        p.add_argument("--images", help="folder of images (sinks/contribution; no labels)")
        p.add_argument("--model", default="default", help="'default' (embedded model), a catalog model id, or with "
                                                           "--allow-any-model any hub id or local folder of a "
                                                           "supported architecture")
        p.add_argument("--allow-any-model", action="store_true",
                       help="load --model ids off the allow-list (hub ids, local folders) of a supported architecture")
        p.add_argument("--weights", help="default model only: a weights file (tower + projector + adapters) to use instead of "
                                         "assets/default_model.safetensors")
        p.add_argument("--device", help="e.g. cuda:0 (default: the loader's choice)")
        p.add_argument("--threads", type=int, help="torch CPU threads")
        p.add_argument("--shard", help="i/n: run every n-th image starting at i; 'auto' = RANK/WORLD_SIZE")
        p.add_argument("--cache", help="cache folder (default OUT/cache); share it between runs to reuse results")
        p.add_argument("--no-bar", action="store_true", help="no progress bar")
        p.add_argument("--p", type=float, default=DEFAULTS["p"], help="fraction of sink attention moved")
        p.add_argument("--rho", type=float, default=DEFAULTS["rho"], help="head selection: visual non-sink ratio")
        p.add_argument("--tau", type=_tau, default=None, help="φ threshold (default: the backbone's registry value)")
        p.add_argument("--layers", type=lambda t: [int(v) for v in t.split(",")], help="VAR layers (default 2…L−2)")
        p.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"])
        p.add_argument("--ps", type=_floats, default=DEFAULTS["ps"], help="sweep: p values, comma-separated")
        p.add_argument("--rhos", type=_floats, default=DEFAULTS["rhos"], help="sweep: ρ values")
        p.add_argument("--taus", type=_taus, default=DEFAULTS["taus"], help="sweep: τ values ('registry' = default)")
        p.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=DEFAULTS["seeds"],
                       help="mask: random-mask seeds")
        p.add_argument("--k", type=int, default=DEFAULTS["k"], help="top-k φ set size (mask rule topk, probes)")
        p.add_argument("--mask-rule", choices=("tau", "topk"), default=DEFAULTS["mask_rule"],
                       help="mask: 'tau' masks the visual sinks φ > τ, 'topk' the k highest-φ visual tokens")
        if name == "compare":
            p.add_argument("--methods", default=None,
                           help="comma-separated registered methods (default: all of them; an unknown name lists "
                                "them); the baseline is always included")
            p.add_argument("--params", action="append", default=[],
                           help="method.parameter=value overrides, comma-separated or repeated (e.g. pai.alpha=0.5)")
            p.add_argument("--per-kind", type=int,
                           help="held-out questions per kind (colour, shape, count, position) and scene family; "
                                "0 = yes/no only (default: the compare experiment's)")
            p.add_argument("--families", type=lambda t: [f for f in t.split(",") if f],
                           help="held-out scene families, comma-separated (default: training-like,shifted; "
                                "also: large)")
    m = sub.add_parser("merge", help="combine shard folders into one table")
    m.add_argument("--out", required=True)
    m.add_argument("inputs", nargs="+", help="the --out folders of the shard runs")
    m.add_argument("--cache", help=argparse.SUPPRESS)
    return parser


def load_bundle(model: str, device: str | None, weights: str | None = None, allow_any: bool = False):
    if model == "default":
        from var_core.models.default import load_default_model
        return load_default_model(device, weights)  # weights: e.g. `git show REV:assets/default_model.safetensors > w`
    from var_core.models.catalog import load_model
    bundle = load_model(model, allow_any=allow_any, how_to_allow=ALLOW_ANY_HINT)
    return bundle if device is None else _moved(bundle, device)


def _moved(bundle, device):
    bundle.model.to(device)
    return bundle


def main(argv=None, bundle=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # after parsing, so that --help and --version need no torch (these modules import it)
    from var_core.eval.compare import COMPARE, COMPARE_FAMILIES, check_methods, parse_methods, parse_params, run_compare
    from var_core.eval.experiments import EXPERIMENTS, make_samples
    if args.command == "compare":
        args.per_kind = COMPARE.defaults["per_kind"] if args.per_kind is None else args.per_kind
        try:  # names and parameters before loading anything; the layers once the model is there
            methods = parse_methods(args.methods)
            params = parse_params(args.params, methods)
            check_methods(methods, params)
        except ValueError as error:
            parser.error(str(error))
    if args.command == "merge":
        result = merge(EXPERIMENTS, args.inputs, out=args.out)
    else:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        shard = parse_shard(args.shard)
        out = Path(args.out)
        if args.shard == "auto" and shard[1] > 1:
            out = out.with_name(f"{out.name}-shard{shard[0]}of{shard[1]}")
        try:
            samples = make_samples(args.command, args.n, args.seed, args.pope_file, args.image_dir, args.images,
                                   getattr(args, "per_kind", None), getattr(args, "families", None))
        except ValueError as error:
            parser.error(str(error))
        if bundle is None:
            device = args.device
            if args.shard == "auto" and device is None and shard[1] > 1:
                import os
                import torch
                if torch.cuda.is_available():
                    device = f"cuda:{os.environ.get('LOCAL_RANK', shard[0])}"
            bundle = load_bundle(args.model, device, args.weights, args.allow_any_model)
        options = {k: getattr(args, k) for k in ("p", "rho", "tau", "layers", "ps", "rhos", "taus", "seeds", "k",
                                                  "mask_rule", "max_new_tokens")}
        if args.command == "sweep" and args.tau is not None and args.taus == DEFAULTS["taus"]:
            options["taus"] = [args.tau]  # `sweep --tau 15` sweeps p × ρ at that τ
        options["dataset"] = ("pope-file:" + Path(args.pope_file).name if args.pope_file else
                              "images:" + str(args.images) if args.images else f"synthetic seed {args.seed}")
        if args.command == "compare":
            try:
                check_methods(methods, params, bundle.num_layers)  # before the first sample
            except ValueError as error:
                parser.error(str(error))
            result = run_compare(bundle, samples, methods, params, args.max_new_tokens, out=out, cache_dir=args.cache,
                                 shard=shard, show_bar=not args.no_bar,
                                 options={"dataset": options["dataset"], "per_kind": args.per_kind, "seed": args.seed,
                                          "families": args.families or list(COMPARE_FAMILIES)})
        else:
            result = run_experiment(EXPERIMENTS[args.command], bundle, samples, options, out=out,
                                    cache_dir=args.cache, shard=shard, show_bar=not args.no_bar)
        args.out = str(out)
    print(json.dumps(result.rows, indent=1, default=str))
    print(f"wrote {args.out}/table.csv, summary.json, records.jsonl and {len(result.figures)} plot(s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
