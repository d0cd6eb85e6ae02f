"""Replay a test run's durations under pytest-xdist's loadscope scheduling, to compare module orders.

    .venv/bin/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder --junitxml=run.xml
    .venv/bin/python scripts/replay_test_schedule.py run.xml            # this suite's order, both ways

It collects the tests (`pytest --collect-only`, so tests/conftest.py's order applies), takes each
test's time from the JUnit file, and hands modules to workers as xdist 3's LoadScopeScheduling does:
one module to each worker, then another to any worker with two tests or fewer left, and so on as
tests finish. It prints each worker's modules and the replayed wall time, with xdist's default order
(modules by number of tests) and with --no-loadscope-reorder (collection order). A replay keeps each
test's measured time, so it shows what the order costs, not what running the modules beside
different neighbours would change.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFETCH_LEFT = 2  # xdist's LoadScopeScheduling._reschedule: a worker gets more work at <= 2 pending tests


def junit_durations(path: Path) -> dict[str, float]:
    """Test id (path::name) -> seconds (setup, call and teardown) from a JUnit XML report."""
    durations = {}
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        durations[f"{module}::{case.get('name')}"] = float(case.get("time") or 0)
    return durations


def collected_ids(pytest_args: list[str]) -> list[str]:
    """The suite's test ids in collection order."""
    listing = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              *pytest_args], capture_output=True, text=True, cwd=ROOT, check=False)
    ids = [line.strip() for line in listing.stdout.splitlines() if "::" in line]
    if not ids:
        raise SystemExit(f"pytest collected nothing:\n{listing.stdout[-2000:]}{listing.stderr[-2000:]}")
    return ids


@dataclass
class Worker:
    name: str
    pending: deque = field(default_factory=deque)
    clock: float = 0.0
    modules: list = field(default_factory=list)  # (when it was handed over, module, its seconds)


def replay(ids: list[str], durations: dict[str, float], *, workers: int = 2, reorder: bool = True) -> list[Worker]:
    """Each worker's modules and finishing time, as xdist's loadscope would hand them out."""
    scopes: dict[str, list[str]] = {}  # in collection order
    for test_id in ids:
        scopes.setdefault(test_id.rsplit("::", 1)[0], []).append(test_id)
    queue = deque(sorted(scopes.items(), key=lambda item: -len(item[1])) if reorder else scopes.items())
    nodes = [Worker(f"gw{i}") for i in range(workers)]

    def assign(node: Worker) -> None:
        scope, tests = queue.popleft()
        node.modules.append((node.clock, scope, sum(durations.get(t, 0.0) for t in tests)))
        node.pending.extend(tests)

    def reschedule(node: Worker) -> None:
        if queue and len(node.pending) <= PREFETCH_LEFT:
            assign(node)

    for node in nodes:
        if queue:
            assign(node)
    for node in nodes:
        reschedule(node)
    while any(node.pending for node in nodes):
        node = min((n for n in nodes if n.pending), key=lambda n: n.clock + durations.get(n.pending[0], 0.0))
        node.clock += durations.get(node.pending.popleft(), 0.0)
        reschedule(node)
    return nodes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("junit", type=Path, help="a JUnit XML report of a whole run (pytest --junitxml)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shown", type=float, default=30, help="list modules of at least this many seconds")
    args, pytest_args = parser.parse_known_args(argv)
    durations = junit_durations(args.junit)
    ids = collected_ids(pytest_args)
    missing = [t for t in ids if t not in durations]
    if missing:
        print(f"{len(missing)} collected tests are not in {args.junit} (counted as 0 s), e.g. {missing[0]}")
    ideal = sum(durations.get(t, 0.0) for t in ids) / args.workers
    for label, reorder in (("xdist's order (by number of tests)", True), ("--no-loadscope-reorder", False)):
        nodes = replay(ids, durations, workers=args.workers, reorder=reorder)
        print(f"{label}: {max(n.clock for n in nodes):.0f} s (all tests / workers: {ideal:.0f} s)")
        for node in nodes:
            shown = ", ".join(f"{Path(scope).name} {seconds:.0f} s (handed over at {start:.0f})"
                              for start, scope, seconds in node.modules if seconds >= args.shown)
            print(f"  {node.name} ends at {node.clock:.0f} s: {shown}")


if __name__ == "__main__":
    main()
