"""The room detection smoke test's checks: what counts as a well-formed answer and as a found room."""
import pytest

from include.pipelines.smoke import room_detection as smoke

ROOMS = [[10, 10, 50, 50], [50, 10, 90, 50]]


def box(xyxy, confidence=0.9, name="room"):
    return {"class": name, "class_id": 0, "confidence": confidence, "xyxy": xyxy}


def test_iou():
    assert smoke.iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1
    assert smoke.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert smoke.iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0


def test_each_room_is_matched_once_by_the_most_confident_box():
    found = [box([11, 11, 49, 49], 0.9), box([10, 10, 50, 50], 0.8), box([52, 12, 88, 48], 0.7), box([0, 60, 9, 70], 0.6)]
    assert smoke.matched_rooms(found, ROOMS) == 2
    assert smoke.matched_rooms([], ROOMS) == 0
    assert smoke.matched_rooms([box([10, 10, 95, 50])], ROOMS) == 0  # one box over two rooms matches neither at IoU 0.5


def test_a_well_formed_answer_passes():
    answer = {"image": {"width": 100, "height": 60}, "boxes": [box([11, 11, 49, 49], 0.9), box([52, 12, 88, 48], 0.5)]}
    assert smoke.check_answer(answer, 100, 60, ("room",)) == []
    assert smoke.check_answer({"image": {"width": 100, "height": 60}, "boxes": []}, 100, 60, ("room",)) == []


@pytest.mark.parametrize("answer, problem", [
    ({"image": {"width": 50, "height": 60}, "boxes": []}, "expected {'width': 100, 'height': 60}"),
    ({"image": {"width": 100, "height": 60}}, "boxes is None, expected a list"),
    ({"image": {"width": 100, "height": 60}, "boxes": [box([1, 1, 5, 5], name="door")]}, "expected class (one of ['room'])"),
    ({"image": {"width": 100, "height": 60}, "boxes": [box([1, 1, 5, 5], 1.5)]}, "outside 0-1"),
    ({"image": {"width": 100, "height": 60}, "boxes": [box([1, 1, 500, 5])]}, "expected left < right <= 100"),
    ({"image": {"width": 100, "height": 60}, "boxes": [box([5, 1, 1, 5])]}, "expected left < right"),
    ({"image": {"width": 100, "height": 60}, "boxes": [box([1, 1, 5, 5], 0.2), box([1, 1, 5, 5], 0.9)]}, "not sorted"),
])
def test_malformed_answers_are_named(answer, problem):
    problems = smoke.check_answer(answer, 100, 60, ("room",))
    assert any(problem in p for p in problems), problems
