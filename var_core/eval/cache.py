"""Resumable per-sample results: append-only jsonl files keyed by sample id + a hash of the settings.

Each writer (one shard / process) appends to its own file; a reader sees every file in the folder, so shards,
reruns and different experiments with the same settings (e.g. the VAR-off baseline) reuse each other's results.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def settings_hash(settings) -> str:
    """Short stable hash of a JSON-able settings object (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def model_fingerprint(bundle) -> str:
    """Model name + a hash of its weights file when it has one (so retrained weights invalidate the cache)."""
    weights = bundle.extra.get("weights") if getattr(bundle, "extra", None) else None
    if weights and Path(weights).is_file():
        digest = hashlib.sha1(Path(weights).read_bytes()).hexdigest()[:12]
        return f"{bundle.name}@{digest}"
    return bundle.name


class ResultCache:
    """dict-like store of JSON results; `directory=None` keeps them in memory only (quick runs, tests)."""

    def __init__(self, directory=None, writer: str = "results"):
        self.directory = None if directory is None else Path(directory)
        self.entries: dict[str, dict] = {}
        self.path = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for file in sorted(self.directory.glob("*.jsonl")):
                for line in file.read_text().splitlines():
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a killed run: recompute it
                    self.entries[entry["key"]] = entry["result"]
            self.path = self.directory / f"{writer}-{os.getpid()}.jsonl"

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, result: dict) -> None:
        self.entries[key] = result
        if self.path is not None:
            with self.path.open("a") as file:
                file.write(json.dumps({"key": key, "result": result}) + "\n")

    def __len__(self) -> int:
        return len(self.entries)
