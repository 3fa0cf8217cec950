"""`make bench`: every benchmark, each in a fresh process, then one table of figure / target / measured / pass.

A fresh process per benchmark keeps each one's timings and peak memory its own, and keeps every process to one
thread running torch (see var_core.models.slot). Exits non-zero when a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import RESULTS, bench_device

BENCHMARKS = ("views", "explain", "generation", "methods", "scaling", "memory", "trace_memory", "app", "soak", "load")


def main() -> int:
    start = time.perf_counter()
    print(f"device: {bench_device()[2]}", flush=True)
    checks = []
    for name in BENCHMARKS:
        print(f"\n== bench_{name}", flush=True)
        subprocess.run([sys.executable, "-m", f"bench.bench_{name}"], check=True)
        checks += json.loads((RESULTS / f"{name}.json").read_text())["checks"]
    print("\n| figure | target | measured | pass |\n| --- | --- | --- | --- |")
    for check in checks:
        print(f"| {check['figure']} | {check['target']} | {check['measured']} | {'yes' if check['pass'] else 'NO'} |")
    failed = [check["figure"] for check in checks if not check["pass"]]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks pass; device: {bench_device()[2]}; "
          f"{(time.perf_counter() - start) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
