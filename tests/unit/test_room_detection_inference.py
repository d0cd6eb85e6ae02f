"""The room detection inference handlers (code/inference.py), called in-process as sagemaker-inference calls them."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from include.datasets.room_detection import sample_plans
from tests.source_modules import import_source

SOURCE_DIR = Path(__file__).resolve().parents[2] / "training_src" / "room_detection"
IMGSZ = 64


def make_model_dir(directory: Path, train_module) -> Path:
    """A model directory as train.py writes it (minus the checkpoints), with untrained weights: these tests
    check the handlers, not accuracy."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    network = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    state_dict, architecture = train_module.plain_weights(network, "n")
    torch.save(state_dict, directory / "model.pth")
    (directory / "yolov8n.yaml").write_text(yaml.safe_dump(architecture["config"], sort_keys=False))
    info = {"architecture": "yolov8n", "task": "detect", "class_names": ["room"], "imgsz": IMGSZ,
            "config": "yolov8n.yaml", "weights": "model.pth"}
    (directory / "model_info.json").write_text(json.dumps(info))
    return directory


@pytest.fixture(scope="module")
def inference():
    return import_source("inference", SOURCE_DIR)


@pytest.fixture(scope="module")
def train_module():
    return import_source("train", SOURCE_DIR)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, train_module):
    return make_model_dir(tmp_path_factory.mktemp("model"), train_module)


@pytest.fixture(scope="module")
def loaded(inference, model_dir):
    return inference.model_fn(str(model_dir))


def encode(image: np.ndarray, fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def invoke(inference, loaded, body, content_type, accept="application/json"):
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), loaded), accept))


PLAN = sample_plans(1, seed=3, size=96)[0]


def test_model_fn_serves_the_saved_weights(loaded, model_dir):
    """The served network (fused by ultralytics for speed) computes what model.pth's weights compute."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    assert loaded.class_names == ["room"] and loaded.imgsz == IMGSZ and loaded.device == "cpu"
    reference = DetectionModel(str(model_dir / "yolov8n.yaml"), nc=1, verbose=False)
    reference.load_state_dict(torch.load(model_dir / "model.pth", weights_only=True))
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.inference_mode():
        expected, served = reference.eval()(x)[0], loaded.yolo.model(x)[0]
    assert torch.allclose(expected, served, atol=1e-3)


def test_model_fn_refuses_weights_of_another_shape(inference, model_dir, tmp_path):
    import shutil

    import torch

    for name in ("yolov8n.yaml", "model_info.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    state = torch.load(model_dir / "model.pth", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("model.22.")}, tmp_path / "model.pth")  # no head
    with pytest.raises(RuntimeError, match="Missing key"):
        inference.model_fn(str(tmp_path))


@pytest.mark.parametrize("fmt, content_type, mode", [
    ("PNG", "image/png", "RGB"), ("JPEG", "image/jpeg", "RGB"), ("PNG", "image/png", "L"),
    ("PNG", "image/png; charset=binary", "RGBA"), ("JPEG", "image/jpeg", "L"),
])
def test_images_get_the_documented_json(inference, loaded, fmt, content_type, mode):
    answer = invoke(inference, loaded, encode(PLAN.image, fmt, mode), content_type)
    assert set(answer) == {"image", "boxes"}
    assert answer["image"] == {"width": 96, "height": 96}
    assert isinstance(answer["boxes"], list)
    for box in answer["boxes"]:  # an untrained model finds few or none: check the shape of what it finds
        assert set(box) == {"class", "class_id", "confidence", "xyxy"}
        assert box["class"] == "room" and box["class_id"] == 0 and 0 <= box["confidence"] <= 1
        assert len(box["xyxy"]) == 4


def test_boxes_are_in_pixels_of_the_image_as_sent(inference, loaded, monkeypatch):
    """Whatever size the image, xyxy stays within it (the model sees it letterboxed to imgsz)."""
    monkeypatch.setattr(inference, "CONFIDENCE_THRESHOLD", 0.0)  # an untrained model's boxes are all low-confidence
    wide = np.concatenate([PLAN.image, PLAN.image, PLAN.image], axis=1)  # 288 x 96
    answer = invoke(inference, loaded, encode(wide, "PNG"), "image/png")
    assert answer["image"] == {"width": 288, "height": 96} and answer["boxes"]
    for box in answer["boxes"]:
        x1, y1, x2, y2 = box["xyxy"]
        assert 0 <= x1 <= x2 <= 288 and 0 <= y1 <= y2 <= 96
    confidences = [box["confidence"] for box in answer["boxes"]]
    assert confidences == sorted(confidences, reverse=True)


def assert_rejected(inference, body, content_type, status, *phrases):
    with pytest.raises(inference.InferenceRequestError) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == status
    for phrase in phrases:
        assert phrase in caught.value.message, caught.value.message


def test_truncated_images_are_a_400(inference):
    png, jpeg = encode(PLAN.image, "PNG"), encode(PLAN.image, "JPEG")
    assert_rejected(inference, png[: len(png) // 2], "image/png", 400, "not a readable image/png image", "complete PNG or JPEG")
    assert_rejected(inference, jpeg[: len(jpeg) // 2], "image/jpeg", 400, "not a readable image/jpeg image")
    assert_rejected(inference, png[:20], "image/png", 400, "not a readable image/png image")


@pytest.mark.parametrize("body, phrase", [
    (b"", "The body is empty"),
    (None, "The body is empty"),
    (b"definitely not an image", "not a PNG or JPEG file (it starts with b'definite')"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a readable image/png image"),
])
def test_empty_or_garbage_bodies_are_a_400(inference, body, phrase):
    assert_rejected(inference, body, "image/png", 400, phrase)


def test_other_image_formats_are_a_400(inference):
    assert_rejected(inference, encode(PLAN.image, "GIF", "P"), "image/png", 400, "not a PNG or JPEG file (it starts with b'GIF8")
    assert_rejected(inference, encode(PLAN.image, "BMP"), "image/jpeg", 400, "not a PNG or JPEG file")


def test_huge_images_are_refused_before_decoding(inference, monkeypatch):
    monkeypatch.setattr(inference, "MAX_IMAGE_PIXELS", 50 * 50)
    assert_rejected(inference, encode(PLAN.image, "PNG"), "image/png", 400, "96x96 pixels")


@pytest.mark.parametrize("content_type", ["application/json", "application/x-npy", "image/gif", "text/csv", None])
def test_unsupported_content_type_is_a_415(inference, content_type):
    assert_rejected(inference, encode(PLAN.image, "PNG"), content_type, 415, "send image/png, image/jpeg")


def test_unsupported_accept_is_a_406(inference, loaded):
    prediction = inference.predict_fn(inference.input_fn(encode(PLAN.image, "PNG"), "image/png"), loaded)
    with pytest.raises(inference.InferenceRequestError) as caught:
        inference.output_fn(prediction, "text/csv")
    assert caught.value.status_code == 406
    assert set(json.loads(inference.output_fn(prediction, "text/csv, application/json;q=0.9"))) == {"image", "boxes"}


def test_unknown_formats_never_make_ultralytics_install_anything(inference, capsys):
    """ultralytics' Image.open patch pip-installs pi-heif when PIL does not recognise a file; decoding avoids it."""
    import PIL.Image

    import ultralytics  # noqa: F401 - applies the patch, as model_fn does

    assert PIL.Image.open.__module__ == "ultralytics.utils.patches"
    assert_rejected(inference, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", 400, "not a readable image/png image")
    assert_rejected(inference, b"\x00\x00\x00\x18ftypheic", "image/png", 400, "not a PNG or JPEG file")
    assert "pi-heif" not in capsys.readouterr().out


def test_a_bad_request_leaves_the_model_serving(inference, loaded):
    with pytest.raises(inference.InvalidInputError):
        inference.input_fn(b"\xff\xd8\xff garbage", "image/jpeg")
    assert invoke(inference, loaded, encode(PLAN.image, "JPEG"), "image/jpeg")["image"] == {"width": 96, "height": 96}


def test_errors_are_ones_the_sagemaker_toolkit_answers_with_their_status(inference):
    from sagemaker_inference.errors import BaseInferenceToolkitError

    error = inference.InvalidInputError("bad image")
    assert isinstance(error, BaseInferenceToolkitError)
    assert (error.status_code, error.message, str(error)) == (400, "bad image", "bad image")
    assert inference.UnsupportedContentTypeError("x").status_code == 415


def test_model_fn_refuses_pickled_weights(inference, model_dir, tmp_path):
    """model.pth is loaded weights-only: a pickle that would run code is an error, not an execution."""
    import shutil

    import torch

    for name in ("yolov8n.yaml", "model_info.json"):
        shutil.copy(model_dir / name, tmp_path / name)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weights": Exploit()}, tmp_path / "model.pth")
    with pytest.raises(Exception, match="Weights only load failed"):
        inference.model_fn(str(tmp_path))


def test_missing_files_fail_model_fn_clearly(inference, model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_info.json"):
        inference.model_fn(str(tmp_path))
    (tmp_path / "model_info.json").write_text((model_dir / "model_info.json").read_text())
    with pytest.raises(FileNotFoundError, match="yolov8n.yaml is missing"):
        inference.model_fn(str(tmp_path))


def test_serving_stays_offline(inference):
    import os

    assert os.environ["YOLO_OFFLINE"] == "1"
