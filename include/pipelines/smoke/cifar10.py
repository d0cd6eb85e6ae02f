"""CIFAR-10 smoke test: PNG images of known classes, each answer checked."""
from __future__ import annotations

import json
import logging

from . import SmokeTestFailed, png_bytes

log = logging.getLogger(__name__)


def smoke_test(endpoint_name: str, *, images: int = 4, aws_conn_id: str = "aws_default") -> dict:
    """Send PNG images of known classes; each answer must name a CIFAR-10 class with probabilities summing to 1."""
    from include.datasets.cifar10 import LABEL_NAMES, sample_images
    from include.pipelines.smoke import invoke_endpoint

    results = []
    for label, image in sample_images(images):
        content_type, body, variant = invoke_endpoint(
            endpoint_name, png_bytes(image), content_type="image/png", accept="application/json", aws_conn_id=aws_conn_id
        )
        if not content_type.startswith("application/json"):
            raise SmokeTestFailed(f"{endpoint_name} answered {content_type}, expected application/json")
        answer = json.loads(body)
        predicted = answer.get("predicted_class")
        probabilities = answer.get("probabilities", {})
        if predicted not in LABEL_NAMES or set(probabilities) != set(LABEL_NAMES):
            raise SmokeTestFailed(f"{endpoint_name} answered {answer!r}: expected a CIFAR-10 class and 10 probabilities")
        if abs(sum(probabilities.values()) - 1.0) > 1e-3:
            raise SmokeTestFailed(f"{endpoint_name}: probabilities sum to {sum(probabilities.values()):.4f}, not 1")
        log.info("%s (true class %s) -> %s (p=%.3f) from variant %s", endpoint_name, label, predicted,
                 probabilities[predicted], variant)
        results.append({"true_class": label, "predicted_class": predicted, "confidence": probabilities[predicted]})
    correct = sum(r["true_class"] == r["predicted_class"] for r in results)
    return {"endpoint": endpoint_name, "requests": len(results), "correct": correct, "predictions": results}
