"""benchmarks/endpoint_latency.py, run as documented for one cheap workload with a few requests: so it never rots."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_endpoint_latency_benchmark_runs_for_cifar10(tmp_path):
    results = tmp_path / "rows.json"
    command = [sys.executable, "benchmarks/endpoint_latency.py", "--workloads", "cifar10", "--requests", "2",
               "--warmup", "1", "--concurrency", "1,2", "--workers", "1,2", "--threads", "1", "--json", str(results)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    rows = json.loads(results.read_text())
    cases = sorted({row["case"] for row in rows})
    assert len(cases) == 2, rows  # a single image and a batch
    for case in cases:
        assert [(row["workers"], row["clients"]) for row in rows if row["case"] == case] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["requests_per_s"] > 0, row
        if row["clients"] == 1:  # the in-process side, timed in turn with the endpoint, and the goal's verdict
            assert 0 < row["in_process_p50_ms"] <= row["in_process_p95_ms"] and row["ratio_p50"] > 0, row
            assert row["goal"] in ("meets", "MISSES") or row["goal"].startswith("n/a"), row
        else:
            assert row["in_process_p50_ms"] is None and row["goal"] == "", row
    assert "goal (p50 <= 1.10x, >= 100 ms)" in run.stdout
