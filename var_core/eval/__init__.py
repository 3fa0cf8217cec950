"""Experiments that reproduce the paper's evidence and VAR's effect (`python -m var_core.eval <subcommand>`).

Sub-commands: pope, ablate, sweep, mask, contribution, sinks, merge. Each writes a table (CSV + JSON), the
per-sample records and PNG plots into `--out`; per-sample results are cached (resumable) and runs can be sharded
(`--shard i/n`, or `accelerate launch`) and merged. `var_core.eval.quick.run_quick` runs small versions in-process.
"""
