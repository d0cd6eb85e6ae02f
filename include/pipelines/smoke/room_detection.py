"""Room detection smoke test: floor plans as PNG and JPEG, each answer checked; then a truncated image,
an empty body and a body that is no image must each get a client error, and the endpoint must go on serving."""
from __future__ import annotations

import io
import json
import logging

from . import SmokeTestFailed, encoder_library, png_bytes

log = logging.getLogger(__name__)

IMAGE_SIZE = 256  # larger than the local profile's training size: the boxes must come back in the sent image's pixels
MATCH_IOU = 0.5


def jpeg_bytes(image) -> bytes:
    """An HxWx3 uint8 array as JPEG bytes (quality 95), with Pillow: the one body here that needs a library."""
    pil_image = encoder_library("PIL.Image", "Pillow", "The room_detection smoke test (its JPEG floor plan)")
    buffer = io.BytesIO()
    pil_image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def iou(a, b) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


def matched_rooms(found: list[dict], truth) -> int:
    """Rooms of `truth` that some found box overlaps at IoU >= 0.5 (each box matched once, best first)."""
    free = list(range(len(truth)))
    matched = 0
    for box in found:  # the endpoint sorts by confidence
        scores = [(iou(box["xyxy"], truth[i]), i) for i in free]
        if scores and max(scores)[0] >= MATCH_IOU:
            free.remove(max(scores)[1])
            matched += 1
    return matched


def check_answer(answer: dict, width: int, height: int, class_names) -> list[str]:
    """What is wrong with one answer, against the documented JSON ([] when nothing is)."""
    problems = []
    if answer.get("image") != {"width": width, "height": height}:
        problems.append(f"image is {answer.get('image')!r}, expected {{'width': {width}, 'height': {height}}}")
    boxes = answer.get("boxes")
    if not isinstance(boxes, list):
        return problems + [f"boxes is {boxes!r}, expected a list"]
    for index, box in enumerate(boxes):
        xyxy = box.get("xyxy") if isinstance(box, dict) else None
        if not isinstance(box, dict) or box.get("class") not in class_names or not isinstance(box.get("confidence"), (int, float)):
            problems.append(f"boxes[{index}] = {box!r}: expected class (one of {list(class_names)}), confidence and xyxy")
        elif not 0 <= box["confidence"] <= 1:
            problems.append(f"boxes[{index}].confidence is {box['confidence']}, outside 0-1")
        elif not (isinstance(xyxy, list) and len(xyxy) == 4 and -1 <= xyxy[0] < xyxy[2] <= width + 1
                  and -1 <= xyxy[1] < xyxy[3] <= height + 1):
            problems.append(f"boxes[{index}].xyxy is {xyxy!r}: expected left < right <= {width}, top < bottom <= {height}")
    confidences = [b.get("confidence", 0) for b in boxes if isinstance(b, dict)]
    if confidences != sorted(confidences, reverse=True):
        problems.append("boxes are not sorted by confidence, highest first")
    return problems


def _invoke(endpoint_name: str, body: bytes, content_type: str, aws_conn_id: str) -> tuple[dict, str]:
    from include.pipelines.smoke import invoke_endpoint

    answer_type, answer, variant = invoke_endpoint(endpoint_name, body, content_type=content_type,
                                                   accept="application/json", aws_conn_id=aws_conn_id)
    if not answer_type.startswith("application/json"):
        raise SmokeTestFailed(f"{endpoint_name} answered {answer_type}, expected application/json")
    return json.loads(answer), variant


def smoke_test(endpoint_name: str, *, images: int = 2, aws_conn_id: str = "aws_default") -> dict:
    """Send floor plans (PNG, then JPEG, ...) and check each answer; then bad bodies must get a 4xx, and a plan an answer."""
    from botocore.exceptions import ClientError

    from include.datasets.room_detection import CLASS_NAMES, sample_plans

    results = []
    for index, plan in enumerate(sample_plans(images, seed=7, size=IMAGE_SIZE)):
        content_type, body = ("image/png", png_bytes(plan.image)) if index % 2 == 0 else ("image/jpeg", jpeg_bytes(plan.image))
        answer, variant = _invoke(endpoint_name, body, content_type, aws_conn_id)
        problems = check_answer(answer, IMAGE_SIZE, IMAGE_SIZE, CLASS_NAMES)
        if problems:
            raise SmokeTestFailed(f"{endpoint_name} answered a {content_type} floor plan with {answer!r}: " + "; ".join(problems))
        matched = matched_rooms(answer["boxes"], plan.boxes.tolist())
        log.info("%s: %s plan with %d rooms -> %d boxes, %d rooms matched at IoU >= %.1f (variant %s)", endpoint_name,
                 content_type, len(plan.boxes), len(answer["boxes"]), matched, MATCH_IOU, variant)
        results.append({"content_type": content_type, "rooms": len(plan.boxes), "boxes": len(answer["boxes"]),
                        "matched": matched, "top_box": answer["boxes"][0] if answer["boxes"] else None})

    # a client's broken upload must be its error (4xx), and must not take the endpoint down
    truncated = png_bytes(sample_plans(1, seed=8, size=IMAGE_SIZE)[0].image)[:200]
    bad_inputs = {}
    for name, body, content_type in (("truncated_png", truncated, "image/png"), ("empty_body", b"", "image/png"),
                                     ("not_an_image", b"floor plan, honest", "image/jpeg")):
        try:
            _invoke(endpoint_name, body, content_type, aws_conn_id)
        except ClientError as error:
            status = error.response.get("OriginalStatusCode")
            code = error.response.get("Error", {}).get("Code")
            if code != "ModelError" or not (isinstance(status, int) and 400 <= status < 500):
                raise SmokeTestFailed(f"{endpoint_name} answered {name} with {code} {status}, expected ModelError "
                                      f"with a 4xx OriginalStatusCode: {error}") from error
            bad_inputs[name] = {"error": code, "status": status, "message": error.response.get("OriginalMessage", "")}
            log.info("%s refused %s: %s %s %s", endpoint_name, name, code, status, bad_inputs[name]["message"])
        else:
            raise SmokeTestFailed(f"{endpoint_name} accepted {name}; it must refuse it with a 4xx client error")
    plan = sample_plans(1, seed=9, size=IMAGE_SIZE)[0]
    answer, _ = _invoke(endpoint_name, png_bytes(plan.image), "image/png", aws_conn_id)
    problems = check_answer(answer, IMAGE_SIZE, IMAGE_SIZE, CLASS_NAMES)
    if problems:
        raise SmokeTestFailed(f"{endpoint_name} stopped answering properly after a bad request: " + "; ".join(problems))

    return {"endpoint": endpoint_name, "requests": len(results) + len(bad_inputs) + 1, "images": results,
            "rooms": sum(r["rooms"] for r in results), "matched": sum(r["matched"] for r in results),
            "bad_inputs": bad_inputs, "served_after_bad_inputs": True}
