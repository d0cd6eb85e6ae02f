"""scripts/replay_test_schedule.py hands modules out as pytest-xdist's loadscope does."""
from __future__ import annotations

from scripts.replay_test_schedule import junit_durations, replay

# a long module, collected first (its first test holds its fixture's work), then shorter modules
# with more tests
IDS = [*(f"tests/a.py::t{i}" for i in range(3)), *(f"tests/b.py::t{i}" for i in range(4)),
       *(f"tests/c.py::t{i}" for i in range(5))]
DURATIONS = {"tests/a.py::t0": 90.0, "tests/a.py::t1": 5.0, "tests/a.py::t2": 5.0,
             **{f"tests/b.py::t{i}": 10.0 for i in range(4)}, **{f"tests/c.py::t{i}": 10.0 for i in range(5)}}


def _modules(worker) -> list[str]:
    return [scope for _, scope, _ in worker.modules]


def test_collection_order_starts_the_long_module_first():
    first, second = replay(IDS, DURATIONS, reorder=False)
    assert _modules(first) == ["tests/a.py"] and _modules(second) == ["tests/b.py", "tests/c.py"]
    assert (first.clock, second.clock) == (100.0, 90.0)


def test_xdist_s_default_order_hands_out_modules_by_number_of_tests():
    first, second = replay(IDS, DURATIONS, reorder=True)
    assert _modules(first) == ["tests/c.py"] and _modules(second) == ["tests/b.py", "tests/a.py"]
    # b had two tests left when the long module was handed to its worker, at 20 s
    assert second.modules[-1][0] == 20.0 and second.clock == 140.0


def test_a_worker_takes_its_next_module_with_two_tests_left():
    [worker] = replay(IDS, DURATIONS, workers=1, reorder=False)
    assert {scope: start for start, scope, _ in worker.modules} == {"tests/a.py": 0.0, "tests/b.py": 90.0,
                                                                   "tests/c.py": 120.0}
    assert worker.clock == 190.0


def test_a_worker_starting_a_module_of_one_or_two_tests_takes_a_second_module_at_once():
    ids = ["tests/one.py::t", *(f"tests/many.py::t{i}" for i in range(4)), "tests/last.py::t"]
    first, second = replay(ids, {test_id: 1.0 for test_id in ids}, reorder=False)
    assert _modules(first) == ["tests/one.py", "tests/last.py"] and _modules(second) == ["tests/many.py"]


def test_durations_come_from_a_junit_report(tmp_path):
    report = tmp_path / "run.xml"
    report.write_text('<testsuites><testsuite name="pytest">'
                      '<testcase classname="tests.unit.test_x" name="test_one" time="1.5"/>'
                      '<testcase classname="tests.unit.test_x" name="test_two[p]" time="0.25"/>'
                      '</testsuite></testsuites>')
    assert junit_durations(report) == {"tests/unit/test_x.py::test_one": 1.5, "tests/unit/test_x.py::test_two[p]": 0.25}
