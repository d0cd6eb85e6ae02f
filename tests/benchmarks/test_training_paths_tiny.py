"""benchmarks/training_paths.py --size tiny --device cpu runs both workloads' paths and prints figures: so the
benchmark, and the seams of the train.py files it imports, never rot. Not a speed budget: the figures only
have to be positive numbers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmarks" / "training_paths.py"
ROW = re.compile(r"^(?P<workload>cifar10|acoustic_shield) path=(?P<path>\S+) (?P<rest>.*)$", re.M)
FIGURES = {"cifar10": ("images_per_s", "time_to_target_s", "train_s", "first_step_s"),
           "acoustic_shield": ("ms_per_step", "p50_ms", "clips_per_s", "first_step_s")}


def positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("training-paths") / "figures.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(BENCHMARK), "--size", "tiny", "--device", "cpu",
                             "--workloads", "cifar10,acoustic_shield", "--json", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_both_paths_of_both_workloads_ran_and_printed_positive_figures(tiny_run):
    log, _ = tiny_run
    assert re.search(r"^training paths benchmark: size=tiny device=cpu torch=\S+ .*cpus=\d+ .*gpu=none", log, re.M), log
    rows = {(m["workload"], m["path"]): dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", m["rest"])) for m in ROW.finditer(log)}
    for workload, figures in FIGURES.items():
        for path in ("plain", "train.py"):
            row = rows.get((workload, path))
            assert row is not None, f"no {workload} {path} row in\n{log}"
            assert "error" not in row and "skipped" not in row, row
            assert json.loads(row["options"]), row  # each row says what it ran with
            for figure in figures:
                assert positive(row[figure]), (workload, path, figure, row)
    # on CPU the CUDA-only variants are reported as skipped, not silently dropped
    for path in ("train.py+device-data", "train.py+device-data+compile"):
        assert "skipped" in rows[("cifar10", path)], rows


@pytest.mark.slow
def test_ratios_against_the_plain_recipe_are_printed(tiny_run):
    log, figures = tiny_run
    throughput = re.search(r"^ratio cifar10 train\.py/plain throughput=([0-9.]+)x time_to_target=([0-9.]+)x", log, re.M)
    step_time = re.search(r"^ratio acoustic_shield train\.py/plain step_time=([0-9.]+)x speedup=([0-9.]+)x", log, re.M)
    assert throughput and step_time, log
    assert all(positive(value) for value in (*throughput.groups(), *step_time.groups()))
    assert figures["machine"]["device"] == "cpu" and figures["size"] == "tiny"
    assert {(r["workload"], r["path"]) for r in figures["ratios"]} == {("cifar10", "train.py"), ("acoustic_shield", "train.py")}
