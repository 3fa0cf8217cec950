"""Split a dataset into shards (`--shard i/n`, or the RANK / WORLD_SIZE that `accelerate launch` sets)."""

from __future__ import annotations

import os


def parse_shard(text: str | None) -> tuple[int, int]:
    """"i/n" → (i, n) with 0 ≤ i < n; None or "auto" → from RANK/WORLD_SIZE env (accelerate, torchrun), else (0, 1)."""
    if text is None or text == "auto":
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 ≤ i < n")
    return index, count


def take_shard(items: list, shard: tuple[int, int]) -> list:
    """Every n-th item starting at i (interleaved, so shards get similar mixes); images stay together when the
    items carry an `image_id` (all questions about one image land in the same shard)."""
    index, count = shard
    if count == 1:
        return list(items)
    groups: dict[str, int] = {}
    for item in items:
        groups.setdefault(getattr(item, "image_id", id(item)), len(groups))
    return [item for item in items if groups[getattr(item, "image_id", id(item))] % count == index]
