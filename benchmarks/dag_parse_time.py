"""How long each DAG file takes to parse beyond the shared Airflow imports (target: well under 200 ms).

    .venv/bin/python benchmarks/dag_parse_time.py [--runs 5]

Each run is a fresh interpreter: it first imports what every DAG shares (the Task SDK with its
TaskFlow decorators, and the Amazon provider's SageMaker and S3 operators), then times executing one
DAG file: our own imports, the workload config, and building the DAG. Prints the median per file and
its ratio to the 200 ms budget, side by side in one run.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 200.0

PROBE = """
import runpy, sys, time
sys.path[:0] = [{root!r}, {root!r} + "/dags", {root!r} + "/plugins"]
import airflow.sdk  # noqa: F401  shared by every DAG file
from airflow.sdk import dag, task  # noqa: F401  (the TaskFlow decorators load the standard provider)
import airflow.sdk.definitions.decorators  # noqa: F401
import yaml  # noqa: F401  (Airflow itself imports it)
import airflow.timetables.interval, airflow.timetables.trigger  # noqa: E401,F401  (any scheduled DAG)
import airflow.providers.amazon.aws.operators.sagemaker  # noqa: F401
import airflow.providers.amazon.aws.operators.s3  # noqa: F401
started = time.perf_counter()
runpy.run_path({path!r}, run_name="dag_file")
print((time.perf_counter() - started) * 1000)
"""


def parse_ms(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=str(ROOT), path=str(path))],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'DAG file':<36} {'median ms':>10} {'min ms':>8} {'/ budget':>9}")
    for path in sorted((ROOT / "dags").glob("*.py")):
        times = [parse_ms(path) for _ in range(args.runs)]
        median = statistics.median(times)
        print(f"{path.name:<36} {median:>10.1f} {min(times):>8.1f} {median / BUDGET_MS:>9.2f}")


if __name__ == "__main__":
    main()
