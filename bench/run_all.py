"""`make bench`: every benchmark, then one table of figure / target / measured / pass."""

from __future__ import annotations

from bench import bench_app, bench_generation, bench_memory, bench_soak, bench_views


def main() -> None:
    checks = []
    for module in (bench_views, bench_generation, bench_memory, bench_app, bench_soak):
        print(f"\n== {module.__name__}")
        checks += module.main()["checks"]
    print("\n| figure | target | measured | pass |\n| --- | --- | --- | --- |")
    for check in checks:
        print(f"| {check['figure']} | {check['target']} | {check['measured']} | {'yes' if check['pass'] else 'NO'} |")


if __name__ == "__main__":
    main()
